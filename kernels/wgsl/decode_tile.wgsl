// decode_tile.wgsl — the shared core of paged_decode.wgsl and tree_decode.wgsl (prepended to both
// by webgpu::sources): one workgroup attends the query vectors of a contiguous row range — all q
// heads of one KV head (GQA) — to a contiguous range of KV positions held in a page list,
// reading every K/V token once for all of them (CUDA twin: decode_tile.cuh, SIMT path).
//
// Layouts (element offsets; storage bindings cover whole buffers): K/V element (page, kv, head,
// token, d) at kv[kv_off + page*s_page + kv*s_kv + head*s_head + token*s_token + d]; q [rows, hq,
// D] at q_off. Query vector m of a job (0 <= m < nrows*group) is row row_begin + m/group, head
// kvh*group + m%group; position kv_start + i lives in page ia[page_base + (i >> log2_ps)], slot
// i & (ps-1). A query at position p sees keys at positions <= p inside [kv_start, kv_end).
// The entry file defines the bindings from 4 on and job_q_row, job_pos, emit_o, emit_lse.
//
// Numerics: f32 accumulation, online softmax in base 2 (scores times sm_scale*log2 e); LSE out is
// the NATURAL log. WGSL need not honour infinities, so masking uses the finite sentinel NEG and
// an empty state's lse (-inf) is written as raw bits (lse buffers are bound as u32).
// Dispatch: one workgroup of 128 per (job, kv head), folded into (x, y). Passes of MQ = 8 query
// vectors, KV blocks of KB = 16 tokens (K then V through one f32 tile); D <= 128
// (workgroup memory ~13 KB, within WebGPU's 16 KB default).

alias elem_t = f32;

struct Params {
    num_jobs: u32, num_kv_heads: u32, hq: u32, group: u32,
    head_dim: u32, log2_ps: u32, scale_log2: f32, has_lse: u32,
    q_off: u32, kv_off: u32, s_page: u32, s_kv: u32,
    s_head: u32, s_token: u32, po_off: u32, pl_off: u32,
    out_off: u32, lse_off: u32, ib_rows: u32, sec0: u32,
    sec1: u32, sec2: u32, sec3: u32, pad0: u32,
}

// Query rows [row_begin, row_begin + nrows) against positions [kv_start, kv_end) whose pages
// start at ia[page_base]; last_pos and slot are read by the entry file's helpers.
struct Job {
    page_base: u32, kv_start: i32, kv_end: i32, row_begin: u32,
    nrows: u32, last_pos: i32, slot: i32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem_t>;
@group(0) @binding(2) var<storage, read> kv: array<elem_t>;
@group(0) @binding(3) var<storage, read> ia: array<i32>;

const THREADS: u32 = 128u;
const KB: u32 = 16u;
const MQ: u32 = 8u;
const NEG: f32 = -3.0e38;
const NEG_HALF: f32 = -1.0e38;
const NEG_INF_BITS: u32 = 0xff800000u;
const LN2: f32 = 0.69314718055994531;

var<workgroup> wq: array<f32, 1024>;   // [MQ][D]
var<workgroup> wkv: array<f32, 2064>;  // [KB][D+1]: K of the block, then V
var<workgroup> ws: array<f32, 128>;    // [MQ][KB]: scores, then P
var<workgroup> wmx: array<f32, 8>;     // running max (base 2)
var<workgroup> wl: array<f32, 8>;      // running sum
var<workgroup> wal: array<f32, 8>;     // this block's rescale factor
var<workgroup> wlim: array<i32, 8>;    // last visible position of each vector (-1: none)
var<workgroup> wjob: Job;
var<workgroup> wmaxpos: atomic<i32>;
var<workgroup> whi: i32;

fn kv_index(j: Job, kvh: u32, pos: i32, which: u32) -> u32 {
    let rel = u32(pos - j.kv_start);
    let page = u32(ia[j.page_base + (rel >> p.log2_ps)]);
    let slot = rel & ((1u << p.log2_ps) - 1u);
    return p.kv_off + page * p.s_page + which * p.s_kv + kvh * p.s_head + slot * p.s_token;
}

// K (which = 0) or V (which = 1) of positions [t0, t0 + KB) into wkv[t*(D+1) + d]; 0 past kv_hi.
fn load_block(j: Job, kvh: u32, t0: i32, kv_hi: i32, which: u32, lid: u32) {
    let d = p.head_dim;
    for (var e = lid; e < KB * d; e += THREADS) {
        let t = e / d;
        let c = e % d;
        let pos = t0 + i32(t);
        var v = 0.0;
        if (pos < kv_hi) {
            v = f32(kv[kv_index(j, kvh, pos, which) + c]);
        }
        wkv[t * (d + 1u) + c] = v;
    }
}

// Online-softmax update of query vector i over the block's scores in ws.
fn softmax_row(i: u32) {
    let mold = wmx[i];
    var mx = mold;
    for (var t = 0u; t < KB; t++) {
        mx = max(mx, ws[i * KB + t]);
    }
    if (mx <= NEG_HALF) {
        // Nothing visible so far: P = 0, state unchanged.
        for (var t = 0u; t < KB; t++) {
            ws[i * KB + t] = 0.0;
        }
        wal[i] = 1.0;
        return;
    }
    var sum = 0.0;
    for (var t = 0u; t < KB; t++) {
        let s = ws[i * KB + t];
        var e = 0.0;
        if (s > NEG_HALF) {
            e = exp2(s - mx);
        }
        ws[i * KB + t] = e;
        sum += e;
    }
    var al = 0.0;
    if (mold > NEG_HALF) {
        al = exp2(mold - mx);
    }
    wal[i] = al;
    wl[i] = wl[i] * al + sum;
    wmx[i] = mx;
}

// Runs job j for KV head kvh; every invocation calls it with the same (uniform) j and kvh.
fn attend(j: Job, kvh: u32, lid: u32) {
    let d = p.head_dim;
    let g = p.group;
    let mt = j.nrows * g;
    // Positions past the last row's position are masked for every row: stop there.
    if (lid == 0u) {
        atomicStore(&wmaxpos, -1);
    }
    workgroupBarrier();
    var mp = -1;
    for (var i = lid; i < j.nrows; i += THREADS) {
        mp = max(mp, job_pos(j, j.row_begin + i));
    }
    atomicMax(&wmaxpos, mp);
    workgroupBarrier();
    if (lid == 0u) {
        whi = max(j.kv_start, min(j.kv_end, atomicLoad(&wmaxpos) + 1));
    }
    let kv_hi = workgroupUniformLoad(&whi);
    let per = MQ * d / THREADS;
    for (var q0 = 0u; q0 < mt; q0 += MQ) {
        workgroupBarrier();
        for (var idx = lid; idx < MQ * d; idx += THREADS) {
            let i = idx / d;
            let m = q0 + i;
            var v = 0.0;
            if (m < mt) {
                let r = j.row_begin + m / g;
                v = f32(q[p.q_off + (job_q_row(j, r) * p.hq + kvh * g + m % g) * d + idx % d]);
            }
            wq[idx] = v;
        }
        if (lid < MQ) {
            let m = q0 + lid;
            wmx[lid] = NEG;
            wl[lid] = 0.0;
            var lim = -1;
            if (m < mt) {
                lim = min(job_pos(j, j.row_begin + m / g), j.kv_end - 1);
            }
            wlim[lid] = lim;
        }
        var acc = array<f32, 8>();
        for (var t0 = j.kv_start; t0 < kv_hi; t0 += i32(KB)) {
            workgroupBarrier();
            load_block(j, kvh, t0, kv_hi, 0u, lid);
            workgroupBarrier();
            {
                let i = lid / KB;
                let t = lid % KB;
                var s = 0.0;
                for (var c = 0u; c < d; c++) {
                    s += wq[i * d + c] * wkv[t * (d + 1u) + c];
                }
                var v = NEG;
                if (t0 + i32(t) <= wlim[i]) {
                    v = s * p.scale_log2;
                }
                ws[lid] = v;
            }
            workgroupBarrier();
            if (lid < MQ) {
                softmax_row(lid);
            }
            load_block(j, kvh, t0, kv_hi, 1u, lid);
            workgroupBarrier();
            for (var k = 0u; k < per; k++) {
                let o = lid + k * THREADS;
                let i = o / d;
                let c = o % d;
                var x = acc[k] * wal[i];
                for (var t = 0u; t < KB; t++) {
                    x += ws[i * KB + t] * wkv[t * (d + 1u) + c];
                }
                acc[k] = x;
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < per; k++) {
            let o = lid + k * THREADS;
            let i = o / d;
            let c = o % d;
            let m = q0 + i;
            if (m < mt) {
                let r = j.row_begin + m / g;
                let head = kvh * g + m % g;
                let l = wl[i];
                var v = 0.0;
                if (l > 0.0) {
                    v = acc[k] / l;
                }
                emit_o(j, r, head, c, v);
                if (c == 0u) {
                    var bits = NEG_INF_BITS;
                    if (l > 0.0) {
                        bits = bitcast<u32>(wmx[i] * LN2 + log(l));
                    }
                    emit_lse(j, r, head, bits);
                }
            }
        }
    }
}
