// Convolution as an implicit matrix product, one group per dispatch:
//   out[oc, p] = act(bias[oc] + sum_k W[oc, k] * im2col[k, p]),  k = (ic, ky, kx), p = (oy, ox)
// M = output channels of the slice, N = output pixels of the slice's rows, K = icg * kh * kw.
// 256 threads compute a 64 x 64 tile, 4 x 4 each, over K steps of 16 staged in shared memory.
// The im2col matrix is never stored: B tiles are gathered from the input as they are loaded.
// POINTWISE (1x1, stride 1, no padding) reads B straight from the input planes.
// @variant conv2d_1x1: POINTWISE
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

shared afp As[1024];
shared afp Bs[1024];

void main() {
    uint tx = gl_LocalInvocationID.x;
    uint ty = gl_LocalInvocationID.y;
    uint tid = ty * 16u + tx;
    uint M = p.oc1 - p.oc0;
    uint Np = (p.r1 - p.r0) * p.OW;
    uint khw = p.kh * p.kw;
    uint K = p.icg * khw;
    uint n0 = gl_WorkGroupID.x * 64u;
    uint m0 = gl_WorkGroupID.y * 64u;
    uint b = gl_WorkGroupID.z;
    uint in_base = (b * p.C + p.ic_off) * p.H * p.W;
    float acc[16];
    for (uint i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (uint k0 = 0u; k0 < K; k0 += 16u) {
        for (uint e = 0u; e < 4u; e++) {
            uint idx = tid + 256u * e;
            uint am = idx >> 4u;
            uint ak = idx & 15u;
            uint gm = m0 + am;
            uint gk = k0 + ak;
            afp av = afp(0.0);
            if (gm < M && gk < K) {
                av = afp(w[(p.oc0 + gm) * K + gk]);
            }
            As[ak * 64u + am] = av;
            uint bk = idx >> 6u;
            uint bn = idx & 63u;
            uint gk2 = k0 + bk;
            uint gn = n0 + bn;
            afp bv = afp(0.0);
            if (gk2 < K && gn < Np) {
                uint oy = p.r0 + gn / p.OW;
                uint ox = gn % p.OW;
#ifdef POINTWISE
                bv = LDX(in_base + gk2 * p.H * p.W + oy * p.W + ox);
#else
                uint ic = gk2 / khw;
                uint rem = gk2 % khw;
                uint ky = rem / p.kw;
                uint kx = rem % p.kw;
                int iy = int(oy * p.sh + ky * p.dh) - p.pt;
                int ix = int(ox * p.sw + kx * p.dw) - p.pl;
                if (iy >= 0 && iy < int(p.H) && ix >= 0 && ix < int(p.W)) {
                    bv = LDX(in_base + (ic * p.H + uint(iy)) * p.W + uint(ix));
                }
#endif
            }
            Bs[bk * 64u + bn] = bv;
        }
        barrier();
        for (uint k = 0u; k < 16u; k++) {
            float a0 = float(As[k * 64u + ty]);
            float a1 = float(As[k * 64u + ty + 16u]);
            float a2 = float(As[k * 64u + ty + 32u]);
            float a3 = float(As[k * 64u + ty + 48u]);
            float b0 = float(Bs[k * 64u + tx]);
            float b1 = float(Bs[k * 64u + tx + 16u]);
            float b2 = float(Bs[k * 64u + tx + 32u]);
            float b3 = float(Bs[k * 64u + tx + 48u]);
            acc[0] += a0 * b0; acc[1] += a0 * b1; acc[2] += a0 * b2; acc[3] += a0 * b3;
            acc[4] += a1 * b0; acc[5] += a1 * b1; acc[6] += a1 * b2; acc[7] += a1 * b3;
            acc[8] += a2 * b0; acc[9] += a2 * b1; acc[10] += a2 * b2; acc[11] += a2 * b3;
            acc[12] += a3 * b0; acc[13] += a3 * b1; acc[14] += a3 * b2; acc[15] += a3 * b3;
        }
        barrier();
    }
    for (uint i = 0u; i < 4u; i++) {
        uint gm = m0 + ty + 16u * i;
        if (gm < M) {
            uint oc = p.oc0 + gm;
            float bv = float(bias[oc]);
            for (uint j = 0u; j < 4u; j++) {
                uint gn = n0 + tx + 16u * j;
                if (gn < Np) {
                    uint oy = p.r0 + gn / p.OW;
                    uint ox = gn % p.OW;
                    float v = clamp(acc[i * 4u + j] + bv, p.lo, p.hi);
                    STY(((b * p.OC + oc) * p.OH + oy) * p.OW + ox, v);
                }
            }
        }
    }
}
