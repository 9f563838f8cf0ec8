// Batched matrix product of two run-time values: one thread per output element. Batch
// broadcasting: an operand whose batch is 1 has batch stride 0.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { sfp a[]; };
layout(std430, set = 0, binding = 1) buffer Out { sfp y[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { sfp b[]; };
layout(push_constant) uniform Params { uint batch; uint M; uint N; uint K; uint sa; uint sb; } p;

void main() {
    uint total = p.batch * p.M * p.N;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint j = e % p.N;
        uint i = (e / p.N) % p.M;
        uint bt = e / (p.N * p.M);
        uint ab = bt * p.sa + i * p.K;
        uint bb = bt * p.sb + j;
        float s = 0.0;
        for (uint k = 0u; k < p.K; k++) {
            s += float(a[ab + k]) * float(b[bb + k * p.N]);
        }
        y[e] = sfp(s);
    }
}
