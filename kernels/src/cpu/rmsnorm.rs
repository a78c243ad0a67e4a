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
            let ss: f32 = xr.iter().map(|v| v * v).sum();
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
