// 1x1 convolution (stride 1, no padding) for CPU Vulkan devices (lavapipe/llvmpipe): as
// conv2d_direct.comp (no shared memory, no barriers), with 4 consecutive pixels x 8 output
// channels per invocation, so that each step of K loads 4 inputs and 8 weights for 32
// multiply-adds (llvmpipe turns every buffer load into per-lane loads with bounds checks:
// loads, not arithmetic, are what costs there).
//   out[oc, p] = act(bias[oc] + sum_k W[oc, k] * x[k, p])
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

void store(uint base, uint step, uint m0, uint j, uint mc, uint left, vec4 a) {
    if (j >= mc) {
        return;
    }
    float bv = float(bias[p.oc0 + m0 + j]);
    uint at = base + j * step;
    for (uint i = 0u; i < left; i++) {
        STY(at + i, clamp(a[i] + bv, p.lo, p.hi));
    }
}

void main() {
    uint M = p.oc1 - p.oc0;
    uint Np = (p.r1 - p.r0) * p.OW;
    uint K = p.icg;
    uint n = (gl_WorkGroupID.x * 64u + gl_LocalInvocationID.x) * 4u;
    uint m0 = gl_WorkGroupID.y * 8u;
    uint b = gl_WorkGroupID.z;
    if (n >= Np) {
        return;
    }
    uint plane = p.H * p.W;
    uint at = (b * p.C + p.ic_off) * plane + p.r0 * p.OW + n;
    // Pixels past the slice read pixel n again (in bounds) and are not stored; channels past
    // the slice read channel m0's weights and are not stored.
    uint left = min(Np - n, 4u);
    uint d1 = left > 1u ? 1u : 0u;
    uint d2 = left > 2u ? 2u : 0u;
    uint d3 = left > 3u ? 3u : 0u;
    uint mc = min(M - m0, 8u);
    uint o1 = mc > 1u ? K : 0u;
    uint o2 = mc > 2u ? 2u * K : 0u;
    uint o3 = mc > 3u ? 3u * K : 0u;
    uint o4 = mc > 4u ? 4u * K : 0u;
    uint o5 = mc > 5u ? 5u * K : 0u;
    uint o6 = mc > 6u ? 6u * K : 0u;
    uint o7 = mc > 7u ? 7u * K : 0u;
    uint wb = (p.oc0 + m0) * K;
    vec4 a0 = vec4(0.0);
    vec4 a1 = vec4(0.0);
    vec4 a2 = vec4(0.0);
    vec4 a3 = vec4(0.0);
    vec4 a4 = vec4(0.0);
    vec4 a5 = vec4(0.0);
    vec4 a6 = vec4(0.0);
    vec4 a7 = vec4(0.0);
    for (uint k = 0u; k < K; k++) {
        uint xi = at + k * plane;
        vec4 v = vec4(float(LDX(xi)), float(LDX(xi + d1)), float(LDX(xi + d2)), float(LDX(xi + d3)));
        uint q = wb + k;
        a0 += float(w[q]) * v;
        a1 += float(w[q + o1]) * v;
        a2 += float(w[q + o2]) * v;
        a3 += float(w[q + o3]) * v;
        a4 += float(w[q + o4]) * v;
        a5 += float(w[q + o5]) * v;
        a6 += float(w[q + o6]) * v;
        a7 += float(w[q + o7]) * v;
    }
    uint oy = p.r0 + n / p.OW;
    uint ox = n % p.OW;
    uint step = p.OH * p.OW;
    uint base = (b * p.OC + p.oc0 + m0) * step + oy * p.OW + ox;
    store(base, step, m0, 0u, mc, left, a0);
    store(base, step, m0, 1u, mc, left, a1);
    store(base, step, m0, 2u, mc, left, a2);
    store(base, step, m0, 3u, mc, left, a3);
    store(base, step, m0, 4u, mc, left, a4);
    store(base, step, m0, 5u, mc, left, a5);
    store(base, step, m0, 6u, mc, left, a6);
    store(base, step, m0, 7u, mc, left, a7);
}
