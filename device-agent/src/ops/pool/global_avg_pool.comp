// Global average pooling: one work group of 64 threads per (image, channel) of the slice.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(push_constant) uniform Params { uint N; uint C; uint HW; uint c0; uint c1; QP } p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint nc = p.c1 - p.c0;
    uint total = p.N * nc;
    for (uint e = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; e < total;
         e += gl_NumWorkGroups.x * gl_NumWorkGroups.y) {
        uint c = p.c0 + e % nc;
        uint b = e / nc;
        uint base = (b * p.C + c) * p.HW;
        float s = 0.0;
        for (uint i = lid; i < p.HW; i += 64u) {
            s += float(LDX(base + i));
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
            STY(b * p.C + c, red[0] / float(max(p.HW, 1u)));
        }
        barrier();
    }
}
