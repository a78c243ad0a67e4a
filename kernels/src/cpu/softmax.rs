//! Row softmax and log-softmax over the last dimension, with a logit scale (1/temperature).
//!
//! Numerics (shared by every backend): the scaled logit `z = scale·x` is rounded to f32 first
//! (as PyTorch's `logits / T`), `m = max z`, then `p = exp(z − m) / Σ exp(z − m)` and
//! `log p = (z − m) − ln Σ exp(z − m)`; each term is an f32 `exp`. The GPU kernels sum in f32
//! with a fixed tree order; this reference sums in f64 (a sequential f32 sum over a 152k
//! vocabulary would drift by ~1e-5 relative) and rounds the total to f32. Masked entries (`x = −∞`) give exactly 0
//! and −∞. A row whose entries are all −∞ has no distribution: every output is NaN (as
//! PyTorch). `+∞`/NaN inputs are unspecified.

use rayon::prelude::*;

/// Max and sum of `exp(z − max)` over the finite scaled logits of a row; `(−∞, 0)` when every
/// entry is −∞.
pub fn max_sum(row: &[f32], scale: f32) -> (f32, f32) {
    let m = row
        .iter()
        .filter(|v| **v != f32::NEG_INFINITY)
        .map(|&v| scale * v)
        .fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return (m, 0.0);
    }
    let s: f64 = row
        .iter()
        .filter(|v| **v != f32::NEG_INFINITY)
        .map(|&v| f64::from((scale * v - m).exp()))
        .sum();
    (m, s as f32)
}

/// `y[r] = softmax(scale · x[r])` for each row of `cols` elements.
pub fn softmax(x: &[f32], y: &mut [f32], cols: usize, scale: f32) {
    let min = super::regions::min_len(4 * y.len());
    y.par_chunks_mut(cols).zip(x.par_chunks(cols)).with_min_len(min).for_each(|(yr, xr)| {
        let (m, s) = max_sum(xr, scale);
        for (yv, &xv) in yr.iter_mut().zip(xr) {
            *yv = if m == f32::NEG_INFINITY {
                f32::NAN
            } else if xv == f32::NEG_INFINITY {
                0.0
            } else {
                (scale * xv - m).exp() / s
            };
        }
    });
}

/// `y[r] = log_softmax(scale · x[r])` for each row of `cols` elements.
pub fn log_softmax(x: &[f32], y: &mut [f32], cols: usize, scale: f32) {
    let min = super::regions::min_len(4 * y.len());
    y.par_chunks_mut(cols).zip(x.par_chunks(cols)).with_min_len(min).for_each(|(yr, xr)| {
        let (m, s) = max_sum(xr, scale);
        let ln_s = s.ln();
        for (yv, &xv) in yr.iter_mut().zip(xr) {
            *yv = if m == f32::NEG_INFINITY {
                f32::NAN
            } else if xv == f32::NEG_INFINITY {
                f32::NEG_INFINITY
            } else {
                (scale * xv - m) - ln_s
            };
        }
    });
}
