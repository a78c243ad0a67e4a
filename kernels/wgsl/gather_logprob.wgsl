// gather_logprob.wgsl — out[r] = log_softmax(scale * x[r])[tokens[r]] and, when has_entropy,
// entropy[r] = -sum p log p (0 log 0 = 0); numerics of softmax.wgsl: z = scale*x, m = max z,
// S = sum exp(z - m), log p_tok = (z_tok - m) - log S, H = log S - sum_{e>0} e (z - m) / S.
// A masked (-inf) token gives -inf; a token outside [0, cols) or a row of only -inf gives NaN.
// Infinities are handled by their bits (WGSL implementations may assume finite math). The
// (max, sum) pass is row_max_sum of softmax_row.wgsl (prepended).
// Bindings: 0 params, 1 x [rows, cols], 2 tokens [rows] i32, 3 out [rows], 4 entropy [rows]
// (a dummy when has_entropy == 0). Dispatch: one workgroup of 256 per row, rows folded into (x, y).

struct Params { rows: u32, cols: u32, x_off: u32, t_off: u32, o_off: u32, e_off: u32,
                has_entropy: u32, scale: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> entropy: array<f32>;

var<workgroup> st_shared: vec2<f32>;

@compute @workgroup_size(256)
fn gather_logprob_f32(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = p.x_off + row * p.cols;
    let st = row_max_sum(base, lid);
    // Made uniform for the early return and the entropy reduction's barriers below.
    if (lid == 0u) { st_shared = vec2<f32>(st.m, st.s); }
    let tot = workgroupUniformLoad(&st_shared);
    let m = tot.x;
    let ssum = tot.y;
    if (ssum == 0.0) {
        if (lid == 0u) {
            out[p.o_off + row] = bitcast<f32>(NAN_BITS);
            if (p.has_entropy != 0u) { entropy[p.e_off + row] = bitcast<f32>(NAN_BITS); }
        }
        return;
    }
    let log_s = log(ssum);
    if (p.has_entropy != 0u) {
        var a = 0.0;
        for (var i = lid; i < p.cols; i = i + 256u) {
            let v = x[base + i];
            if (bitcast<u32>(v) != NEG_INF_BITS) {
                let z = p.scale * v - m;
                let e = exp(z);
                if (e > 0.0) { a = a + e * z; }
            }
        }
        ws[lid] = a;
        workgroupBarrier();
        for (var s = 128u; s > 0u; s = s >> 1u) {
            if (lid < s) { ws[lid] = ws[lid] + ws[lid + s]; }
            workgroupBarrier();
        }
        if (lid == 0u) { entropy[p.e_off + row] = log_s - ws[0] / ssum; }
    }
    if (lid == 0u) {
        let tok = tokens[p.t_off + row];
        var lp = bitcast<f32>(NAN_BITS);
        if (tok >= 0 && u32(tok) < p.cols) {
            let v = x[base + u32(tok)];
            if (bitcast<u32>(v) == NEG_INF_BITS) {
                lp = bitcast<f32>(NEG_INF_BITS);
            } else {
                lp = (p.scale * v - m) - log_s;
            }
        }
        out[p.o_off + row] = lp;
    }
}
