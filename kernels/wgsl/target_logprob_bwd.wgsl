// target_logprob_bwd.wgsl — backward of target_logprob.wgsl, OVERWRITING dlogits (see
// target_logprob_bwd.cu): dense part −scale·G·p_j (+ entropy term) for every j, then, after a
// storage barrier, invocation 0 adds scale·g_i at tok_i for each target of the row in order.
// Row statistics: row_stats in target_logprob_stats.wgsl (prepended), as in the forward.
// Bindings: 0 params, 1 logits [rows, vocab], 2 row_ptr [rows+1] (i32), 3 tokens [n_targets]
// (i32), 4 grad_logp [n_targets], 5 grad_entropy [rows] (a dummy buffer when has_ge == 0),
// 6 dlogits [rows, vocab]. Dispatch: one workgroup of 256 per row, rows folded into (x, y).

struct Params { rows: u32, vocab: u32, scale: f32, has_ge: u32,
                logits_off: u32, g_off: u32, ge_off: u32, dl_off: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> row_ptr: array<i32>;
@group(0) @binding(3) var<storage, read> tokens: array<i32>;
@group(0) @binding(4) var<storage, read> grad_logp: array<f32>;
@group(0) @binding(5) var<storage, read> grad_entropy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(256)
fn target_logprob_bwd_f32(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }  // uniform per workgroup
    let base = p.logits_off + row * p.vocab;
    let dbase = p.dl_off + row * p.vocab;
    let st = row_stats(base, lid);
    let m = st.x;
    let s = st.y;
    let t = st.z;
    let poisoned = st.w > 0.0;
    let log_s = log(s);
    let h = log_s - t / s;
    let b = u32(row_ptr[row]);
    let e = u32(row_ptr[row + 1u]);
    var g = 0.0;
    for (var i = b + lid; i < e; i = i + 256u) { g = g + grad_logp[p.g_off + i]; }
    let g_sum = wg_sum(g, lid);
    var ge = 0.0;
    if (p.has_ge != 0u) { ge = grad_entropy[p.ge_off + row]; }
    for (var j = lid; j < p.vocab; j = j + 256u) {
        let l = logits[base + j];
        var d = 0.0;
        if (poisoned && !is_masked(l)) {
            d = qnan();
        } else if (!is_masked(l)) {
            let z = p.scale * l;
            let lp = (z - m) - log_s;
            let pj = exp(lp);
            d = -p.scale * g_sum * pj;
            if (p.has_ge != 0u) { d = d + ge * (-p.scale * pj * (lp + h)); }
        }
        dlogits[dbase + j] = d;
    }
    storageBarrier();
    if (lid == 0u) {
        for (var i = b; i < e; i = i + 1u) {
            let k = dbase + u32(tokens[i]);
            dlogits[k] = dlogits[k] + p.scale * grad_logp[p.g_off + i];
        }
    }
}
