// gemm.wgsl — C[b] = alpha * op(A[b]) · op(B[b]) + beta * C[b], f32, row-major storage.
// op(A) is m×k with element (i, p) at a_off + b*stride_a + i*a_rs + p*a_cs (the host derives the
// strides from the transpose flags), op(B) k×n likewise, C m×n contiguous (ldc = n).
// beta == 0 ignores C's previous contents (NaN-safe), as BLAS does.
// Dispatch: (ceil(n/16), ceil(m/16), batch) workgroups of 16×16; shared-memory tiles of 16×16.

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_off: u32, a_rs: u32, a_cs: u32, stride_a: u32,
    b_off: u32, b_rs: u32, b_cs: u32, stride_b: u32,
    c_off: u32, stride_c: u32, alpha: f32, beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TS: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn gemm_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * TS + lid.y;
    let col = wid.x * TS + lid.x;
    let bi = wid.z;
    let abase = p.a_off + bi * p.stride_a;
    let bbase = p.b_off + bi * p.stride_b;
    var acc = 0.0;
    let tiles = (p.k + TS - 1u) / TS;
    for (var t = 0u; t < tiles; t = t + 1u) {
        let ka = t * TS + lid.x;
        if (row < p.m && ka < p.k) {
            ta[lid.y][lid.x] = a[abase + row * p.a_rs + ka * p.a_cs];
        } else {
            ta[lid.y][lid.x] = 0.0;
        }
        let kb = t * TS + lid.y;
        if (kb < p.k && col < p.n) {
            tb[lid.y][lid.x] = b[bbase + kb * p.b_rs + col * p.b_cs];
        } else {
            tb[lid.y][lid.x] = 0.0;
        }
        workgroupBarrier();
        for (var q = 0u; q < TS; q = q + 1u) {
            acc = acc + ta[lid.y][q] * tb[q][lid.x];
        }
        workgroupBarrier();
    }
    if (row < p.m && col < p.n) {
        let ci = p.c_off + bi * p.stride_c + row * p.n + col;
        if (p.beta == 0.0) {
            c[ci] = p.alpha * acc;
        } else {
            c[ci] = p.alpha * acc + p.beta * c[ci];
        }
    }
}
