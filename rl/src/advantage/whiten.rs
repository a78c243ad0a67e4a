//! Global token whitening (REINFORCE++ / TreePO): `(x − μ) / sqrt(var + 1e-8)` over every response
//! token of the training batch.
//!
//! A leaf's advantage is broadcast to each of its tokens, so the statistics are token-weighted:
//! with `n_i` tokens carrying value `x_i` and `N = Σ n_i`,
//! `μ = Σ n_i x_i / N` and `var = Σ n_i (x_i − μ)² / (N − 1)` (unbiased, as verl's `masked_whiten`).
//! Whitening runs once over the whole batch that will be trained on (after dynamic sampling,
//! before mini-batching), so every mini-batch sees the same statistics.
//!
//! Edge cases (decided here; verl raises an exception for both):
//! - `N = 0` (no response token at all): [`RlError::Empty`].
//! - `N = 1`: the unbiased variance is undefined; we take `var = 0`, so the one token's value is
//!   `(x − x)/1e-4 = 0`. Leaves with zero tokens still get `(x_i − μ)/1e-4`, a value no token uses.

use crate::error::{RlError, check_finite, check_len};

/// The variance floor under the square root.
pub const WHITEN_EPS: f64 = 1e-8;

/// Whitens per-leaf values with token weights `num_tokens`; returns one value per leaf (the value
/// of each of its tokens).
pub fn whiten_token_weighted(values: &[f64], num_tokens: &[usize]) -> Result<Vec<f64>, RlError> {
    whiten_token_weighted_with(values, num_tokens, true)
}

/// [`whiten_token_weighted`] with verl's `shift_mean` switch: `false` divides by the token-weighted
/// standard deviation (computed around the mean as usual) but does not subtract the mean, so a
/// value of 0 stays 0.
///
/// Why it matters: TreePO's raw advantages sum to zero per query over *leaves*, but the whitening
/// mean is over *tokens*. When correct answers are longer than wrong ones (a chain of thought
/// versus a guess), the token mean is positive and centring gives every token of an all-correct
/// query a negative advantage — the update then pushes down exactly the behaviour that is always
/// right. `shift_mean = false` keeps those queries at 0.
pub fn whiten_token_weighted_with(
    values: &[f64],
    num_tokens: &[usize],
    shift_mean: bool,
) -> Result<Vec<f64>, RlError> {
    check_len("num_tokens (whitening weights)", values.len(), num_tokens.len())?;
    check_finite("value to whiten", values)?;
    let total: usize = num_tokens.iter().sum();
    if total == 0 {
        return Err(RlError::Empty { what: "response tokens of the batch (whitening)" });
    }
    let n = total as f64;
    let mean = values.iter().zip(num_tokens).map(|(&x, &k)| k as f64 * x).sum::<f64>() / n;
    let var = if total == 1 {
        0.0
    } else {
        let ss: f64 =
            values.iter().zip(num_tokens).map(|(&x, &k)| k as f64 * (x - mean).powi(2)).sum();
        ss / (n - 1.0)
    };
    let inv_std = 1.0 / (var + WHITEN_EPS).sqrt();
    let shift = if shift_mean { mean } else { 0.0 };
    Ok(values.iter().map(|&x| (x - shift) * inv_std).collect())
}
