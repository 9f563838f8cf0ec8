// 1x1 convolution (stride 1, no padding) for small outputs: late layers with few pixels and
// many channels (MobileNet's 512/1024-channel layers at 14x14 and 7x7, EfficientNet's
// projections). conv2d_1x1's 64 x 64 tiles leave most of a large GPU idle there (a 7x7
// output has one pixel tile: 16 work groups for 1024 channels, each looping over all of K).
// Here a work group computes 16 output channels x 16 pixels, one output per thread, over K
// steps of 16 staged in shared memory: 16x more work groups for the same output.
//   out[oc, p] = act(bias[oc] + sum_k W[oc, k] * x[k, p])
layout(local_size_x = 16, local_size_y = 16) in;
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

shared afp As[256];
shared afp Bs[256];

void main() {
    uint tx = gl_LocalInvocationID.x;
    uint ty = gl_LocalInvocationID.y;
    uint M = p.oc1 - p.oc0;
    uint Np = (p.r1 - p.r0) * p.OW;
    uint K = p.icg;
    uint n0 = gl_WorkGroupID.x * 16u;
    uint m0 = gl_WorkGroupID.y * 16u;
    uint b = gl_WorkGroupID.z;
    uint plane = p.H * p.W;
    uint in_base = (b * p.C + p.ic_off) * plane + p.r0 * p.OW;
    float acc = 0.0;
    for (uint k0 = 0u; k0 < K; k0 += 16u) {
        // A: row m0 + ty, columns k0 .. k0 + 16 (consecutive tx, consecutive k).
        uint gm = m0 + ty;
        uint gk = k0 + tx;
        afp av = afp(0.0);
        if (gm < M && gk < K) {
            av = afp(w[(p.oc0 + gm) * K + gk]);
        }
        As[ty * 16u + tx] = av;
        // B: input channel k0 + ty, pixels n0 .. n0 + 16 (consecutive tx, consecutive pixels).
        uint bk = k0 + ty;
        uint gn = n0 + tx;
        afp bv = afp(0.0);
        if (bk < K && gn < Np) {
            bv = LDX(in_base + bk * plane + gn);
        }
        Bs[ty * 16u + tx] = bv;
        barrier();
        for (uint k = 0u; k < 16u; k++) {
            acc += float(As[ty * 16u + k]) * float(Bs[k * 16u + tx]);
        }
        barrier();
    }
    uint gm = m0 + ty;
    uint gn = n0 + tx;
    if (gm < M && gn < Np) {
        uint oc = p.oc0 + gm;
        uint oy = p.r0 + gn / p.OW;
        uint ox = gn % p.OW;
        float v = clamp(acc + float(bias[oc]), p.lo, p.hi);
        STY(((b * p.OC + oc) * p.OH + oy) * p.OW + ox, v);
    }
}
