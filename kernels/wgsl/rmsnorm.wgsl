// rmsnorm.wgsl — y = x * rsqrt(mean(x^2) + eps) * w per row; rstd[row] written when has_rstd.
// Bindings: 0 params, 1 x [rows, dim], 2 w [dim], 3 y [rows, dim], 4 rstd [rows] (a dummy
// buffer when has_rstd == 0). Dispatch: one workgroup of 256 per row, rows folded into (x, y).

struct Params { rows: u32, dim: u32, eps: f32, has_rstd: u32,
                x_off: u32, w_off: u32, y_off: u32, rstd_off: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn rmsnorm_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }  // uniform per workgroup: no barrier divergence
    let xb = p.x_off + row * p.dim;
    var ss = 0.0;
    for (var i = lid; i < p.dim; i = i + 256u) {
        let v = x[xb + i];
        ss = ss + v * v;
    }
    partial[lid] = ss;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
        workgroupBarrier();
    }
    let r = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
    let yb = p.y_off + row * p.dim;
    for (var i = lid; i < p.dim; i = i + 256u) {
        y[yb + i] = x[xb + i] * r * w[p.w_off + i];
    }
    if (p.has_rstd != 0u && lid == 0u) { rstd[p.rstd_off + row] = r; }
}
