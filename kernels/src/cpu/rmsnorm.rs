//! RMSNorm forward: `y = x * rsqrt(mean(x²) + eps) * w` per row, statistics in f32 (HF numerics).

use rayon::prelude::*;

/// `x`, `y`: `[rows, dim]`; `w`: `[dim]`; `rstd` (optional): `[rows]`, receives the
/// `1/sqrt(mean(x²)+eps)` the backward pass needs.
pub fn rmsnorm(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    rstd: Option<&mut [f32]>,
    dim: usize,
    eps: f32,
) {
    let rows = y.len() / dim.max(1);
    let mut r = vec![0f32; rows];
    let min = super::regions::min_len(y.len());
    y.par_chunks_mut(dim).zip(x.par_chunks(dim)).zip(r.par_iter_mut()).with_min_len(min).for_each(
        |((yr, xr), rr)| {
            let ss = sum_squares_f32(xr);
            let inv = 1.0 / (ss / dim as f32 + eps).sqrt();
            for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(w) {
                *yv = xv * inv * wv;
            }
            *rr = inv;
        },
    );
    if let Some(out) = rstd {
        out[..rows].copy_from_slice(&r);
    }
}

/// `Σ x[i]²` in f32, in 16 interleaved partial sums (lane `l` takes `i ≡ l mod 16`) added
/// pairwise at the end, then the remainder: a loop the compiler keeps in vector registers. One
/// running sum (strict order) is a chain of dependent adds, which made the norms of a batch-64
/// decode step at C = 128 cost more than its attention per element (`docs/engine.md`). The
/// order is fixed, so results do not depend on the CPU or thread count.
pub(crate) fn sum_squares_f32(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in lanes.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            lanes[i] += lanes[i + w];
        }
    }
    chunks.remainder().iter().fold(lanes[0], |s, &v| s + v * v)
}
