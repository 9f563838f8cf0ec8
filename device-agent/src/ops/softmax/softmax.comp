// Softmax along one axis of a tensor viewed as [outer, n, inner]: one work group of 64
// threads per line (max, then sum of exponentials, both reduced in shared memory).
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(push_constant) uniform Params { uint outer; uint n; uint inner; QP } p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint lines = p.outer * p.inner;
    for (uint l = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; l < lines;
         l += gl_NumWorkGroups.x * gl_NumWorkGroups.y) {
        uint base = (l / p.inner) * p.n * p.inner + l % p.inner;
        float m = uintBitsToFloat(0xff800000u);
        for (uint a = lid; a < p.n; a += 64u) {
            m = max(m, float(LDX(base + a * p.inner)));
        }
        red[lid] = m;
        barrier();
        for (uint st = 32u; st > 0u; st >>= 1u) {
            if (lid < st) {
                red[lid] = max(red[lid], red[lid + st]);
            }
            barrier();
        }
        m = red[0];
        barrier();
        float s = 0.0;
        for (uint a = lid; a < p.n; a += 64u) {
            s += exp(float(LDX(base + a * p.inner)) - m);
        }
        red[lid] = s;
        barrier();
        for (uint st = 32u; st > 0u; st >>= 1u) {
            if (lid < st) {
                red[lid] += red[lid + st];
            }
            barrier();
        }
        s = red[0];
        for (uint a = lid; a < p.n; a += 64u) {
            STY(base + a * p.inner, exp(float(LDX(base + a * p.inner)) - m) / s);
        }
        barrier();
    }
}
