// Copies the part of an input box that falls in the slice into the output at an offset:
// concatenation (one dispatch per input), reshape, flatten and constants (one linear box).
// Input viewed as [I0, I1, I2, I3]; output as [_, O1, O2, O3]; offsets F0..F3; the host
// clips the slice to the input's channel range ci0..ci1 and row range ri0..ri1.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer In { ACT x[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(push_constant) uniform Params {
    uint I0; uint I1; uint I2; uint I3;
    uint O1; uint O2; uint O3;
    uint F0; uint F1; uint F2; uint F3;
    uint ci0; uint ci1; uint ri0; uint ri1; QP
} p;

void main() {
    uint nc = p.ci1 - p.ci0;
    uint run = (p.ri1 - p.ri0) * p.I3;
    uint total = p.I0 * nc * run;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint k = e % run;
        uint t = e / run;
        uint c = p.ci0 + t % nc;
        uint o = t / nc;
        uint r = p.ri0 + k / p.I3;
        uint i = k % p.I3;
        uint src = ((o * p.I1 + c) * p.I2 + r) * p.I3 + i;
        uint dst = (((o + p.F0) * p.O1 + c + p.F1) * p.O2 + r + p.F2) * p.O3 + i + p.F3;
        STY(dst, LDX(src));
    }
}
