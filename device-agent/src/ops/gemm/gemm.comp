// Fully connected: y[row, f] = act(bias[f] + sum_k x[row, k] * W[f, k]). One work group of 64
// threads per output element of the slice: strided partial sums, then a tree reduction.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(std430, set = 0, binding = 2) readonly buffer Wt { sfp w[]; };
layout(std430, set = 0, binding = 3) readonly buffer Bias { sfp bias[]; };
layout(push_constant) uniform Params {
    uint outer; uint C; uint H; uint inner;
    uint c0; uint c1; uint r0; uint r1;
    uint O; uint K; float lo; float hi; QP
} p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint nc = p.c1 - p.c0;
    uint run = (p.r1 - p.r0) * p.inner;
    uint total = p.outer * nc * run;
    for (uint e = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; e < total;
         e += gl_NumWorkGroups.x * gl_NumWorkGroups.y) {
        uint k = e % run;
        uint t = e / run;
        uint c = p.c0 + t % nc;
        uint o = t / nc;
        uint idx = ((o * p.C + c) * p.H + p.r0) * p.inner + k;
        uint f = idx % p.O;
        uint row = idx / p.O;
        float s = 0.0;
        for (uint i = lid; i < p.K; i += 64u) {
            s += float(LDX(row * p.K + i)) * float(afp(w[f * p.K + i]));
        }
        red[lid] = s;
        barrier();
        for (uint st = 32u; st > 0u; st >>= 1u) {
            if (lid < st) {
                red[lid] += red[lid + st];
            }
            barrier();
        }
        if (lid == 0u) {
            STY(idx, clamp(red[0] + float(bias[f]), p.lo, p.hi));
        }
        barrier();
    }
}
