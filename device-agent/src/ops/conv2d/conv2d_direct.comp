// Convolution for CPU Vulkan devices (lavapipe/llvmpipe), where invocations are SIMD lanes
// and a work-group barrier is a switch between coroutines: no shared memory, no barriers, no
// arrays. An invocation computes one output pixel for 8 output channels (two vec4
// accumulators); the 64 invocations of a work group are consecutive pixels of one block of
// 8 channels, so the weights they read are the same for every lane (a broadcast) and the
// input they read is consecutive along a row. On GPUs the tiled shaders reuse data through
// shared memory instead and are much faster.
//   out[oc, p] = act(bias[oc] + sum_(ic, ky, kx) W[oc, ic, ky, kx] * x[ic, iy, ix])
// (1x1 convolutions have their own: conv2d_pw_direct.comp.)
layout(local_size_x = 64) in;
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

// Weight (oc, k), zero past the slice's channels.
float wt(uint M, uint K, uint m, uint k) {
    return m < M ? float(w[(p.oc0 + m) * K + k]) : 0.0;
}

void main() {
    uint M = p.oc1 - p.oc0;
    uint Np = (p.r1 - p.r0) * p.OW;
    uint khw = p.kh * p.kw;
    uint K = p.icg * khw;
    uint gn = gl_WorkGroupID.x * 64u + gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * 8u;
    uint b = gl_WorkGroupID.z;
    if (gn >= Np) {
        return;
    }
    uint oy = p.r0 + gn / p.OW;
    uint ox = gn % p.OW;
    uint in_base = (b * p.C + p.ic_off) * p.H * p.W;
    vec4 acc0 = vec4(0.0);
    vec4 acc1 = vec4(0.0);
    for (uint ic = 0u; ic < p.icg; ic++) {
        for (uint ky = 0u; ky < p.kh; ky++) {
            int iy = int(oy * p.sh + ky * p.dh) - p.pt;
            if (iy < 0 || iy >= int(p.H)) {
                continue;
            }
            for (uint kx = 0u; kx < p.kw; kx++) {
                int ix = int(ox * p.sw + kx * p.dw) - p.pl;
                if (ix < 0 || ix >= int(p.W)) {
                    continue;
                }
                float v = float(LDX(in_base + (ic * p.H + uint(iy)) * p.W + uint(ix)));
                uint k = (ic * p.kh + ky) * p.kw + kx;
                acc0 += v * vec4(wt(M, K, m0, k), wt(M, K, m0 + 1u, k), wt(M, K, m0 + 2u, k), wt(M, K, m0 + 3u, k));
                acc1 += v * vec4(wt(M, K, m0 + 4u, k), wt(M, K, m0 + 5u, k), wt(M, K, m0 + 6u, k), wt(M, K, m0 + 7u, k));
            }
        }
    }
    uint base = (b * p.OC + p.oc0 + m0) * p.OH * p.OW + oy * p.OW + ox;
    uint step = p.OH * p.OW;
    for (uint j = 0u; j < 8u; j++) {
        if (m0 + j < M) {
            float a = j < 4u ? acc0[j] : acc1[j - 4u];
            float v = clamp(a + float(bias[p.oc0 + m0 + j]), p.lo, p.hi);
            STY(base + j * step, v);
        }
    }
}
