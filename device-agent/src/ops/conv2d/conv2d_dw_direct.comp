// Depthwise convolution for CPU Vulkan devices (lavapipe/llvmpipe): as conv2d_dw.comp, with
// 4 consecutive outputs of one row per invocation sharing each weight load (llvmpipe turns
// every buffer load into per-lane loads with bounds checks: 1.25 loads per multiply-add
// instead of 2).
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(std430, set = 0, binding = 2) readonly buffer Wt { sfp w[]; };
layout(std430, set = 0, binding = 3) readonly buffer Bias { sfp bias[]; };
layout(push_constant) uniform Params {
    uint N; uint C; uint H; uint W; uint OH; uint OW;
    uint kh; uint kw; uint sh; uint sw; uint dh; uint dw;
    int pt; int pl;
    uint c0; uint c1; uint r0; uint r1;
    float lo; float hi; QP
} p;

// Input column of output column ox at tap kx, or -1 outside the plane.
int col(uint ox, uint kx) {
    int ix = int(ox * p.sw + kx * p.dw) - p.pl;
    return ix >= 0 && ix < int(p.W) ? ix : -1;
}

void main() {
    uint nc = p.c1 - p.c0;
    uint quads = (p.OW + 3u) / 4u;
    uint per_plane = (p.r1 - p.r0) * quads;
    uint total = p.N * nc * per_plane;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 64u) {
        uint k = e % per_plane;
        uint t = e / per_plane;
        uint c = p.c0 + t % nc;
        uint b = t / nc;
        uint oy = p.r0 + k / quads;
        uint ox = (k % quads) * 4u;
        uint left = min(p.OW - ox, 4u);
        uint plane = (b * p.C + c) * p.H * p.W;
        uint wb = c * p.kh * p.kw;
        vec4 acc = vec4(float(bias[c]));
        int iy0 = int(oy * p.sh) - p.pt;
        for (uint ky = 0u; ky < p.kh; ky++) {
            int iy = iy0 + int(ky * p.dh);
            if (iy < 0 || iy >= int(p.H)) {
                continue;
            }
            uint row = plane + uint(iy) * p.W;
            for (uint kx = 0u; kx < p.kw; kx++) {
                float wv = float(afp(w[wb + ky * p.kw + kx]));
                int i0 = col(ox, kx);
                int i1 = left > 1u ? col(ox + 1u, kx) : -1;
                int i2 = left > 2u ? col(ox + 2u, kx) : -1;
                int i3 = left > 3u ? col(ox + 3u, kx) : -1;
                vec4 v = vec4(
                    i0 >= 0 ? float(LDX(row + uint(i0))) : 0.0,
                    i1 >= 0 ? float(LDX(row + uint(i1))) : 0.0,
                    i2 >= 0 ? float(LDX(row + uint(i2))) : 0.0,
                    i3 >= 0 ? float(LDX(row + uint(i3))) : 0.0);
                acc += wv * v;
            }
        }
        uint at = ((b * p.C + c) * p.OH + oy) * p.OW + ox;
        for (uint i = 0u; i < left; i++) {
            STY(at + i, clamp(acc[i], p.lo, p.hi));
        }
    }
}
