//! Logits → tokens on the CPU: temperature, top-k, top-p, a categorical draw that takes its
//! uniform as an argument, the sampled token's log-prob and the entropy, all under the
//! **processed** distribution (the one the token was actually drawn from).
//!
//! Conventions (the same in every backend that claims to match this module):
//! * A masked token has logit `-inf`. `NaN` and `+inf` are errors ([`LogitsError::NonFinite`]).
//! * Order of processing: temperature, then top-k, then top-p (vLLM's order).
//! * `temperature == 0` is greedy: only the largest logit survives (ties: the lowest token id).
//! * `top_k == 0` is off; otherwise every token whose logit is `>=` the k-th largest logit is kept,
//!   so tokens tied with the k-th are all kept (the result never depends on token-id order).
//! * `top_p == 1` is off; otherwise tokens are ranked by logit and the smallest prefix whose
//!   probability mass reaches `top_p` is found; every token whose logit is `>=` the last one of that
//!   prefix is kept (ties kept together again). The top token is always kept.
//! * The draw walks tokens in id order and returns the first unmasked token whose cumulative
//!   weight exceeds `u * total`; rounding can never select a masked token, and if rounding leaves
//!   `u * total` above the final cumulative sum the last unmasked token is returned.
//! * Arithmetic of the softmax, the draw, the log-prob and the entropy is done in `f64`.

use thiserror::Error;

/// Sampling parameters applied to every row.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature, `>= 0`; `0` means greedy.
    pub temperature: f32,
    /// Keep the `top_k` largest logits (ties kept); `0` is off.
    pub top_k: usize,
    /// Nucleus mass in `(0, 1]`; `1` is off.
    pub top_p: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0 }
    }
}

/// Whether to compute the entropy of the processed distribution for each sampled position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntropyMode {
    /// Do not compute entropies (the engine returns `None`).
    #[default]
    Skip,
    /// Compute the entropy (nats) at every sampled position.
    Compute,
}

/// One sampled position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampled {
    /// The drawn token id.
    pub token: u32,
    /// Its log-prob under the processed distribution (nats, `<= 0`).
    pub logprob: f32,
    /// Entropy of the processed distribution (nats) if requested.
    pub entropy: Option<f32>,
}

/// Invalid logits or parameters.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LogitsError {
    /// The row has no entries.
    #[error("empty logits row")]
    Empty,
    /// A logit is NaN or +inf (masked tokens must be -inf).
    #[error("logit at index {index} is {value} (NaN or +inf); mask tokens with -inf instead")]
    NonFinite {
        /// Token index of the offending logit.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// Every logit is -inf: there is nothing to sample.
    #[error("every logit is -inf: nothing to sample")]
    AllMasked,
    /// The uniform is outside `[0, 1)`.
    #[error("uniform {0} is outside [0, 1)")]
    InvalidUniform(f64),
    /// The temperature is negative or not finite.
    #[error("temperature {0} must be finite and >= 0")]
    InvalidTemperature(f32),
    /// `top_p` is outside `(0, 1]`.
    #[error("top_p {0} must be in (0, 1]")]
    InvalidTopP(f32),
    /// A batched call got buffers of inconsistent sizes.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// Checks that no logit is NaN or +inf and that at least one is finite.
pub fn check_logits(logits: &[f32]) -> Result<(), LogitsError> {
    if logits.is_empty() {
        return Err(LogitsError::Empty);
    }
    let mut any = false;
    for (index, &value) in logits.iter().enumerate() {
        if value.is_nan() || value == f32::INFINITY {
            return Err(LogitsError::NonFinite { index, value });
        }
        any |= value.is_finite();
    }
    if any { Ok(()) } else { Err(LogitsError::AllMasked) }
}

/// Index of the largest logit (ties: lowest index); `None` when every entry is -inf or NaN.
#[must_use]
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        if x.is_finite() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// Divides the logits by `temperature` in place (saturating at `±f32::MAX`; `-inf` stays
/// `-inf`). `temperature == 0` keeps only the argmax (greedy); `1` is a no-op.
pub fn apply_temperature(logits: &mut [f32], temperature: f32) -> Result<(), LogitsError> {
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(LogitsError::InvalidTemperature(temperature));
    }
    if temperature == 0.0 {
        let keep = argmax(logits);
        for (i, x) in logits.iter_mut().enumerate() {
            if Some(i) != keep {
                *x = f32::NEG_INFINITY;
            }
        }
        return Ok(());
    }
    if temperature == 1.0 {
        return Ok(());
    }
    let inv = 1.0 / f64::from(temperature);
    for x in logits.iter_mut().filter(|x| x.is_finite()) {
        *x = (f64::from(*x) * inv).clamp(-f64::from(f32::MAX), f64::from(f32::MAX)) as f32;
    }
    Ok(())
}

/// Masks every token whose logit is below the `k`-th largest finite logit (ties with the k-th are
/// kept). `k == 0`, or `k` at least the number of unmasked tokens, is a no-op.
pub fn apply_top_k(logits: &mut [f32], k: usize) {
    if k == 0 {
        return;
    }
    let mut finite: Vec<f32> = logits.iter().copied().filter(|x| x.is_finite()).collect();
    if k >= finite.len() {
        return;
    }
    // Descending order; every entry is finite so total_cmp agrees with <.
    let (_, kth, _) = finite.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *kth;
    for x in logits.iter_mut() {
        if *x < threshold {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// Nucleus filtering: keeps the smallest set of highest-logit tokens whose probability mass
/// reaches `top_p`, plus every token tied with the last one kept. `top_p >= 1` is a no-op.
pub fn apply_top_p(logits: &mut [f32], top_p: f32) -> Result<(), LogitsError> {
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(LogitsError::InvalidTopP(top_p));
    }
    if top_p >= 1.0 {
        return Ok(());
    }
    let Some(max) = logits.iter().copied().filter(|x| x.is_finite()).reduce(f32::max) else {
        return Ok(());
    };
    let mut order: Vec<usize> = (0..logits.len()).filter(|&i| logits[i].is_finite()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let weights: Vec<f64> = order.iter().map(|&i| (f64::from(logits[i] - max)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let target = f64::from(top_p) * total;
    let mut cum = 0.0;
    // If rounding keeps the sum below the target, everything is kept.
    let mut threshold = f32::NEG_INFINITY;
    for (&i, &w) in order.iter().zip(&weights) {
        cum += w;
        if cum >= target {
            threshold = logits[i];
            break;
        }
    }
    for x in logits.iter_mut() {
        if *x < threshold {
            *x = f32::NEG_INFINITY;
        }
    }
    Ok(())
}

/// Applies temperature, top-k and top-p in that order, after validating the row.
pub fn process_logits(logits: &mut [f32], params: &SamplingParams) -> Result<(), LogitsError> {
    check_logits(logits)?;
    apply_temperature(logits, params.temperature)?;
    apply_top_k(logits, params.top_k);
    apply_top_p(logits, params.top_p)
}

/// `(max, ln Σ exp(x − max))` over finite logits, in `f64`.
fn log_partition(logits: &[f32]) -> Result<(f64, f64), LogitsError> {
    let max = logits.iter().copied().filter(|x| x.is_finite()).reduce(f32::max);
    let max = f64::from(max.ok_or(LogitsError::AllMasked)?);
    let z: f64 = logits.iter().filter(|x| x.is_finite()).map(|&x| (f64::from(x) - max).exp()).sum();
    Ok((max, z.ln()))
}

/// Log-prob of `token` under softmax(`logits`); `-inf` for a masked token.
pub fn logprob_of(logits: &[f32], token: usize) -> Result<f32, LogitsError> {
    let x = *logits.get(token).ok_or_else(|| {
        LogitsError::Shape(format!("token {token} out of range for {} logits", logits.len()))
    })?;
    let (max, ln_z) = log_partition(logits)?;
    Ok((f64::from(x) - max - ln_z) as f32)
}

/// Entropy (nats) of softmax(`logits`); masked tokens contribute 0.
pub fn entropy(logits: &[f32]) -> Result<f32, LogitsError> {
    let (max, ln_z) = log_partition(logits)?;
    let mut h = 0.0;
    for &x in logits.iter().filter(|x| x.is_finite()) {
        let lp = f64::from(x) - max - ln_z;
        let p = lp.exp();
        if p > 0.0 {
            h -= p * lp;
        }
    }
    Ok(h.max(0.0) as f32)
}

/// Inverse-CDF draw from softmax(`logits`) with the given uniform `u ∈ [0, 1)`. Never returns a
/// masked (`-inf`) token; see the module docs for the rounding rule.
pub fn sample_categorical(logits: &[f32], u: f64) -> Result<u32, LogitsError> {
    if !(0.0..1.0).contains(&u) {
        return Err(LogitsError::InvalidUniform(u));
    }
    let (max, _) = log_partition(logits)?;
    let weights =
        logits.iter().map(|&x| if x.is_finite() { (f64::from(x) - max).exp() } else { 0.0 });
    let total: f64 = weights.clone().sum();
    let target = u * total;
    let mut cum = 0.0;
    let mut last = None;
    for (i, w) in weights.enumerate() {
        if w > 0.0 {
            cum += w;
            last = Some(i);
            if cum > target {
                return token_id(i);
            }
        }
    }
    // Rounding left the target at or above the final sum: the last token with weight wins.
    last.map_or(Err(LogitsError::AllMasked), token_id)
}

fn token_id(i: usize) -> Result<u32, LogitsError> {
    u32::try_from(i).map_err(|_| LogitsError::Shape(format!("token index {i} exceeds u32")))
}

/// Processes one row in place and draws from it: the returned log-prob and entropy are those of
/// the processed distribution.
pub fn sample_row(
    logits: &mut [f32],
    params: &SamplingParams,
    u: f64,
    mode: EntropyMode,
) -> Result<Sampled, LogitsError> {
    process_logits(logits, params)?;
    let token = sample_categorical(logits, u)?;
    let logprob = logprob_of(logits, token as usize)?;
    let entropy = match mode {
        EntropyMode::Skip => None,
        EntropyMode::Compute => Some(entropy(logits)?),
    };
    Ok(Sampled { token, logprob, entropy })
}

/// Batched [`sample_row`]: `logits` is `[rows, vocab]` row-major, one uniform per row. Rows are
/// processed in place.
pub fn sample_rows(
    logits: &mut [f32],
    vocab: usize,
    params: &SamplingParams,
    uniforms: &[f64],
    mode: EntropyMode,
) -> Result<Vec<Sampled>, LogitsError> {
    if vocab == 0 || logits.len() != vocab * uniforms.len() {
        return Err(LogitsError::Shape(format!(
            "{} logits for {} rows of vocab {vocab}",
            logits.len(),
            uniforms.len()
        )));
    }
    logits
        .chunks_exact_mut(vocab)
        .zip(uniforms)
        .map(|(row, &u)| sample_row(row, params, u, mode))
        .collect()
}
