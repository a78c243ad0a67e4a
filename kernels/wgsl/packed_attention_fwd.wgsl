// packed_attention_fwd.wgsl — tree-masked packed attention, forward.
// For query head h (KV head g = h / group) and row i: s_ij = scale * q_i . k_j over the keys j
// visible to i (j <= i < kv_row_end[j]); o_i = softmax(s_i) . V, lse[h, i] = ln sum_j exp(s_ij).
// Bindings: 0 params; 1 q [N, H_q, D]; 2 k, 3 v [N, H_kv, D]; 4 kv_row_end [N] i32;
// 5 block_bounds [ceil(N/16), 2] i32 (min, max of kv_row_end per 16 columns); 6 o [N, H_q, D];
// 7 lse [H_q, N] f32.
// Dispatch: one workgroup of 64 invocations per (64-row tile, query head): tiles folded into
// (x, y), the head in z; invocation = row. KV blocks of BLOCK = 16 columns are classified from
// their bounds (pa_classify in packed_attention.wgsl, prepended; uniform per workgroup): empty
// blocks are skipped, full blocks are not masked per element. Each invocation reads K and V
// rows straight from storage (rows of a block are shared by the whole workgroup, so caches serve
// them); no workgroup memory and no barriers — Mesa lavapipe was seen to drop the writes of
// workgroups that pass ~130 barriers in a loop. q and the accumulator live in private arrays,
// so D <= 256.
// Numerics: f32 online softmax; -1e30 stands for -inf (WGSL has no infinity literal), and every
// valid row sees its own column, so l >= 1 at the end.

alias elem_t = f32;

struct Params {
    n: u32, hq: u32, hkv: u32, d: u32,
    scale: f32, group: u32, q_off: u32, k_off: u32,
    v_off: u32, o_off: u32, lse_off: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem_t>;
@group(0) @binding(2) var<storage, read> k: array<elem_t>;
@group(0) @binding(3) var<storage, read> v: array<elem_t>;
@group(0) @binding(4) var<storage, read> kv_row_end: array<i32>;
@group(0) @binding(5) var<storage, read> block_bounds: array<i32>;
@group(0) @binding(6) var<storage, read_write> o: array<elem_t>;
@group(0) @binding(7) var<storage, read_write> lse: array<f32>;

const ROWS: u32 = 64u;
const KC: u32 = 16u;
const NEG: f32 = -1e30;

// Inner loops over D are unrolled 16 times: Mesa lavapipe before 23.x stops every loop of an
// invocation once their iterations add up to 65535 (gallivm's loop limiter), so iterations
// are kept few (the host refuses problems past that budget on software adapters).

// a[0..d) . k[b..b+d)
fn dot_k(a: ptr<function, array<f32, 256>>, b: u32, d: u32) -> f32 {
    var s = 0.0;
    var e = 0u;
    for (; e + 16u <= d; e = e + 16u) {
        s = s + (
            (*a)[e] * f32(k[b + e]) + (*a)[e + 1u] * f32(k[b + e + 1u]) + (*a)[e + 2u] * f32(k[b + e + 2u]) + (*a)[e + 3u] * f32(k[b + e + 3u]) +
            (*a)[e + 4u] * f32(k[b + e + 4u]) + (*a)[e + 5u] * f32(k[b + e + 5u]) + (*a)[e + 6u] * f32(k[b + e + 6u]) + (*a)[e + 7u] * f32(k[b + e + 7u]) +
            (*a)[e + 8u] * f32(k[b + e + 8u]) + (*a)[e + 9u] * f32(k[b + e + 9u]) + (*a)[e + 10u] * f32(k[b + e + 10u]) + (*a)[e + 11u] * f32(k[b + e + 11u]) +
            (*a)[e + 12u] * f32(k[b + e + 12u]) + (*a)[e + 13u] * f32(k[b + e + 13u]) + (*a)[e + 14u] * f32(k[b + e + 14u]) + (*a)[e + 15u] * f32(k[b + e + 15u]));
    }
    for (; e < d; e = e + 1u) { s = s + (*a)[e] * f32(k[b + e]); }
    return s;
}

// y[0..d) += alpha * v[b..b+d)
fn axpy_v(y: ptr<function, array<f32, 256>>, alpha: f32, b: u32, d: u32) {
    var e = 0u;
    for (; e + 16u <= d; e = e + 16u) {
        (*y)[e] = (*y)[e] + alpha * f32(v[b + e]);
        (*y)[e + 1u] = (*y)[e + 1u] + alpha * f32(v[b + e + 1u]);
        (*y)[e + 2u] = (*y)[e + 2u] + alpha * f32(v[b + e + 2u]);
        (*y)[e + 3u] = (*y)[e + 3u] + alpha * f32(v[b + e + 3u]);
        (*y)[e + 4u] = (*y)[e + 4u] + alpha * f32(v[b + e + 4u]);
        (*y)[e + 5u] = (*y)[e + 5u] + alpha * f32(v[b + e + 5u]);
        (*y)[e + 6u] = (*y)[e + 6u] + alpha * f32(v[b + e + 6u]);
        (*y)[e + 7u] = (*y)[e + 7u] + alpha * f32(v[b + e + 7u]);
        (*y)[e + 8u] = (*y)[e + 8u] + alpha * f32(v[b + e + 8u]);
        (*y)[e + 9u] = (*y)[e + 9u] + alpha * f32(v[b + e + 9u]);
        (*y)[e + 10u] = (*y)[e + 10u] + alpha * f32(v[b + e + 10u]);
        (*y)[e + 11u] = (*y)[e + 11u] + alpha * f32(v[b + e + 11u]);
        (*y)[e + 12u] = (*y)[e + 12u] + alpha * f32(v[b + e + 12u]);
        (*y)[e + 13u] = (*y)[e + 13u] + alpha * f32(v[b + e + 13u]);
        (*y)[e + 14u] = (*y)[e + 14u] + alpha * f32(v[b + e + 14u]);
        (*y)[e + 15u] = (*y)[e + 15u] + alpha * f32(v[b + e + 15u]);
    }
    for (; e < d; e = e + 1u) { (*y)[e] = (*y)[e] + alpha * f32(v[b + e]); }
}

// y[0..d) *= c.
fn scale_acc(y: ptr<function, array<f32, 256>>, c: f32, d: u32) {
    var e = 0u;
    for (; e + 16u <= d; e = e + 16u) {
        (*y)[e] = (*y)[e] * c;
        (*y)[e + 1u] = (*y)[e + 1u] * c;
        (*y)[e + 2u] = (*y)[e + 2u] * c;
        (*y)[e + 3u] = (*y)[e + 3u] * c;
        (*y)[e + 4u] = (*y)[e + 4u] * c;
        (*y)[e + 5u] = (*y)[e + 5u] * c;
        (*y)[e + 6u] = (*y)[e + 6u] * c;
        (*y)[e + 7u] = (*y)[e + 7u] * c;
        (*y)[e + 8u] = (*y)[e + 8u] * c;
        (*y)[e + 9u] = (*y)[e + 9u] * c;
        (*y)[e + 10u] = (*y)[e + 10u] * c;
        (*y)[e + 11u] = (*y)[e + 11u] * c;
        (*y)[e + 12u] = (*y)[e + 12u] * c;
        (*y)[e + 13u] = (*y)[e + 13u] * c;
        (*y)[e + 14u] = (*y)[e + 14u] * c;
        (*y)[e + 15u] = (*y)[e + 15u] * c;
    }
    for (; e < d; e = e + 1u) { (*y)[e] = (*y)[e] * c; }
}

@compute @workgroup_size(64)
fn packed_attention_fwd(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let r0 = (wid.x + wid.y * nwg.x) * ROWS;
    if (r0 >= p.n) { return; }  // uniform per workgroup
    let h = wid.z;
    let g = h / p.group;
    let d = p.d;
    let r1 = min(r0 + ROWS, p.n);
    let row = r0 + lid;
    let valid = row < p.n;
    var qr: array<f32, 256>;
    var acc: array<f32, 256>;
    for (var t = 0u; t < d; t = t + 1u) {
        acc[t] = 0.0;
        qr[t] = 0.0;
        if (valid) { qr[t] = f32(q[p.q_off + (row * p.hq + h) * d + t]) * p.scale; }
    }
    var m = NEG;
    var l = 0.0;
    let nblocks = (r1 + BLOCK - 1u) / BLOCK;
    for (var b = 0u; b < nblocks; b = b + 1u) {
        let cls = pa_classify(b, r0, r1);
        if (cls == 0u) { continue; }  // empty tile
        let full = cls == 2u;
        let c0 = b * BLOCK;
        let c1 = min(c0 + BLOCK, p.n);
        for (var cc = c0; cc < c1; cc = cc + KC) {
            let kc = min(KC, c1 - cc);
            if (valid) {
                var sc: array<f32, 16>;
                var mx = NEG;
                for (var t = 0u; t < kc; t = t + 1u) {
                    let j = cc + t;
                    sc[t] = NEG;
                    if (full || (j <= row && row < u32(kv_row_end[j]))) {
                        let s = dot_k(&qr, p.k_off + (j * p.hkv + g) * d, d);
                        sc[t] = s;
                        mx = max(mx, s);
                    }
                }
                if (mx > NEG) {
                    let m_new = max(m, mx);
                    let corr = exp(m - m_new);
                    l = l * corr;
                    scale_acc(&acc, corr, d);
                    for (var t = 0u; t < kc; t = t + 1u) {
                        if (sc[t] > NEG) {
                            let pe = exp(sc[t] - m_new);
                            l = l + pe;
                            axpy_v(&acc, pe, p.v_off + ((cc + t) * p.hkv + g) * d, d);
                        }
                    }
                    m = m_new;
                }
            }
        }
    }
    if (valid) {
        let inv = 1.0 / l;
        let ob = p.o_off + (row * p.hq + h) * d;
        for (var e = 0u; e < d; e = e + 1u) { o[ob + e] = elem_t(acc[e] * inv); }
        lse[p.lse_off + h * p.n + row] = m + log(l);
    }
}
