// Element-wise a + b with numpy broadcasting: each operand is addressed through strides over
// the output's [outer, C, H, inner] view (stride 0 on a broadcast dimension).
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { ACT a[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { ACT b[]; };
layout(push_constant) uniform Params {
    uint outer; uint C; uint H; uint inner;
    uint c0; uint c1; uint r0; uint r1;
    uint sa0; uint sa1; uint sa2; uint sa3;
    uint sb0; uint sb1; uint sb2; uint sb3; QP
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
        uint r = p.r0 + k / p.inner;
        uint i = k % p.inner;
        uint idx = ((o * p.C + c) * p.H + r) * p.inner + i;
        uint ia = o * p.sa0 + c * p.sa1 + r * p.sa2 + i * p.sa3;
        uint ib = o * p.sb0 + c * p.sb1 + r * p.sb2 + i * p.sb3;
        STY(idx, LD0(a, ia) + LD2(b, ib));
    }
}
