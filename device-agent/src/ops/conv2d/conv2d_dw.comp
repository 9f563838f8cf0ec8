// Depthwise convolution (one filter per channel): one thread per output element of the slice.
layout(local_size_x = 256) in;
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
        uint plane = (b * p.C + c) * p.H * p.W;
        uint wb = c * p.kh * p.kw;
        float acc = float(bias[c]);
        int iy0 = int(oy * p.sh) - p.pt;
        int ix0 = int(ox * p.sw) - p.pl;
        for (uint ky = 0u; ky < p.kh; ky++) {
            int iy = iy0 + int(ky * p.dh);
            if (iy >= 0 && iy < int(p.H)) {
                for (uint kx = 0u; kx < p.kw; kx++) {
                    int ix = ix0 + int(kx * p.dw);
                    if (ix >= 0 && ix < int(p.W)) {
                        acc += float(LDX(plane + uint(iy) * p.W + uint(ix))) * float(afp(w[wb + ky * p.kw + kx]));
                    }
                }
            }
        }
        STY(((b * p.C + c) * p.OH + oy) * p.OW + ox, clamp(acc, p.lo, p.hi));
    }
}
