// target_logprob.wgsl — log-probs of CSR targets under softmax(scale·logits[row]) and each
// row's entropy (see target_logprob.cu for the math; masked −inf logits contribute nothing);
// the statistics come from one read of the row (online softmax: row_stats in
// target_logprob_stats.wgsl, prepended).
// Bindings: 0 params, 1 logits [rows, vocab], 2 row_ptr [rows+1] (i32), 3 tokens [n_targets]
// (i32), 4 logp [n_targets], 5 entropy [rows] (a dummy buffer when has_h == 0).
// Dispatch: one workgroup of 256 per row, rows folded into (x, y).

struct Params { rows: u32, vocab: u32, scale: f32, has_h: u32,
                logits_off: u32, logp_off: u32, h_off: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> row_ptr: array<i32>;
@group(0) @binding(3) var<storage, read> tokens: array<i32>;
@group(0) @binding(4) var<storage, read_write> logp: array<f32>;
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;

@compute @workgroup_size(256)
fn target_logprob_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }  // uniform per workgroup
    let base = p.logits_off + row * p.vocab;
    let st = row_stats(base, lid);
    let m = st.x;
    let s = st.y;
    let t = st.z;
    let poisoned = st.w > 0.0;
    let log_s = log(s);
    if (p.has_h != 0u && lid == 0u) {
        entropy[p.h_off + row] = select(log_s - t / s, qnan(), poisoned);
    }
    let b = u32(row_ptr[row]);
    let e = u32(row_ptr[row + 1u]);
    for (var i = b + lid; i < e; i = i + 256u) {
        let lp = (p.scale * logits[base + u32(tokens[i])] - m) - log_s;
        logp[p.logp_off + i] = select(lp, qnan(), poisoned);
    }
}
