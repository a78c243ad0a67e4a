//! Tree-masked packed attention, forward: the CPU reference (and the trainer of tiny models).
//!
//! For query head `h` (KV head `g = h / (num_qo_heads / num_kv_heads)`) and row `i`:
//! `s_ij = scale·q_i·k_j` over the visible keys `j` (`j <= i < kv_row_end[j]`),
//! `o_i = Σ_j softmax(s_i)_j v_j`, `lse_i = ln Σ_j exp(s_ij)` (natural log).
//!
//! Layouts: `q, o [N, H_q, D]`, `k, v [N, H_kv, D]`, `lse [H_q, N]`, `kv_row_end [N]`,
//! `block_bounds [ceil(N/16), 2]` (see `ops::TreeMask`). One rayon task per tile of
//! [`TILE`] query rows (all heads, so its `o` rows are one contiguous chunk); inside, KV blocks
//! of [`TILE`] columns are classified from their bounds — empty blocks are skipped, full blocks
//! are not masked per element — and each row keeps an online softmax in f32.
//!
//! Numerics: f32 throughout with the usual running-max rescaling; every valid row sees its own
//! column, so the normalizer is `>= 1` after the first visible block (no division by zero).

use rayon::prelude::*;

use crate::ops::TileClass;

/// Query rows per task and key columns per block (equal to `TreeMask::BLOCK`).
pub const TILE: usize = 16;

/// Problem shape shared by the forward and backward references.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Packed tokens `N`.
    pub num_tokens: usize,
    /// Query heads `H_q`.
    pub num_qo_heads: usize,
    /// Key/value heads `H_kv` (divides `H_q`).
    pub num_kv_heads: usize,
    /// Values per head `D`.
    pub head_dim: usize,
    /// Softmax scale applied to `q·k`.
    pub sm_scale: f32,
}

impl Shape {
    /// KV head of query head `h`.
    pub fn kv_head(&self, h: usize) -> usize {
        h / (self.num_qo_heads / self.num_kv_heads)
    }
}

/// The validated mask arrays.
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a> {
    /// `kv_row_end [N]`.
    pub kv_row_end: &'a [i32],
    /// `block_bounds [ceil(N/16), 2]`.
    pub block_bounds: &'a [i32],
}

impl Mask<'_> {
    /// Class of rows `[r0, r1)` against block `b` (columns clipped to `n`), with its columns.
    pub fn classify(&self, r0: usize, r1: usize, b: usize, n: usize) -> (TileClass, usize, usize) {
        let (c0, c1) = (b * TILE, ((b + 1) * TILE).min(n));
        let (lo, hi) = (self.block_bounds[2 * b] as usize, self.block_bounds[2 * b + 1] as usize);
        (TileClass::of(r0, r1, c0, c1, lo, hi), c0, c1)
    }

    /// Whether row `i` sees column `j`.
    #[inline]
    pub fn visible(&self, i: usize, j: usize) -> bool {
        j <= i && i < self.kv_row_end[j] as usize
    }
}

/// `Σ a·b` with eight independent accumulators (vectorizes without fast-math).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for t in 0..8 {
            acc[t] += x[t] * y[t];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y += alpha·x`.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += alpha * v;
    }
}

/// Forward pass; see the module docs. `o` and `lse` are fully written.
pub fn forward(
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
    super::regions::enter();
    let tile_lse: Vec<Vec<f32>> = o[..n * row_len]
        .par_chunks_mut(TILE * row_len)
        .enumerate()
        .map(|(t, o_tile)| forward_tile(q, k, v, mask, o_tile, t * TILE, s))
        .collect();
    for (t, l) in tile_lse.iter().enumerate() {
        let r0 = t * TILE;
        let rows = l.len() / hq;
        for h in 0..hq {
            lse[h * n + r0..h * n + r0 + rows].copy_from_slice(&l[h * rows..(h + 1) * rows]);
        }
    }
}

/// Rows `[r0, r0 + rows)` for every head; returns their `lse` as `[H_q, rows]`.
fn forward_tile(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Mask<'_>,
    o_tile: &mut [f32],
    r0: usize,
    s: Shape,
) -> Vec<f32> {
    let (n, hq, hkv, d) = (s.num_tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim);
    let rows = o_tile.len() / (hq * d);
    let r1 = r0 + rows;
    let mut lse = vec![0f32; hq * rows];
    let mut acc = vec![0f32; rows * d];
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut l = vec![0f32; rows];
    let mut sc = [0f32; TILE];
    for h in 0..hq {
        let g = s.kv_head(h);
        acc.fill(0.0);
        m.fill(f32::NEG_INFINITY);
        l.fill(0.0);
        for b in 0..r1.div_ceil(TILE) {
            let (class, c0, c1) = mask.classify(r0, r1, b, n);
            if class == TileClass::Empty {
                continue;
            }
            for (ri, i) in (r0..r1).enumerate() {
                let qi = &q[(i * hq + h) * d..][..d];
                let mut mx = f32::NEG_INFINITY;
                for (t, j) in (c0..c1).enumerate() {
                    sc[t] = if class == TileClass::Full || mask.visible(i, j) {
                        s.sm_scale * dot(qi, &k[(j * hkv + g) * d..][..d])
                    } else {
                        f32::NEG_INFINITY
                    };
                    mx = mx.max(sc[t]);
                }
                if mx == f32::NEG_INFINITY {
                    continue;
                }
                let m_new = m[ri].max(mx);
                let corr = (m[ri] - m_new).exp();
                let a = &mut acc[ri * d..(ri + 1) * d];
                if corr != 1.0 {
                    l[ri] *= corr;
                    a.iter_mut().for_each(|x| *x *= corr);
                }
                for (t, j) in (c0..c1).enumerate() {
                    if sc[t] != f32::NEG_INFINITY {
                        let p = (sc[t] - m_new).exp();
                        l[ri] += p;
                        axpy(a, p, &v[(j * hkv + g) * d..][..d]);
                    }
                }
                m[ri] = m_new;
            }
        }
        for ri in 0..rows {
            let inv = 1.0 / l[ri];
            let out = &mut o_tile[(ri * hq + h) * d..][..d];
            for (x, &a) in out.iter_mut().zip(&acc[ri * d..(ri + 1) * d]) {
                *x = a * inv;
            }
            lse[h * rows + ri] = m[ri] + l[ri].ln();
        }
    }
    lse
}
