//! Tree-masked packed attention, backward: the CPU reference (FlashAttention-2's backward).
//!
//! With `P_ij = exp(scale·q_i·k_j − lse_i)` on visible pairs (0 elsewhere), `D_i = do_i·o_i`,
//! `dP_ij = do_i·v_j` and `dS_ij = P_ij (dP_ij − D_i)`:
//! `dq_i = scale Σ_j dS_ij k_j`, `dk_j = scale Σ_{h∈group} Σ_i dS_ij q_i`,
//! `dv_j = Σ_{h∈group} Σ_i P_ij do_i` (GQA: the query heads of a group sum into their KV head).
//!
//! Layouts: `q, o, do, dq [N, H_q, D]`; `k, v, dk, dv [N, H_kv, D]`; `lse, delta [H_q, N]`.
//! Three race-free passes, each one rayon task per tile of [`TILE`] rows (contiguous outputs):
//! `delta` per row; dQ per query tile, iterating KV blocks like the forward pass; dK/dV per KV
//! block, iterating the query rows `[c0, max kv_row_end)` in tiles — the reverse iteration the
//! column mask makes contiguous. `P` and `dP` are recomputed in both gradient passes (no atomics,
//! deterministic results).

use rayon::prelude::*;

use super::packed_attention_fwd::{Mask, Shape, TILE, axpy, dot};
use crate::ops::TileClass;

/// Inputs of the backward pass.
#[derive(Clone, Copy, Debug)]
pub struct BwdInputs<'a> {
    /// `q [N, H_q, D]`.
    pub q: &'a [f32],
    /// `k [N, H_kv, D]`.
    pub k: &'a [f32],
    /// `v [N, H_kv, D]`.
    pub v: &'a [f32],
    /// `o [N, H_q, D]` (forward output).
    pub o: &'a [f32],
    /// `do [N, H_q, D]` (gradient of the loss with respect to `o`).
    pub d_o: &'a [f32],
    /// `lse [H_q, N]` (forward).
    pub lse: &'a [f32],
}

/// `delta[h, i] = do_i·o_i` for every head and row.
pub fn delta(o: &[f32], d_o: &[f32], delta: &mut [f32], s: Shape) {
    let (n, hq, d) = (s.num_tokens, s.num_qo_heads, s.head_dim);
    super::regions::enter();
    delta[..hq * n].par_chunks_mut(n).enumerate().for_each(|(h, row)| {
        for (i, x) in row.iter_mut().enumerate() {
            let at = (i * hq + h) * d;
            *x = dot(&o[at..at + d], &d_o[at..at + d]);
        }
    });
}

/// Backward pass; see the module docs. Writes `delta`, `dq`, `dk`, `dv` entirely.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: BwdInputs<'_>,
    mask: Mask<'_>,
    delta_out: &mut [f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    s: Shape,
) {
    let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
    delta(x.o, x.d_o, delta_out, s);
    let delta = &*delta_out;
    super::regions::enter();
    dq[..n * hq * d]
        .par_chunks_mut(TILE * hq * d)
        .enumerate()
        .for_each(|(t, dq_tile)| dq_tile_pass(x, mask, delta, dq_tile, t * TILE, s));
    super::regions::enter();
    dk[..n * hkv * d]
        .par_chunks_mut(TILE * hkv * d)
        .zip(dv[..n * hkv * d].par_chunks_mut(TILE * hkv * d))
        .enumerate()
        .for_each(|(b, (dk_blk, dv_blk))| dkdv_block_pass(x, mask, delta, dk_blk, dv_blk, b, s));
}

/// `dq` of rows `[r0, r0 + rows)`, every head.
fn dq_tile_pass(
    x: BwdInputs<'_>,
    mask: Mask<'_>,
    delta: &[f32],
    dq_tile: &mut [f32],
    r0: usize,
    s: Shape,
) {
    let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
    let rows = dq_tile.len() / (hq * d);
    let r1 = r0 + rows;
    dq_tile.fill(0.0);
    for h in 0..hq {
        let g = s.kv_head(h);
        for b in 0..r1.div_ceil(TILE) {
            let (class, c0, c1) = mask.classify(r0, r1, b, n);
            if class == TileClass::Empty {
                continue;
            }
            for (ri, i) in (r0..r1).enumerate() {
                let at = (i * hq + h) * d;
                let (qi, doi) = (&x.q[at..at + d], &x.d_o[at..at + d]);
                let (lse, dl) = (x.lse[h * n + i], delta[h * n + i]);
                let acc = &mut dq_tile[(ri * hq + h) * d..][..d];
                for j in c0..c1 {
                    if class == TileClass::Full || mask.visible(i, j) {
                        let kv = (j * hkv + g) * d;
                        let p = (s.sm_scale * dot(qi, &x.k[kv..kv + d]) - lse).exp();
                        let ds = p * (dot(doi, &x.v[kv..kv + d]) - dl);
                        axpy(acc, ds, &x.k[kv..kv + d]);
                    }
                }
            }
        }
    }
    dq_tile.iter_mut().for_each(|v| *v *= s.sm_scale);
}

/// `dk`, `dv` of the columns of block `b`, every KV head.
fn dkdv_block_pass(
    x: BwdInputs<'_>,
    mask: Mask<'_>,
    delta: &[f32],
    dk_blk: &mut [f32],
    dv_blk: &mut [f32],
    b: usize,
    s: Shape,
) {
    let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
    let (c0, c1) = (b * TILE, ((b + 1) * TILE).min(n));
    let hi = mask.block_bounds[2 * b + 1] as usize;
    dk_blk.fill(0.0);
    dv_blk.fill(0.0);
    for h in 0..hq {
        let g = s.kv_head(h);
        // Rows that may see this block: [c0, hi), in tiles of TILE rows.
        for r0 in (c0..hi).step_by(TILE) {
            let r1 = (r0 + TILE).min(hi);
            let (class, _, _) = mask.classify(r0, r1, b, n);
            if class == TileClass::Empty {
                continue;
            }
            for i in r0..r1 {
                let at = (i * hq + h) * d;
                let (qi, doi) = (&x.q[at..at + d], &x.d_o[at..at + d]);
                let (lse, dl) = (x.lse[h * n + i], delta[h * n + i]);
                for j in c0..c1 {
                    if class == TileClass::Full || mask.visible(i, j) {
                        let kv = (j * hkv + g) * d;
                        let p = (s.sm_scale * dot(qi, &x.k[kv..kv + d]) - lse).exp();
                        let ds = p * (dot(doi, &x.v[kv..kv + d]) - dl);
                        let local = ((j - c0) * hkv + g) * d;
                        axpy(&mut dv_blk[local..local + d], p, doi);
                        axpy(&mut dk_blk[local..local + d], ds, qi);
                    }
                }
            }
        }
    }
    dk_blk.iter_mut().for_each(|v| *v *= s.sm_scale);
}
