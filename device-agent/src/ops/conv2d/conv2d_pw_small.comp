// 1x1 convolution (stride 1, no padding) for small outputs: late layers with few pixels and
// many channels (MobileNet's 512/1024-channel layers at 14x14 and 7x7, EfficientNet's
// projections with K = 672 or 1152 input channels at 7x7). conv2d_1x1's 64 x 64 tiles leave
// most of a large GPU idle there (a 7x7 output has one pixel tile: 3 work groups for 192
// channels, each looping over all of K). Here a work group computes 8 output channels x 8
// pixels with its 256 threads split four ways along K (each thread one output, a quarter of
// each K step of 64 staged in shared memory), then sums the four partial sums: 64x more
// work groups than 64 x 64 tiles and a quarter of the serial K loop.
//   out[oc, p] = act(bias[oc] + sum_k W[oc, k] * x[k, p])
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(std430, set = 0, binding = 2) readonly buffer Wt { sfp w[]; };
layout(std430, set = 0, binding = 3) readonly buffer Bias { sfp bias[]; };
layout(push_constant) uniform Params {
    uint C; uint H; uint W; uint OC; uint OH; uint OW;
    uint icg; uint ic_off; uint kh; uint kw; uint sh; uint sw; uint dh; uint dw;
    int pt; int pl;
    uint oc0; uint oc1; uint r0; uint r1;
    float lo; float hi; QP
} p;

// A: 8 rows (channels) of 64 k, padded to 65 so that the rows fall in different banks.
shared afp As[520];
// B: 64 k x 8 pixels.
shared afp Bs[512];
shared float part_sum[256];

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint o = tid & 63u;
    uint part = tid >> 6u;
    uint opx = o & 7u;
    uint ooc = o >> 3u;
    uint M = p.oc1 - p.oc0;
    uint Np = (p.r1 - p.r0) * p.OW;
    uint K = p.icg;
    uint n0 = gl_WorkGroupID.x * 8u;
    uint m0 = gl_WorkGroupID.y * 8u;
    uint b = gl_WorkGroupID.z;
    uint plane = p.H * p.W;
    uint in_base = (b * p.C + p.ic_off) * plane + p.r0 * p.OW;
    float acc = 0.0;
    for (uint k0 = 0u; k0 < K; k0 += 64u) {
        for (uint e = 0u; e < 2u; e++) {
            uint idx = tid + 256u * e;
            // A: channel m0 + (idx >> 6), k0 + (idx & 63): consecutive threads, consecutive k.
            uint am = idx >> 6u;
            uint ak = idx & 63u;
            uint gm = m0 + am;
            uint gk = k0 + ak;
            afp av = afp(0.0);
            if (gm < M && gk < K) {
                av = afp(w[(p.oc0 + gm) * K + gk]);
            }
            As[am * 65u + ak] = av;
            // B: input channel k0 + (idx >> 3), pixel n0 + (idx & 7).
            uint bk = k0 + (idx >> 3u);
            uint gn = n0 + (idx & 7u);
            afp bv = afp(0.0);
            if (bk < K && gn < Np) {
                bv = LDX(in_base + bk * plane + gn);
            }
            Bs[idx] = bv;
        }
        barrier();
        uint kk = part * 16u;
        for (uint k = 0u; k < 16u; k++) {
            acc += float(As[ooc * 65u + kk + k]) * float(Bs[(kk + k) * 8u + opx]);
        }
        barrier();
    }
    part_sum[tid] = acc;
    barrier();
    if (part == 0u) {
        uint gm = m0 + ooc;
        uint gn = n0 + opx;
        if (gm < M && gn < Np) {
            float s = part_sum[o] + part_sum[o + 64u] + part_sum[o + 128u] + part_sum[o + 192u];
            uint oc = p.oc0 + gm;
            uint oy = p.r0 + gn / p.OW;
            uint ox = gn % p.OW;
            float v = clamp(s + float(bias[oc]), p.lo, p.hi);
            STY(((b * p.OC + oc) * p.OH + oy) * p.OW + ox, v);
        }
    }
}
