// Activation (ReLU, Clip, identity) and the per-channel affine map of an unfolded BatchNorm:
// y = clamp(x * m[c] + o[c], lo, hi) over one slice (channels c0..c1, rows r0..r1).
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(std430, set = 0, binding = 2) readonly buffer Aff { sfp aff[]; };
layout(push_constant) uniform Params {
    uint outer; uint C; uint H; uint inner;
    uint c0; uint c1; uint r0; uint r1;
    uint affine; float lo; float hi; QP
} p;

void main() {
    uint nc = p.c1 - p.c0;
    uint run = (p.r1 - p.r0) * p.inner;
    uint total = p.outer * nc * run;
    afp lo = afp(p.lo);
    afp hi = afp(p.hi);
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint k = e % run;
        uint t = e / run;
        uint c = p.c0 + t % nc;
        uint o = t / nc;
        uint idx = ((o * p.C + c) * p.H + p.r0) * p.inner + k;
        afp v = LDX(idx);
        if (p.affine != 0u) {
            v = v * afp(aff[2u * c]) + afp(aff[2u * c + 1u]);
        }
        STY(idx, amin(amax(v, lo), hi));
    }
}
