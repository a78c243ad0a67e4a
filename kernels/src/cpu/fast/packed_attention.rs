//! The fast twin of [`cpu::packed_attention_fwd`](crate::cpu::packed_attention_fwd) and
//! [`cpu::packed_attention_bwd`](crate::cpu::packed_attention_bwd): the same contracts, the same
//! passes and tiles (16 query rows, 16-column KV blocks classified from their bounds, empty
//! blocks skipped), but every block product runs on the register-tiled kernels of the in-place
//! decode tile (`qk`, `pv`: 8-lane AVX2 + FMA, or 16-lane AVX-512F for more than 8 vectors, the
//! decode tile's width rule) instead of one dot product per (row, column) pair.
//!
//! A task holds one 16-row query tile (or 16-column KV block) and one KV head; its "query
//! vectors" are the rows × the query heads of that KV head's group (GQA), in panels of 8 or 16
//! lanes, so each K/V row is loaded once per 16 (AVX2) or 64 (AVX-512) query vectors. Per pass:
//!
//! * forward, per query tile: `S = scale·Q·Kᵀ` (`qk`), the tree mask on partial blocks, the
//!   online softmax of the decode tile, `Oᵀ += Pᵀ·V` (`pv`);
//! * `dQ`, per query tile: `S`, `P = exp(S − lse)`, `dP = dO·Vᵀ` (`qk` with `dO` as the query
//!   panels and V rows as keys), `dS = P∘(dP − Δ)`, `dQᵀ += dSᵀ·K` (`pv` with K rows);
//! * `dK`, `dV`, per KV block: the roles swapped — the block's 16 keys are the panels and the
//!   query vectors of the rows that may see it are the "tokens" — `Sᵀ`, `Pᵀ`, `dPᵀ`, `dSᵀ`, then
//!   `dVᵀ += P·dO` and `dKᵀ += dS·Q` (`pv` with `dO` and `Q` rows).
//!
//! Scratch buffers live per rayon task (no allocation per block). Without AVX2 + FMA the
//! reference runs.

use crate::cpu::packed_attention_bwd::{self as reference_bwd, BwdInputs};
use crate::cpu::packed_attention_fwd::{self as reference_fwd, Mask, Shape};

/// Forward pass: the contract of [`reference_fwd::forward`].
pub fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Mask<'_>,
    o: &mut [f32],
    lse: &mut [f32],
    s: Shape,
) {
    #[cfg(target_arch = "x86_64")]
    if super::decode_tile::available() && s.head_dim > 0 {
        return avx2::forward(q, k, v, mask, o, lse, s);
    }
    reference_fwd::forward(q, k, v, mask, o, lse, s)
}

/// Backward pass: the contract of [`reference_bwd::backward`].
pub fn backward(
    x: BwdInputs<'_>,
    mask: Mask<'_>,
    delta_out: &mut [f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    s: Shape,
) {
    #[cfg(target_arch = "x86_64")]
    if super::decode_tile::available() && s.head_dim > 0 {
        return avx2::backward(x, mask, delta_out, dq, dk, dv, s);
    }
    reference_bwd::backward(x, mask, delta_out, dq, dk, dv, s)
}

/// The AVX2 + FMA passes.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use rayon::prelude::*;

    use super::super::decode_tile::{Panels, softmax_block};
    use super::{BwdInputs, Mask, Shape, reference_bwd};
    use crate::cpu::decode_tile::fast_exp;
    use crate::cpu::packed_attention_fwd::TILE;
    use crate::ops::TileClass;

    /// [`super::forward`] on AVX2 + FMA (the caller checked them).
    pub(super) fn forward(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Mask<'_>,
        o: &mut [f32],
        lse: &mut [f32],
        s: Shape,
    ) {
        let (n, hq, d) = (s.num_tokens, s.num_qo_heads, s.head_dim);
        let row_len = hq * d;
        crate::cpu::regions::enter();
        let tile_lse: Vec<Vec<f32>> = o[..n * row_len]
            .par_chunks_mut(TILE * row_len)
            .enumerate()
            .map_init(Scratch::default, |sc, (t, o_tile)| {
                let rows = o_tile.len() / row_len;
                let mut out = vec![0f32; hq * rows];
                for g in 0..s.num_kv_heads {
                    // SAFETY: the caller checked AVX2 + FMA (`available()`).
                    unsafe { forward_tile(q, k, v, mask, o_tile, &mut out, t * TILE, g, s, sc) };
                }
                out
            })
            .collect();
        for (t, l) in tile_lse.iter().enumerate() {
            let r0 = t * TILE;
            let rows = l.len() / hq;
            for h in 0..hq {
                lse[h * n + r0..h * n + r0 + rows].copy_from_slice(&l[h * rows..(h + 1) * rows]);
            }
        }
    }

    /// One line of [`probs_and_ds`] with a single `lse` and `delta` (the dK/dV pass, where a
    /// line is one query vector): `p = exp(s − lse)`, `ds = p·(dp − delta)`.
    #[inline(always)]
    fn probs_and_ds_line(s: &mut [f32], dp: &mut [f32], lse: f32, delta: f32) {
        for (x, y) in s.iter_mut().zip(dp.iter_mut()) {
            let p = fast_exp(*x - lse);
            *x = p;
            *y = p * (*y - delta);
        }
    }

    /// [`super::backward`] on AVX2 + FMA (the caller checked them).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        x: BwdInputs<'_>,
        mask: Mask<'_>,
        delta_out: &mut [f32],
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
        s: Shape,
    ) {
        let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
        reference_bwd::delta(x.o, x.d_o, delta_out, s);
        let delta = &*delta_out;
        crate::cpu::regions::enter();
        dq[..n * hq * d].par_chunks_mut(TILE * hq * d).enumerate().for_each_init(
            Scratch::default,
            |sc, (t, dq_tile)| {
                for g in 0..hkv {
                    // SAFETY: the caller checked AVX2 + FMA (`available()`).
                    unsafe { dq_tile_pass(x, mask, delta, dq_tile, t * TILE, g, s, sc) };
                }
            },
        );
        crate::cpu::regions::enter();
        let keys = DKDV_BLOCKS * TILE;
        dk[..n * hkv * d]
            .par_chunks_mut(keys * hkv * d)
            .zip(dv[..n * hkv * d].par_chunks_mut(keys * hkv * d))
            .enumerate()
            .for_each_init(Scratch::default, |sc, (b, (dk_blk, dv_blk))| {
                for g in 0..hkv {
                    // SAFETY: the caller checked AVX2 + FMA (`available()`).
                    unsafe { dkdv_block_pass(x, mask, delta, dk_blk, dv_blk, b, g, s, sc) };
                }
            });
    }

    /// Buffers of one task, reused across its blocks.
    #[derive(Default)]
    struct Scratch {
        /// Query panels `[np × d × lanes]` (scaled Q, or K of a block in the dK/dV pass).
        qt: Vec<f32>,
        /// Second panels (`dO`, or V of a block).
        dt: Vec<f32>,
        /// Row offsets of the block's keys (or the query vectors) in their tensors.
        off: Vec<usize>,
        /// Second offsets (the `dO` rows of the query vectors in the dK/dV pass).
        off2: Vec<usize>,
        /// Scores / probabilities `[tokens × mp]`.
        s: Vec<f32>,
        /// `dP` / `dS` `[tokens × mp]`.
        dp: Vec<f32>,
        /// Accumulated outputs `[d × mp]` (and a second one in the dK/dV pass).
        ot: Vec<f32>,
        ot2: Vec<f32>,
        /// Per query vector: its row, `lse`, `Δ`, running max and sum.
        row: Vec<usize>,
        lse: Vec<f32>,
        delta: Vec<f32>,
        m: Vec<f32>,
        l: Vec<f32>,
        alpha: Vec<f32>,
        mx: Vec<f32>,
        /// Per query vector, "no position limit" for the decode tile's softmax step.
        lim: Vec<i64>,
        /// Visible columns of a query tile, with whether their block is partial.
        cols: Vec<(usize, bool)>,
    }

    fn reset(v: &mut Vec<f32>, n: usize, x: f32) {
        v.clear();
        v.resize(n, x);
    }

    /// Packs `rows` vectors (`src[offs[i]..offs[i] + d]`, times `scale`) as panels of `lanes`
    /// (`L`): `dst[(i / L)·d·L + p·L + i % L]`; padding vectors are zero.
    fn pack(dst: &mut Vec<f32>, src: &[f32], offs: &[usize], d: usize, scale: f32, lanes: usize) {
        let np = offs.len().div_ceil(lanes);
        reset(dst, np * d * lanes, 0.0);
        for (i, &o) in offs.iter().enumerate() {
            let panel = &mut dst[(i / lanes) * d * lanes..][..d * lanes];
            for (p, &x) in src[o..o + d].iter().enumerate() {
                panel[p * lanes + i % lanes] = x * scale;
            }
        }
    }

    /// The query vectors of rows `[r0, r1)` for KV head `g`: `(row, offset in q)` for each row and
    /// each query head of the group, row-major.
    fn vectors(
        r0: usize,
        r1: usize,
        g: usize,
        s: Shape,
        row: &mut Vec<usize>,
        off: &mut Vec<usize>,
    ) {
        let group = s.num_qo_heads / s.num_kv_heads;
        row.clear();
        off.clear();
        for i in r0..r1 {
            for h in g * group..(g + 1) * group {
                row.push(i);
                off.push((i * s.num_qo_heads + h) * s.head_dim);
            }
        }
    }

    /// Masks `s [cols × mp]` (the scores of columns `cols`, vectors with rows `row`) to -inf where a
    /// vector's row does not see the column, on the partial blocks (`partial[t]`) only; padding
    /// vectors (past `row.len()`) everywhere.
    #[inline(always)]
    fn apply_mask(s: &mut [f32], mp: usize, cols: &[(usize, bool)], row: &[usize], mask: Mask<'_>) {
        for (t, &(j, partial)) in cols.iter().enumerate() {
            let line = &mut s[t * mp..(t + 1) * mp];
            if partial {
                for (x, &i) in line.iter_mut().zip(row) {
                    if !mask.visible(i, j) {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            line[row.len()..].fill(f32::NEG_INFINITY);
        }
    }

    /// The columns of the non-empty blocks rows `[r0, r1)` may see, with whether their block is
    /// partial.
    fn visible_columns(
        r0: usize,
        r1: usize,
        mask: Mask<'_>,
        n: usize,
        cols: &mut Vec<(usize, bool)>,
    ) {
        cols.clear();
        for b in 0..r1.div_ceil(TILE) {
            let (class, c0, c1) = mask.classify(r0, r1, b, n);
            if class != TileClass::Empty {
                cols.extend((c0..c1).map(|j| (j, class == TileClass::Partial)));
            }
        }
    }

    /// Columns per chunk of the forward pass (the decode tile's block).
    const CHUNK: usize = 128;

    /// Rows `[r0, r0 + rows)` of the query heads of KV head `g`: writes their `o` rows and their
    /// `lse` into `lse_tile [H_q, rows]`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn forward_tile(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Mask<'_>,
        o_tile: &mut [f32],
        lse_tile: &mut [f32],
        r0: usize,
        g: usize,
        s: Shape,
        sc: &mut Scratch,
    ) {
        let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
        let rows = o_tile.len() / (hq * d);
        let group = hq / hkv;
        vectors(r0, r0 + rows, g, s, &mut sc.row, &mut sc.off2);
        let m = sc.row.len();
        let Panels { lanes, qk, pv } = Panels::for_vectors(m);
        let np = m.div_ceil(lanes);
        let mp = np * lanes;
        pack(&mut sc.qt, q, &sc.off2, d, s.sm_scale, lanes);
        reset(&mut sc.ot, d * mp, 0.0);
        reset(&mut sc.m, mp, f32::NEG_INFINITY);
        reset(&mut sc.l, mp, 0.0);
        reset(&mut sc.alpha, mp, 1.0);
        sc.lim.clear();
        sc.lim.resize(m, i64::MAX - 1);
        let mut cols = std::mem::take(&mut sc.cols);
        visible_columns(r0, r0 + rows, mask, n, &mut cols);
        for chunk in cols.chunks(CHUNK) {
            sc.off.clear();
            sc.off.extend(chunk.iter().map(|&(j, _)| (j * hkv + g) * d));
            reset(&mut sc.s, chunk.len() * mp, 0.0);
            // SAFETY: the products' CPU features are this CPU's (`Panels::for_vectors`);
            // every offset is a K row `(j·H_kv + g)·D` of `j < N`, so `[off, off + d)`
            // lies in `k` (validated `N·H_kv·D` long); `qt` holds `np` panels; `s` is `bl × mp`.
            unsafe { qk(&sc.qt, np, d, k.as_ptr(), &sc.off, &mut sc.s) };
            apply_mask(&mut sc.s, mp, chunk, &sc.row, mask);
            // The decode tile's online-softmax step; the tree mask is already in `s`, so
            // no vector has a position limit (padding vectors past `lim` are masked).
            softmax_block(
                &mut sc.s,
                chunk.len(),
                mp,
                &sc.lim,
                0,
                &mut sc.m,
                &mut sc.l,
                &mut sc.alpha,
                &mut sc.mx,
            );
            if sc.alpha.iter().any(|&a| a != 1.0) {
                for line in sc.ot.chunks_exact_mut(mp) {
                    for (x, a) in line.iter_mut().zip(&sc.alpha) {
                        *x *= a;
                    }
                }
            }
            // SAFETY: the products' CPU features are this CPU's (`Panels::for_vectors`);
            // the same offsets index V rows of `v` (same layout as `k`); `s` is `bl × mp`,
            // `ot` is `d × mp`.
            unsafe { pv(&sc.s, np, d, v.as_ptr(), &sc.off, &mut sc.ot) };
        }
        sc.cols = cols;
        for (i, &row) in sc.row.iter().enumerate() {
            let (ri, h) = (row - r0, g * group + i % group);
            // Every row sees its own column, so `l >= 1` once its diagonal block ran.
            let inv = 1.0 / sc.l[i];
            let out = &mut o_tile[(ri * hq + h) * d..][..d];
            for (p, x) in out.iter_mut().enumerate() {
                *x = sc.ot[p * mp + i] * inv;
            }
            lse_tile[h * rows + ri] = sc.m[i] + sc.l[i].ln();
        }
    }

    /// `p[t][i] = exp(s[t][i] − lse[i])` (0 where `s` is -inf) and
    /// `ds[t][i] = p[t][i]·(dp[t][i] − delta[i])`, over `[tokens × mp]` (`lse`, `delta` per `i`).
    #[inline(always)]
    fn probs_and_ds(s: &mut [f32], dp: &mut [f32], mp: usize, lse: &[f32], delta: &[f32]) {
        for (sl, dl) in s.chunks_exact_mut(mp).zip(dp.chunks_exact_mut(mp)) {
            for (((x, y), &c), &dl) in sl.iter_mut().zip(dl.iter_mut()).zip(lse).zip(delta) {
                let p = fast_exp(*x - c);
                *x = p;
                *y = p * (*y - dl);
            }
        }
    }

    /// `dq` of rows `[r0, r0 + rows)`, the query heads of KV head `g`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dq_tile_pass(
        x: BwdInputs<'_>,
        mask: Mask<'_>,
        delta: &[f32],
        dq_tile: &mut [f32],
        r0: usize,
        g: usize,
        s: Shape,
        sc: &mut Scratch,
    ) {
        let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
        let rows = dq_tile.len() / (hq * d);
        let group = hq / hkv;
        vectors(r0, r0 + rows, g, s, &mut sc.row, &mut sc.off2);
        let m = sc.row.len();
        let Panels { lanes, qk, pv } = Panels::for_vectors(m);
        let np = m.div_ceil(lanes);
        let mp = np * lanes;
        pack(&mut sc.qt, x.q, &sc.off2, d, s.sm_scale, lanes);
        pack(&mut sc.dt, x.d_o, &sc.off2, d, 1.0, lanes);
        reset(&mut sc.lse, mp, 0.0);
        reset(&mut sc.delta, mp, 0.0);
        for (i, &row) in sc.row.iter().enumerate() {
            let h = g * group + i % group;
            sc.lse[i] = x.lse[h * n + row];
            sc.delta[i] = delta[h * n + row];
        }
        reset(&mut sc.ot, d * mp, 0.0);
        let mut cols = std::mem::take(&mut sc.cols);
        visible_columns(r0, r0 + rows, mask, n, &mut cols);
        for chunk in cols.chunks(CHUNK) {
            sc.off.clear();
            sc.off.extend(chunk.iter().map(|&(j, _)| (j * hkv + g) * d));
            reset(&mut sc.s, chunk.len() * mp, 0.0);
            reset(&mut sc.dp, chunk.len() * mp, 0.0);
            // SAFETY: the products' CPU features are this CPU's (`Panels::for_vectors`);
            // the offsets are K/V rows of `j < N` (in `k` and `v`, same layout); the panels
            // hold `np × d × lanes`; `s` and `dp` are `bl × mp`.
            unsafe {
                qk(&sc.qt, np, d, x.k.as_ptr(), &sc.off, &mut sc.s);
                qk(&sc.dt, np, d, x.v.as_ptr(), &sc.off, &mut sc.dp);
            }
            apply_mask(&mut sc.s, mp, chunk, &sc.row, mask);
            probs_and_ds(&mut sc.s, &mut sc.dp, mp, &sc.lse, &sc.delta);
            // SAFETY: the products' CPU features are this CPU's (`Panels::for_vectors`);
            // as above; `dp` (now dS) is `bl × mp`, `ot` is `d × mp`.
            unsafe { pv(&sc.dp, np, d, x.k.as_ptr(), &sc.off, &mut sc.ot) };
        }
        sc.cols = cols;
        for (i, &row) in sc.row.iter().enumerate() {
            let (ri, h) = (row - r0, g * group + i % group);
            let out = &mut dq_tile[(ri * hq + h) * d..][..d];
            for (p, y) in out.iter_mut().enumerate() {
                *y = sc.ot[p * mp + i] * s.sm_scale;
            }
        }
    }

    /// KV blocks per task of the dK/dV pass: their keys are the panels (64 keys = four 16-lane
    /// panels, the widest register tile; with one 16-key block per task every tile had one panel
    /// and was load-bound). A query tile that sees only some of the blocks computes the others'
    /// scores too and masks them. Measured (`--bench packed_attention`, fwd+bwd of the tree, the
    /// binaries alternated): with the AVX-512 panels, 4 blocks per task against 2 gave 44.7 /
    /// 48.2 vs 55.5 / 60.0 ms on the 2-level case and were within noise on the TreePO case
    /// (27.8 / 35.5 vs 33.7 / 35.1 ms); `docs/packed-attention.md` has the change's totals.
    const DKDV_BLOCKS: usize = 4;

    /// `dk`, `dv` of the columns of blocks `DKDV_BLOCKS·b ..` (up to [`DKDV_BLOCKS`]) for KV
    /// head `g`: the blocks' keys are the panels, the query vectors of the rows that may see any
    /// of them (`[c0, max kv_row_end)`, the group's heads) are the tokens.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dkdv_block_pass(
        x: BwdInputs<'_>,
        mask: Mask<'_>,
        delta: &[f32],
        dk_blk: &mut [f32],
        dv_blk: &mut [f32],
        b: usize,
        g: usize,
        s: Shape,
        sc: &mut Scratch,
    ) {
        let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
        let blocks = DKDV_BLOCKS * b..(DKDV_BLOCKS * (b + 1)).min(n.div_ceil(TILE));
        let (c0, c1) = (blocks.start * TILE, (blocks.end * TILE).min(n));
        let hi = blocks.clone().map(|bb| mask.block_bounds[2 * bb + 1] as usize).max().unwrap_or(0);
        let group = hq / hkv;
        sc.off2.clear();
        sc.off2.extend((c0..c1).map(|j| (j * hkv + g) * d));
        let Panels { lanes, qk, pv } = Panels::for_vectors(sc.off2.len());
        let np = sc.off2.len().div_ceil(lanes);
        let mp = np * lanes;
        pack(&mut sc.qt, x.k, &sc.off2, d, s.sm_scale, lanes);
        pack(&mut sc.dt, x.v, &sc.off2, d, 1.0, lanes);
        reset(&mut sc.ot, d * mp, 0.0);
        reset(&mut sc.ot2, d * mp, 0.0);
        // Query rows that may see these blocks, in tiles of TILE rows; each block's class for
        // the tile (Empty blocks are masked whole, Partial ones per element).
        let mut class = [TileClass::Empty; DKDV_BLOCKS];
        let mut r0 = c0;
        while r0 < hi {
            let r1 = (r0 + TILE).min(hi);
            for (k, bb) in blocks.clone().enumerate() {
                class[k] = mask.classify(r0, r1, bb, n).0;
            }
            let classes = &class[..blocks.len()];
            if classes.iter().any(|&c| c != TileClass::Empty) {
                vectors(r0, r1, g, s, &mut sc.row, &mut sc.off);
                let bl = sc.row.len();
                reset(&mut sc.s, bl * mp, 0.0);
                reset(&mut sc.dp, bl * mp, 0.0);
                // SAFETY: the products' CPU features are this CPU's (`Panels::for_vectors`);
                // the offsets are rows of `q` and `d_o` (`[N, H_q, D]`, `row < N`); the
                // panels hold `np × d × lanes`; `s` and `dp` are `bl × mp`.
                unsafe {
                    qk(&sc.qt, np, d, x.q.as_ptr(), &sc.off, &mut sc.s);
                    qk(&sc.dt, np, d, x.d_o.as_ptr(), &sc.off, &mut sc.dp);
                }
                // Scores are [query vector × key]: -inf where the row does not see the key
                // (per element in Partial blocks, whole Empty blocks) and on the padding keys
                // (past c1), then P and dS line by line.
                let nk = c1 - c0;
                for (t, &row) in sc.row.iter().enumerate() {
                    let line = &mut sc.s[t * mp..(t + 1) * mp];
                    for (k, &cl) in classes.iter().enumerate() {
                        let (j0, j1) = (k * TILE, ((k + 1) * TILE).min(nk));
                        match cl {
                            TileClass::Empty => line[j0..j1].fill(f32::NEG_INFINITY),
                            TileClass::Partial => {
                                for (jj, y) in line[j0..j1].iter_mut().enumerate() {
                                    if !mask.visible(row, c0 + j0 + jj) {
                                        *y = f32::NEG_INFINITY;
                                    }
                                }
                            }
                            TileClass::Full => {}
                        }
                    }
                    line[nk..].fill(f32::NEG_INFINITY);
                    let h = g * group + t % group;
                    let (lse, dl) = (x.lse[h * n + row], delta[h * n + row]);
                    probs_and_ds_line(line, &mut sc.dp[t * mp..(t + 1) * mp], lse, dl);
                }
                // SAFETY: the products' CPU features are this CPU's (`Panels::for_vectors`);
                // the offsets are rows of `d_o` and `q`; `s`, `dp` are `bl × mp`; `ot`,
                // `ot2` are `d × mp`.
                unsafe {
                    pv(&sc.s, np, d, x.d_o.as_ptr(), &sc.off, &mut sc.ot);
                    pv(&sc.dp, np, d, x.q.as_ptr(), &sc.off, &mut sc.ot2);
                }
            }
            r0 = r1;
        }
        for jj in 0..c1 - c0 {
            let local = (jj * hkv + g) * d;
            for p in 0..d {
                dv_blk[local + p] = sc.ot[p * mp + jj];
                dk_blk[local + p] = sc.ot2[p * mp + jj] * s.sm_scale;
            }
        }
    }
}
