// merge_states.wgsl — variable-length merge of attention states, NATURAL log: for row r, states
// ib[r]..ib[r+1] of (partial_o [S, hq, D] f32, partial_lse [S, hq]) merge into output row
// ib[ib_rows + r]: M = max lse_i, w_i = exp(lse_i - M), o = sum w_i o_i / sum w_i,
// lse = M + ln sum w_i. NaN-safe: a state whose lse is -inf (compared as raw bits: WGSL need not
// honour infinities, so lse buffers are bound as u32) is empty and skipped; a row without a
// non-empty state gets o = 0, lse = -inf. skip_single != 0 leaves rows with one state untouched.
// Bindings: 0 params, 1 partial_o, 2 partial_lse (u32 bits), 3 the merge rows (indptr [R+1] at
// 0, out_rows [R] at ib_rows; validated on upload), 4 out [R, hq, D], 5 lse [R, hq] u32 bits (a
// dummy buffer when has_lse == 0).
// Dispatch: one workgroup of 128 per (row, head), folded into (x, y); threads stride over D.

alias elem_t = f32;

struct Params {
    rows: u32, hq: u32, head_dim: u32, skip_single: u32,
    has_lse: u32, po_off: u32, pl_off: u32, out_off: u32,
    lse_off: u32, ib_rows: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial_o: array<f32>;
@group(0) @binding(2) var<storage, read> partial_lse: array<u32>;
@group(0) @binding(3) var<storage, read> ib: array<i32>;
@group(0) @binding(4) var<storage, read_write> dst_out: array<elem_t>;
@group(0) @binding(5) var<storage, read_write> lse_out: array<u32>;

const NEG_INF_BITS: u32 = 0xff800000u;

@compute @workgroup_size(128)
fn merge_states(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.rows * p.hq) {
        return;
    }
    let r = flat / p.hq;
    let head = flat % p.hq;
    let b = ib[r];
    let e = ib[r + 1u];
    if (p.skip_single != 0u && e - b == 1) {
        return;
    }
    let orow = u32(ib[p.ib_rows + r]);
    var mx = 0.0;
    var found = false;
    for (var s = b; s < e; s++) {
        let bits = partial_lse[p.pl_off + u32(s) * p.hq + head];
        if (bits != NEG_INF_BITS) {
            let l = bitcast<f32>(bits);
            if (!found || l > mx) {
                mx = l;
            }
            found = true;
        }
    }
    let ob = p.out_off + (orow * p.hq + head) * p.head_dim;
    if (!found) {
        for (var c = lid; c < p.head_dim; c += 128u) {
            dst_out[ob + c] = elem_t(0.0);
        }
        if (lid == 0u && p.has_lse != 0u) {
            lse_out[p.lse_off + orow * p.hq + head] = NEG_INF_BITS;
        }
        return;
    }
    var wsum = 0.0;
    for (var s = b; s < e; s++) {
        let bits = partial_lse[p.pl_off + u32(s) * p.hq + head];
        if (bits != NEG_INF_BITS) {
            wsum += exp(bitcast<f32>(bits) - mx);
        }
    }
    for (var c = lid; c < p.head_dim; c += 128u) {
        var acc = 0.0;
        for (var s = b; s < e; s++) {
            let bits = partial_lse[p.pl_off + u32(s) * p.hq + head];
            if (bits != NEG_INF_BITS) {
                let w = exp(bitcast<f32>(bits) - mx);
                acc += w * partial_o[p.po_off + (u32(s) * p.hq + head) * p.head_dim + c];
            }
        }
        dst_out[ob + c] = elem_t(acc / wsum);
    }
    if (lid == 0u && p.has_lse != 0u) {
        lse_out[p.lse_off + orow * p.hq + head] = bitcast<u32>(mx + log(wsum));
    }
}
