// target_logprob_stats.wgsl — the row statistics shared by target_logprob.wgsl and
// target_logprob_bwd.wgsl (prepended to both by webgpu::sources; CUDA twin:
// target_logprob_stats.cuh). The module declares `p` (a Params with `vocab: u32` and
// `scale: f32`) and `logits: array<f32>`; this file declares no binding.

const LOWEST: f32 = -3.4028234663852886e38;  // the lowest finite f32: where a running max starts

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
