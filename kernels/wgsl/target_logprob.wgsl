// target_logprob.wgsl — log-probs of CSR targets under softmax(scale·logits[row]) and each
// row's entropy (see target_logprob.cu for the math; masked −inf logits contribute nothing);
// the statistics come from one read of the row (online softmax).
// Bindings: 0 params, 1 logits [rows, vocab], 2 row_ptr [rows+1] (i32), 3 tokens [n_targets]
// (i32), 4 logp [n_targets], 5 entropy [rows] (a dummy buffer when has_h == 0).
// Dispatch: one workgroup of 256 per row, rows folded into (x, y).

const LOWEST: f32 = -3.4028234663852886e38;  // the lowest finite f32: where a running max starts

struct Params { rows: u32, vocab: u32, scale: f32, has_h: u32,
                logits_off: u32, logp_off: u32, h_off: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> row_ptr: array<i32>;
@group(0) @binding(3) var<storage, read> tokens: array<i32>;
@group(0) @binding(4) var<storage, read_write> logp: array<f32>;
@group(0) @binding(5) var<storage, read_write> entropy: array<f32>;

// Masked (−inf) and NaN logits are recognised by their bits: WGSL lets implementations assume
// that floats are neither infinite nor NaN, so float comparisons cannot be trusted for them
// (lavapipe drops NaN from `max`/`<`). A NaN logit poisons its whole row, as on the CPU and CUDA.
fn is_masked(l: f32) -> bool { return bitcast<u32>(l) == 0xff800000u; }
fn is_nan(l: f32) -> bool { return (bitcast<u32>(l) & 0x7fffffffu) > 0x7f800000u; }
// A quiet NaN made at run time (a constant expression may not be NaN in WGSL).
fn qnan() -> f32 { return bitcast<f32>(0x7fc00000u | (p.vocab & 0u)); }

var<workgroup> red: array<f32, 256>;

fn wg_sum(v: f32, lid: u32) -> f32 {
    workgroupBarrier();  // red may still be read by the previous reduction
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
        workgroupBarrier();
    }
    return red[0];
}

fn wg_max(v: f32, lid: u32) -> f32 {
    workgroupBarrier();
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    return red[0];
}

// Softmax statistics of the row at `base` in one pass (online softmax, as in the .cu): returns
// (m, S, T, nans) with m = max z, S = Σ exp(z − m), T = Σ exp(z − m)·(z − m) over the finite
// logits and the number of NaN logits, the same in every invocation. An invocation that saw no
// finite logit has s = 0 and contributes nothing.
fn row_stats(base: u32, lid: u32) -> vec4<f32> {
    var m = LOWEST;
    var s = 0.0;
    var t = 0.0;
    var nans = 0.0;
    for (var j = lid; j < p.vocab; j = j + 256u) {
        let l = logits[base + j];
        if (is_nan(l)) {
            nans = nans + 1.0;
            continue;
        }
        if (is_masked(l)) { continue; }
        let z = p.scale * l;
        if (z > m) {
            if (s > 0.0) {
                let a = exp(m - z);
                t = a * (t + (m - z) * s);
                s = s * a;
            }
            m = z;
        }
        let d = z - m;
        let e = exp(d);
        s = s + e;
        t = t + e * d;
    }
    let bm = wg_max(m, lid);
    var sc = 0.0;
    var tc = 0.0;
    if (s > 0.0) {
        let a = exp(m - bm);
        sc = a * s;
        tc = a * (t + (m - bm) * s);
    }
    let bs = wg_sum(sc, lid);
    let bt = wg_sum(tc, lid);
    let bn = wg_sum(nans, lid);
    return vec4<f32>(bm, bs, bt, bn);
}

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
