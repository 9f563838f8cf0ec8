// Local response normalisation across channels: one thread per output element of the slice.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(push_constant) uniform Params {
    uint outer; uint C; uint H; uint inner;
    uint c0; uint c1; uint r0; uint r1;
    uint before; uint after; float alpha_over_size; float beta; float bias; QP
} p;

void main() {
    uint nc = p.c1 - p.c0;
    uint run = (p.r1 - p.r0) * p.inner;
    uint total = p.outer * nc * run;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint k = e % run;
        uint t = e / run;
        uint c = p.c0 + t % nc;
        uint o = t / nc;
        uint pos = p.r0 * p.inner + k;
        uint plane = p.H * p.inner;
        uint lo = c >= p.before ? c - p.before : 0u;
        uint hi = min(c + p.after, p.C - 1u);
        float s = 0.0;
        for (uint j = lo; j <= hi; j++) {
            float v = float(LDX((o * p.C + j) * plane + pos));
            s += v * v;
        }
        uint idx = (o * p.C + c) * plane + pos;
        STY(idx, float(LDX(idx)) / pow(p.bias + p.alpha_over_size * s, p.beta));
    }
}
