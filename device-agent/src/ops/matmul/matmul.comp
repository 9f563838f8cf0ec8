// Batched matrix product of two run-time values: one thread per output element. Batch
// broadcasting: an operand whose batch is 1 has batch stride 0.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { ACT a[]; };
layout(std430, set = 0, binding = 1) buffer Out { ACT y[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { ACT b[]; };
layout(push_constant) uniform Params { uint batch; uint M; uint N; uint K; uint sa; uint sb; QP } p;

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
            s += float(LD0(a, ab + k)) * float(LD2(b, bb + k * p.N));
        }
        STY(e, s);
    }
}
