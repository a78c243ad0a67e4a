// rmsnorm_bwd_dw.wgsl — pass 2 of rmsnorm_bwd.wgsl: dw[j] += Σ_c partial[c, j], c in order.
// Workgroups of 32×8: invocation (tx, ty) sums chunks ty, ty+8, ... of column g·32 + tx, then
// ty = 0 adds the 8 sums in order (deterministic, no atomics).
// Bindings: 0 params, 1 partial [chunks, dim] (offset 0), 2 dw [dim].
// Dispatch: ceil(dim / 32) workgroups folded into (x, y).

struct Params { dim: u32, chunks: u32, dw_off: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;

var<workgroup> sums: array<array<f32, 32>, 8>;

@compute @workgroup_size(32, 8)
fn rmsnorm_bwd_dw_f32(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = (wid.x + wid.y * nwg.x) * 32u + lid.x;
    var acc = 0.0;
    if (col < p.dim) {
        for (var c = lid.y; c < p.chunks; c = c + 8u) { acc = acc + partial[c * p.dim + col]; }
    }
    sums[lid.y][lid.x] = acc;
    workgroupBarrier();
    if (lid.y == 0u && col < p.dim) {
        var total = sums[0][lid.x];
        for (var k = 1u; k < 8u; k = k + 1u) { total = total + sums[k][lid.x]; }
        dw[p.dw_off + col] = dw[p.dw_off + col] + total;
    }
}
