// packed_attention_bwd.wgsl — tree-masked packed attention, backward (FlashAttention-2's).
// P_ij = exp(scale * q_i . k_j - lse_i) on visible pairs (j <= i < kv_row_end[j]),
// delta_i = do_i . o_i, dS_ij = P_ij (do_i . v_j - delta_i);
// dq_i = scale * sum_j dS_ij k_j; dk_j = scale * sum_{h in group, i} dS_ij q_i;
// dv_j = sum_{h in group, i} P_ij do_i.
// Two entry points, dispatched in this order:
//  - packed_attention_bwd_dq: one workgroup of 64 invocations per (64-row tile, query head)
//    (tiles folded into (x, y), head in z), invocation = row; writes delta (its own row, then
//    uses it) and dq. KV blocks are skipped or left unmasked from their bounds as in the forward
//    (pa_classify and BLOCK = 16 in packed_attention.wgsl, prepended).
//  - packed_attention_bwd_dkdv: one workgroup per (64-key tile, KV head), invocation = key;
//    iterates the query heads of the group and the rows [c0, max kv_row_end of the tile) — the
//    only rows that can see these keys — 8 rows at a time, skipping row chunks that see none
//    of the tile's keys (uniform per workgroup, from the block bounds).
// Invocations read the shared rows straight from storage (caches serve them): no workgroup
// memory and no barriers — Mesa lavapipe was seen to drop the writes of workgroups that pass
// ~130 barriers in a loop.
// Bindings (both entries use all ten, so one bind-group shape per entry): 0 params; 1 q, 4 do
// [N, H_q, D]; 2 k, 3 v [N, H_kv, D]; 5 lse [H_q, N] f32; 6 kv_row_end [N] i32; 7 block_bounds
// [ceil(N/16), 2] i32; 8 delta [H_q, N] f32 (written by dq, read by dkdv); 9 o [N, H_q, D] (dq) or
// dk [N, H_kv, D] (dkdv); 10 dq [N, H_q, D] (dq) or dv [N, H_kv, D] (dkdv).
// Limits: D <= 256 (private arrays). The dkdv entry binds
// ten storage buffers (adapters with the WebGPU default of 8 per stage cannot run it).
// Numerics: f32; P is recomputed from lse, so no running max is needed.

alias elem_t = f32;

struct Params {
    n: u32, hq: u32, hkv: u32, d: u32,
    scale: f32, group: u32, q_off: u32, k_off: u32,
    v_off: u32, do_off: u32, lse_off: u32, delta_off: u32,
    x9_off: u32, x10_off: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem_t>;
@group(0) @binding(2) var<storage, read> k: array<elem_t>;
@group(0) @binding(3) var<storage, read> v: array<elem_t>;
@group(0) @binding(4) var<storage, read> d_o: array<elem_t>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> kv_row_end: array<i32>;
@group(0) @binding(7) var<storage, read> block_bounds: array<i32>;
// Entry packed_attention_bwd_dq.
@group(0) @binding(8) var<storage, read_write> delta_w: array<f32>;
@group(0) @binding(9) var<storage, read> o: array<elem_t>;
@group(0) @binding(10) var<storage, read_write> dq: array<elem_t>;
// Entry packed_attention_bwd_dkdv.
@group(0) @binding(8) var<storage, read> delta_r: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<elem_t>;
@group(0) @binding(10) var<storage, read_write> dv: array<elem_t>;

const TILE: u32 = 64u;
const KC: u32 = 8u;

// Inner loops over D are unrolled 16 times and fused: Mesa lavapipe before 23.x stops every
// loop of an invocation once their iterations add up to 65535 (gallivm's loop limiter), so
// iterations are kept few (the host refuses problems past that budget on software adapters).

// (a[0..d) . k[b1..b1+d), c[0..d) . v[b2..b2+d)).
fn dots_k_v(a: ptr<function, array<f32, 256>>, b1: u32, c: ptr<function, array<f32, 256>>, b2: u32, d: u32) -> vec2<f32> {
    var s = vec2<f32>(0.0, 0.0);
    var e = 0u;
    for (; e + 16u <= d; e = e + 16u) {
        s.x = s.x + (
            (*a)[e] * f32(k[b1 + e]) + (*a)[e + 1u] * f32(k[b1 + e + 1u]) + (*a)[e + 2u] * f32(k[b1 + e + 2u]) + (*a)[e + 3u] * f32(k[b1 + e + 3u]) +
            (*a)[e + 4u] * f32(k[b1 + e + 4u]) + (*a)[e + 5u] * f32(k[b1 + e + 5u]) + (*a)[e + 6u] * f32(k[b1 + e + 6u]) + (*a)[e + 7u] * f32(k[b1 + e + 7u]) +
            (*a)[e + 8u] * f32(k[b1 + e + 8u]) + (*a)[e + 9u] * f32(k[b1 + e + 9u]) + (*a)[e + 10u] * f32(k[b1 + e + 10u]) + (*a)[e + 11u] * f32(k[b1 + e + 11u]) +
            (*a)[e + 12u] * f32(k[b1 + e + 12u]) + (*a)[e + 13u] * f32(k[b1 + e + 13u]) + (*a)[e + 14u] * f32(k[b1 + e + 14u]) + (*a)[e + 15u] * f32(k[b1 + e + 15u]));
        s.y = s.y + (
            (*c)[e] * f32(v[b2 + e]) + (*c)[e + 1u] * f32(v[b2 + e + 1u]) + (*c)[e + 2u] * f32(v[b2 + e + 2u]) + (*c)[e + 3u] * f32(v[b2 + e + 3u]) +
            (*c)[e + 4u] * f32(v[b2 + e + 4u]) + (*c)[e + 5u] * f32(v[b2 + e + 5u]) + (*c)[e + 6u] * f32(v[b2 + e + 6u]) + (*c)[e + 7u] * f32(v[b2 + e + 7u]) +
            (*c)[e + 8u] * f32(v[b2 + e + 8u]) + (*c)[e + 9u] * f32(v[b2 + e + 9u]) + (*c)[e + 10u] * f32(v[b2 + e + 10u]) + (*c)[e + 11u] * f32(v[b2 + e + 11u]) +
            (*c)[e + 12u] * f32(v[b2 + e + 12u]) + (*c)[e + 13u] * f32(v[b2 + e + 13u]) + (*c)[e + 14u] * f32(v[b2 + e + 14u]) + (*c)[e + 15u] * f32(v[b2 + e + 15u]));
    }
    for (; e < d; e = e + 1u) {
        s.x = s.x + (*a)[e] * f32(k[b1 + e]);
        s.y = s.y + (*c)[e] * f32(v[b2 + e]);
    }
    return s;
}

// (a[0..d) . q[b1..b1+d), c[0..d) . d_o[b2..b2+d)).
fn dots_q_do(a: ptr<function, array<f32, 256>>, b1: u32, c: ptr<function, array<f32, 256>>, b2: u32, d: u32) -> vec2<f32> {
    var s = vec2<f32>(0.0, 0.0);
    var e = 0u;
    for (; e + 16u <= d; e = e + 16u) {
        s.x = s.x + (
            (*a)[e] * f32(q[b1 + e]) + (*a)[e + 1u] * f32(q[b1 + e + 1u]) + (*a)[e + 2u] * f32(q[b1 + e + 2u]) + (*a)[e + 3u] * f32(q[b1 + e + 3u]) +
            (*a)[e + 4u] * f32(q[b1 + e + 4u]) + (*a)[e + 5u] * f32(q[b1 + e + 5u]) + (*a)[e + 6u] * f32(q[b1 + e + 6u]) + (*a)[e + 7u] * f32(q[b1 + e + 7u]) +
            (*a)[e + 8u] * f32(q[b1 + e + 8u]) + (*a)[e + 9u] * f32(q[b1 + e + 9u]) + (*a)[e + 10u] * f32(q[b1 + e + 10u]) + (*a)[e + 11u] * f32(q[b1 + e + 11u]) +
            (*a)[e + 12u] * f32(q[b1 + e + 12u]) + (*a)[e + 13u] * f32(q[b1 + e + 13u]) + (*a)[e + 14u] * f32(q[b1 + e + 14u]) + (*a)[e + 15u] * f32(q[b1 + e + 15u]));
        s.y = s.y + (
            (*c)[e] * f32(d_o[b2 + e]) + (*c)[e + 1u] * f32(d_o[b2 + e + 1u]) + (*c)[e + 2u] * f32(d_o[b2 + e + 2u]) + (*c)[e + 3u] * f32(d_o[b2 + e + 3u]) +
            (*c)[e + 4u] * f32(d_o[b2 + e + 4u]) + (*c)[e + 5u] * f32(d_o[b2 + e + 5u]) + (*c)[e + 6u] * f32(d_o[b2 + e + 6u]) + (*c)[e + 7u] * f32(d_o[b2 + e + 7u]) +
            (*c)[e + 8u] * f32(d_o[b2 + e + 8u]) + (*c)[e + 9u] * f32(d_o[b2 + e + 9u]) + (*c)[e + 10u] * f32(d_o[b2 + e + 10u]) + (*c)[e + 11u] * f32(d_o[b2 + e + 11u]) +
            (*c)[e + 12u] * f32(d_o[b2 + e + 12u]) + (*c)[e + 13u] * f32(d_o[b2 + e + 13u]) + (*c)[e + 14u] * f32(d_o[b2 + e + 14u]) + (*c)[e + 15u] * f32(d_o[b2 + e + 15u]));
    }
    for (; e < d; e = e + 1u) {
        s.x = s.x + (*a)[e] * f32(q[b1 + e]);
        s.y = s.y + (*c)[e] * f32(d_o[b2 + e]);
    }
    return s;
}

// y[0..d) += alpha * k[b..b+d)
fn axpy_k(y: ptr<function, array<f32, 256>>, alpha: f32, b: u32, d: u32) {
    var e = 0u;
    for (; e + 16u <= d; e = e + 16u) {
        (*y)[e] = (*y)[e] + alpha * f32(k[b + e]);
        (*y)[e + 1u] = (*y)[e + 1u] + alpha * f32(k[b + e + 1u]);
        (*y)[e + 2u] = (*y)[e + 2u] + alpha * f32(k[b + e + 2u]);
        (*y)[e + 3u] = (*y)[e + 3u] + alpha * f32(k[b + e + 3u]);
        (*y)[e + 4u] = (*y)[e + 4u] + alpha * f32(k[b + e + 4u]);
        (*y)[e + 5u] = (*y)[e + 5u] + alpha * f32(k[b + e + 5u]);
        (*y)[e + 6u] = (*y)[e + 6u] + alpha * f32(k[b + e + 6u]);
        (*y)[e + 7u] = (*y)[e + 7u] + alpha * f32(k[b + e + 7u]);
        (*y)[e + 8u] = (*y)[e + 8u] + alpha * f32(k[b + e + 8u]);
        (*y)[e + 9u] = (*y)[e + 9u] + alpha * f32(k[b + e + 9u]);
        (*y)[e + 10u] = (*y)[e + 10u] + alpha * f32(k[b + e + 10u]);
        (*y)[e + 11u] = (*y)[e + 11u] + alpha * f32(k[b + e + 11u]);
        (*y)[e + 12u] = (*y)[e + 12u] + alpha * f32(k[b + e + 12u]);
        (*y)[e + 13u] = (*y)[e + 13u] + alpha * f32(k[b + e + 13u]);
        (*y)[e + 14u] = (*y)[e + 14u] + alpha * f32(k[b + e + 14u]);
        (*y)[e + 15u] = (*y)[e + 15u] + alpha * f32(k[b + e + 15u]);
    }
    for (; e < d; e = e + 1u) { (*y)[e] = (*y)[e] + alpha * f32(k[b + e]); }
}

// y[0..d) += alpha * q[bq..bq+d); z[0..d) += beta * d_o[bo..bo+d).
fn axpy_q_do(y: ptr<function, array<f32, 256>>, alpha: f32, bq: u32, z: ptr<function, array<f32, 256>>, beta: f32, bo: u32, d: u32) {
    var e = 0u;
    for (; e + 16u <= d; e = e + 16u) {
        (*y)[e] = (*y)[e] + alpha * f32(q[bq + e]);
        (*z)[e] = (*z)[e] + beta * f32(d_o[bo + e]);
        (*y)[e + 1u] = (*y)[e + 1u] + alpha * f32(q[bq + e + 1u]);
        (*z)[e + 1u] = (*z)[e + 1u] + beta * f32(d_o[bo + e + 1u]);
        (*y)[e + 2u] = (*y)[e + 2u] + alpha * f32(q[bq + e + 2u]);
        (*z)[e + 2u] = (*z)[e + 2u] + beta * f32(d_o[bo + e + 2u]);
        (*y)[e + 3u] = (*y)[e + 3u] + alpha * f32(q[bq + e + 3u]);
        (*z)[e + 3u] = (*z)[e + 3u] + beta * f32(d_o[bo + e + 3u]);
        (*y)[e + 4u] = (*y)[e + 4u] + alpha * f32(q[bq + e + 4u]);
        (*z)[e + 4u] = (*z)[e + 4u] + beta * f32(d_o[bo + e + 4u]);
        (*y)[e + 5u] = (*y)[e + 5u] + alpha * f32(q[bq + e + 5u]);
        (*z)[e + 5u] = (*z)[e + 5u] + beta * f32(d_o[bo + e + 5u]);
        (*y)[e + 6u] = (*y)[e + 6u] + alpha * f32(q[bq + e + 6u]);
        (*z)[e + 6u] = (*z)[e + 6u] + beta * f32(d_o[bo + e + 6u]);
        (*y)[e + 7u] = (*y)[e + 7u] + alpha * f32(q[bq + e + 7u]);
        (*z)[e + 7u] = (*z)[e + 7u] + beta * f32(d_o[bo + e + 7u]);
        (*y)[e + 8u] = (*y)[e + 8u] + alpha * f32(q[bq + e + 8u]);
        (*z)[e + 8u] = (*z)[e + 8u] + beta * f32(d_o[bo + e + 8u]);
        (*y)[e + 9u] = (*y)[e + 9u] + alpha * f32(q[bq + e + 9u]);
        (*z)[e + 9u] = (*z)[e + 9u] + beta * f32(d_o[bo + e + 9u]);
        (*y)[e + 10u] = (*y)[e + 10u] + alpha * f32(q[bq + e + 10u]);
        (*z)[e + 10u] = (*z)[e + 10u] + beta * f32(d_o[bo + e + 10u]);
        (*y)[e + 11u] = (*y)[e + 11u] + alpha * f32(q[bq + e + 11u]);
        (*z)[e + 11u] = (*z)[e + 11u] + beta * f32(d_o[bo + e + 11u]);
        (*y)[e + 12u] = (*y)[e + 12u] + alpha * f32(q[bq + e + 12u]);
        (*z)[e + 12u] = (*z)[e + 12u] + beta * f32(d_o[bo + e + 12u]);
        (*y)[e + 13u] = (*y)[e + 13u] + alpha * f32(q[bq + e + 13u]);
        (*z)[e + 13u] = (*z)[e + 13u] + beta * f32(d_o[bo + e + 13u]);
        (*y)[e + 14u] = (*y)[e + 14u] + alpha * f32(q[bq + e + 14u]);
        (*z)[e + 14u] = (*z)[e + 14u] + beta * f32(d_o[bo + e + 14u]);
        (*y)[e + 15u] = (*y)[e + 15u] + alpha * f32(q[bq + e + 15u]);
        (*z)[e + 15u] = (*z)[e + 15u] + beta * f32(d_o[bo + e + 15u]);
    }
    for (; e < d; e = e + 1u) {
        (*y)[e] = (*y)[e] + alpha * f32(q[bq + e]);
        (*z)[e] = (*z)[e] + beta * f32(d_o[bo + e]);
    }
}

@compute @workgroup_size(64)
fn packed_attention_bwd_dq(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let r0 = (wid.x + wid.y * nwg.x) * TILE;
    if (r0 >= p.n) { return; }  // uniform per workgroup
    let h = wid.z;
    let g = h / p.group;
    let d = p.d;
    let r1 = min(r0 + TILE, p.n);
    let row = r0 + lid;
    let valid = row < p.n;
    var qr: array<f32, 256>;
    var dor: array<f32, 256>;
    var acc: array<f32, 256>;
    var dl = 0.0;
    var ls = 0.0;
    for (var e = 0u; e < d; e = e + 1u) {
        acc[e] = 0.0;
        qr[e] = 0.0;
        dor[e] = 0.0;
        if (valid) {
            let at = (row * p.hq + h) * d + e;
            qr[e] = f32(q[p.q_off + at]) * p.scale;
            dor[e] = f32(d_o[p.do_off + at]);
            dl = dl + dor[e] * f32(o[p.x9_off + at]);
        }
    }
    if (valid) {
        delta_w[p.delta_off + h * p.n + row] = dl;
        ls = lse[p.lse_off + h * p.n + row];
    }
    let nblocks = (r1 + BLOCK - 1u) / BLOCK;
    for (var b = 0u; b < nblocks; b = b + 1u) {
        let cls = pa_classify(b, r0, r1);
        if (cls == 0u) { continue; }  // empty tile
        let full = cls == 2u;
        let c0 = b * BLOCK;
        let c1 = min(c0 + BLOCK, p.n);
        if (valid) {
            for (var j = c0; j < c1; j = j + 1u) {
                if (full || (j <= row && row < u32(kv_row_end[j]))) {
                    let kb = p.k_off + (j * p.hkv + g) * d;
                    let sd = dots_k_v(&qr, kb, &dor, p.v_off + (j * p.hkv + g) * d, d);
                    axpy_k(&acc, exp(sd.x - ls) * (sd.y - dl), kb, d);
                }
            }
        }
    }
    if (valid) {
        let ob = p.x10_off + (row * p.hq + h) * d;
        for (var e = 0u; e < d; e = e + 1u) { dq[ob + e] = elem_t(acc[e] * p.scale); }
    }
}

@compute @workgroup_size(64)
fn packed_attention_bwd_dkdv(@builtin(workgroup_id) wid: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let c0 = (wid.x + wid.y * nwg.x) * TILE;
    if (c0 >= p.n) { return; }  // uniform per workgroup
    let g = wid.z;
    let d = p.d;
    let c1 = min(c0 + TILE, p.n);
    let col = c0 + lid;
    let valid = col < p.n;
    // Rows that can see a key of this tile: [c0, hi).
    var hi = 0u;
    for (var b = c0 / BLOCK; b * BLOCK < c1; b = b + 1u) {
        hi = max(hi, u32(block_bounds[2u * b + 1u]));
    }
    var kr: array<f32, 256>;
    var vr: array<f32, 256>;
    var dka: array<f32, 256>;
    var dva: array<f32, 256>;
    var end = 0u;
    for (var e = 0u; e < d; e = e + 1u) {
        dka[e] = 0.0;
        dva[e] = 0.0;
        kr[e] = 0.0;
        vr[e] = 0.0;
        if (valid) {
            let at = (col * p.hkv + g) * d + e;
            kr[e] = f32(k[p.k_off + at]) * p.scale;
            vr[e] = f32(v[p.v_off + at]);
        }
    }
    if (valid) { end = u32(kv_row_end[col]); }
    for (var hh = 0u; hh < p.group; hh = hh + 1u) {
        let h = g * p.group + hh;
        for (var i0 = c0; i0 < hi; i0 = i0 + KC) {
            let rc = min(KC, hi - i0);
            // Skip the chunk when no 16-column block of the tile has a visible pair in it.
            var any = false;
            for (var b = c0 / BLOCK; b * BLOCK < c1; b = b + 1u) {
                any = any || (i0 < u32(block_bounds[2u * b + 1u]) && i0 + rc > b * BLOCK);
            }
            if (!any) { continue; }  // uniform per workgroup
            if (valid) {
                for (var t = 0u; t < rc; t = t + 1u) {
                    let i = i0 + t;
                    if (col <= i && i < end) {
                        let qb = p.q_off + (i * p.hq + h) * d;
                        let ob = p.do_off + (i * p.hq + h) * d;
                        let sd = dots_q_do(&kr, qb, &vr, ob, d);
                        let pe = exp(sd.x - lse[p.lse_off + h * p.n + i]);
                        let ds = pe * (sd.y - delta_r[p.delta_off + h * p.n + i]);
                        axpy_q_do(&dka, ds, qb, &dva, pe, ob, d);
                    }
                }
            }
        }
    }
    if (valid) {
        let ob = (col * p.hkv + g) * d;
        for (var e = 0u; e < d; e = e + 1u) {
            dk[p.x9_off + ob + e] = elem_t(dka[e] * p.scale);
            dv[p.x10_off + ob + e] = elem_t(dva[e]);
        }
    }
}
