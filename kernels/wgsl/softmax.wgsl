// softmax.wgsl — row softmax / log-softmax over the last dimension with a logit scale:
//   z_i = scale * x_i, m = max z, S = sum exp(z_i - m);
//   softmax: exp(z_i - m) / S;   log_softmax: (z_i - m) - log(S).
// Masked entries (x = -inf) give exactly 0 / -inf; a row of only -inf gives NaN everywhere (as
// PyTorch). Infinities are detected by their bits and never enter arithmetic: WGSL
// implementations may assume finite math.
// Bindings: 0 params, 1 x [rows, cols], 2 y [rows, cols] (does not alias x). Offsets in elements.
// Dispatch: one workgroup of 256 per row, rows folded into (x, y). One online (max, sum) pass,
// a fixed-order tree reduction (row_max_sum in softmax_row.wgsl, prepended), one write pass.

struct Params { rows: u32, cols: u32, x_off: u32, y_off: u32, scale: f32,
                _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn softmax_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }  // uniform per workgroup
    let xb = p.x_off + row * p.cols;
    let yb = p.y_off + row * p.cols;
    let st = row_max_sum(xb, lid);
    for (var i = lid; i < p.cols; i = i + 256u) {
        let v = x[xb + i];
        var out: f32;
        if (st.s == 0.0) {
            out = bitcast<f32>(NAN_BITS);
        } else if (bitcast<u32>(v) == NEG_INF_BITS) {
            out = 0.0;
        } else {
            out = exp(p.scale * v - st.m) / st.s;
        }
        y[yb + i] = out;
    }
}

@compute @workgroup_size(256)
fn log_softmax_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let xb = p.x_off + row * p.cols;
    let yb = p.y_off + row * p.cols;
    let st = row_max_sum(xb, lid);
    let log_s = log(max(st.s, 1.0));
    for (var i = lid; i < p.cols; i = i + 256u) {
        let v = x[xb + i];
        var out: f32;
        if (st.s == 0.0) {
            out = bitcast<f32>(NAN_BITS);
        } else if (bitcast<u32>(v) == NEG_INF_BITS) {
            out = bitcast<f32>(NEG_INF_BITS);
        } else {
            out = (p.scale * v - st.m) - log_s;
        }
        y[yb + i] = out;
    }
}
