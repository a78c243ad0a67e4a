//! Global token whitening (REINFORCE++ / TreePO): `(x − μ) / sqrt(var + 1e-8)` over every response
//! token of the training batch.
//!
//! A leaf's advantage is broadcast to each of its tokens, so the statistics are token-weighted:
//! with `n_i` tokens carrying value `x_i` and `N = Σ n_i`,
//! `μ = Σ n_i x_i / N` and `var = Σ n_i (x_i − μ)² / (N − 1)` (unbiased, as verl's `masked_whiten`).
//! Whitening runs once over the whole batch that will be trained on (after dynamic sampling,
//! before mini-batching), so every mini-batch sees the same statistics.
//!
//! Any finite values are accepted: values above 2^256 in magnitude are whitened after an exact
//! power-of-two rescaling (the token-weighted squares would overflow otherwise), so the output is
//! always finite.
//!
//! Edge cases (decided here; verl raises an exception for both):
//! - `N = 0` (no response token at all): [`RlError::Empty`].
//! - `N = 1`: the unbiased variance is undefined; we take `var = 0`, so the one token's value is
//!   `(x − x)/1e-4 = 0`.
//! - A leaf with zero tokens gets 0: no token carries its value, and `(x_i − μ)/σ` is unbounded
//!   (inf for huge values) when the other leaves' σ is 0.

use crate::error::{RlError, check_finite, check_len};

/// The variance floor under the square root.
pub const WHITEN_EPS: f64 = 1e-8;

/// Whitens per-leaf values with token weights `num_tokens`; returns one value per leaf (the value
/// of each of its tokens).
pub fn whiten_token_weighted(values: &[f64], num_tokens: &[usize]) -> Result<Vec<f64>, RlError> {
    whiten_token_weighted_with(values, num_tokens, true)
}

/// [`whiten_token_weighted`] (`shift_mean = true`), or scale-only whitening (`shift_mean =
/// false`): `x / sqrt(var + 1e-8)`, dividing by the same token-weighted σ (computed around the
/// mean as usual) without subtracting the mean, so a value of 0 stays 0.
///
/// Not verl's `masked_whiten(shift_mean=False)`, despite the switch's name: verl computes
/// `(x − μ)·rsqrt(var + 1e-8) + μ` (whitens, then adds the unscaled mean back), which equals ours
/// only when `μ = 0`; verl's maps a raw 0 to `μ − μ/σ`, ours to 0. Both are identical for
/// `shift_mean = true`.
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
    // Summed in u128: no number of usize counts can overflow it.
    let total: u128 = num_tokens.iter().map(|&k| k as u128).sum();
    if total == 0 {
        return Err(RlError::Empty { what: "response tokens of the batch (whitening)" });
    }
    // Huge finite values: k·(x − μ)² would overflow f64 (var = inf, every output 0). Whiten
    // x·2^−e instead (exact: a power of two), with the floor scaled to match; below
    // `SCALE_ABOVE` nothing is scaled, so ordinary inputs give bit-identical results.
    let max_abs = values.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let (scale, floor) = if max_abs > SCALE_ABOVE {
        // 2^−k with k = ceil(log2 max) − 64 ∈ [193, 961]: a normal f64, so x·2^−k is exact
        // and the largest scaled value is at most 2^64.
        let k = (max_abs.log2().ceil() as i64 - 64).clamp(1, 1022);
        let s = f64::from_bits(((1023 - k) as u64) << 52);
        (s, WHITEN_EPS * s * s)
    } else {
        (1.0, WHITEN_EPS)
    };
    let n = total as f64;
    let mean =
        values.iter().zip(num_tokens).map(|(&x, &k)| k as f64 * (x * scale)).sum::<f64>() / n;
    let var = if total == 1 {
        0.0
    } else {
        let ss: f64 = values
            .iter()
            .zip(num_tokens)
            .map(|(&x, &k)| k as f64 * (x * scale - mean).powi(2))
            .sum();
        ss / (n - 1.0)
    };
    // The rescaled floor can underflow to 0: with var = 0 too (one token, or every token's
    // value equal), the token-carrying leaves are at the mean and whiten to 0, not 0·inf.
    let inv_std = if var + floor > 0.0 { 1.0 / (var + floor).sqrt() } else { 0.0 };
    let shift = if shift_mean { mean } else { 0.0 };
    // A leaf without tokens contributes nothing and no token carries its value: 0 (its
    // `(x − μ)/σ` is unbounded when the tokens' σ is 0).
    Ok(values
        .iter()
        .zip(num_tokens)
        .map(|(&x, &k)| if k == 0 { 0.0 } else { (x * scale - shift) * inv_std })
        .collect())
}

/// Largest `|x|` whitened without rescaling (2^256 ≈ 1.2e77): token-weighted squared deviations
/// of values up to here are at most `2^64 · (2^257)² = 2^578`, and their sums stay far below
/// `f64::MAX` ≈ 2^1024. Larger values are scaled by an exact power of two first.
const SCALE_ABOVE: f64 = 1.157_920_892_373_162e77;
