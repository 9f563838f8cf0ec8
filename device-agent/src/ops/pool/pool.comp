// Max and average pooling (ONNX: asymmetric padding, ceil mode, count_include_pad), one
// thread per output element of the slice. Windows as in ops/pool/reference.rs.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(push_constant) uniform Params {
    uint N; uint C; uint H; uint W; uint OH; uint OW;
    uint kh; uint kw; uint sh; uint sw;
    int pt; int pl; int pb; int pr;
    uint c0; uint c1; uint r0; uint r1;
    uint is_max; uint include_pad; QP
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
        int hs = int(oy * p.sh) - p.pt;
        int he = min(hs + int(p.kh), int(p.H) + p.pb);
        int ws = int(ox * p.sw) - p.pl;
        int we = min(ws + int(p.kw), int(p.W) + p.pr);
        int ys = max(hs, 0);
        int ye = max(min(he, int(p.H)), ys);
        int xs = max(ws, 0);
        int xe = max(min(we, int(p.W)), xs);
        uint plane = (b * p.C + c) * p.H * p.W;
        float v;
        if (p.is_max != 0u) {
            afp m = afp(uintBitsToFloat(0xff800000u));
            for (int iy = ys; iy < ye; iy++) {
                for (int ix = xs; ix < xe; ix++) {
                    m = amax(m, LDX(plane + uint(iy) * p.W + uint(ix)));
                }
            }
            v = float(m);
        } else {
            float s = 0.0;
            for (int iy = ys; iy < ye; iy++) {
                for (int ix = xs; ix < xe; ix++) {
                    s += float(LDX(plane + uint(iy) * p.W + uint(ix)));
                }
            }
            int count = p.include_pad != 0u ? (he - hs) * (we - ws) : (ye - ys) * (xe - xs);
            v = s / float(max(count, 1));
        }
        STY(((b * p.C + c) * p.OH + oy) * p.OW + ox, v);
    }
}
