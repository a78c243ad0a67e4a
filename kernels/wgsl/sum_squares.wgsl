// sum_squares.wgsl — per-workgroup partial sums of x[i]² (WGSL has no f64: the partials are
// f32 and the host adds them in f64, in order). Workgroup g covers elements [4096·g, 4096·g +
// 4096): each invocation sums 16 strided squares, then a fixed-order tree reduction.
// NaN/Inf propagate (adds only; no min/max).
// Bindings: 0 params, 1 x [n], 2 partial [groups = ceil(n / 4096)]. Offsets in elements.
// Dispatch: ceil(n / 4096) workgroups of 256 folded into (x, y).

struct Params { n: u32, x_off: u32, groups: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

var<workgroup> sums: array<f32, 256>;

@compute @workgroup_size(256)
fn sum_squares_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups) { return; }  // folding spare: uniform per workgroup
    let base = g * 4096u;
    var acc = 0.0;
    for (var k = 0u; k < 16u; k = k + 1u) {
        let i = base + k * 256u + lid;
        if (i < p.n) {
            let v = x[p.x_off + i];
            acc = acc + v * v;
        }
    }
    sums[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { sums[lid] = sums[lid] + sums[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u && g < p.groups) { partial[g] = sums[0]; }
}
