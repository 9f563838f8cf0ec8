// Constant padding of H and W: one thread per output element of the slice.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(push_constant) uniform Params {
    uint N; uint C; uint H; uint W; uint OH; uint OW;
    int pt; int pl;
    uint c0; uint c1; uint r0; uint r1;
    float value; QP
} p;

void main() {
    uint nc = p.c1 - p.c0;
    uint run = (p.r1 - p.r0) * p.OW;
    uint total = p.N * nc * run;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint k = e % run;
        uint t = e / run;
        uint c = p.c0 + t % nc;
        uint b = t / nc;
        uint oy = p.r0 + k / p.OW;
        uint ox = k % p.OW;
        int iy = int(oy) - p.pt;
        int ix = int(ox) - p.pl;
        afp v = afp(p.value);
        if (iy >= 0 && iy < int(p.H) && ix >= 0 && ix < int(p.W)) {
            v = LDX(((b * p.C + c) * p.H + uint(iy)) * p.W + uint(ix));
        }
        STY(((b * p.C + c) * p.OH + oy) * p.OW + ox, v);
    }
}
