// rmsnorm_bwd.wgsl — RMSNorm backward, accumulating (see rmsnorm_bwd.cu for the math):
//   dx += r·(g − x·r²·mean(g⊙x)), g = w⊙dy;   dw += Σ_rows dy⊙x·r
// Deterministic (no atomics), in two passes: this module is pass 1 — workgroup c (256
// invocations) owns rows [c·rpb, min((c+1)·rpb, rows)), updates dx and writes its rows'
// Σ dy⊙x·r to partial[c, :]; pass 2 is `rmsnorm_bwd_dw.wgsl` (its own module, because a
// pipeline's automatic layout holds only the bindings its entry point uses).
// Bindings: 0 params, 1 dy, 2 x, 3 w, 4 rstd, 5 dx, 6 partial [chunks, dim] (offset 0).
// Dispatch: (chunks) workgroups, chunks <= 512.

struct Params { rows: u32, dim: u32, rows_per_block: u32, chunks: u32,
                dy_off: u32, x_off: u32, w_off: u32, rstd_off: u32,
                dx_off: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn rmsnorm_bwd_f32(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let chunk = wid.x;
    let r0 = chunk * p.rows_per_block;
    let r1 = min(r0 + p.rows_per_block, p.rows);
    let pb = chunk * p.dim;
    for (var row = r0; row < r1; row = row + 1u) {
        let b = row * p.dim;
        let r = rstd[p.rstd_off + row];
        var s = 0.0;
        for (var i = lid; i < p.dim; i = i + 256u) {
            s = s + w[p.w_off + i] * dy[p.dy_off + b + i] * x[p.x_off + b + i];
        }
        red[lid] = s;
        workgroupBarrier();
        for (var k = 128u; k > 0u; k = k >> 1u) {
            if (lid < k) { red[lid] = red[lid] + red[lid + k]; }
            workgroupBarrier();
        }
        let c = r * r * r * (red[0] / f32(p.dim));
        workgroupBarrier();  // red[0] is read by all before the next row overwrites it
        for (var i = lid; i < p.dim; i = i + 256u) {
            let d = dy[p.dy_off + b + i];
            let xv = x[p.x_off + b + i];
            dx[p.dx_off + b + i] = dx[p.dx_off + b + i] + (r * (w[p.w_off + i] * d) - xv * c);
            let contrib = d * xv * r;
            if (row == r0) {
                partial[pb + i] = contrib;
            } else {
                partial[pb + i] = partial[pb + i] + contrib;
            }
        }
    }
}
