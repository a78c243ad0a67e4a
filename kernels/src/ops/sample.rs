//! The logits → token pipeline of one decode step, batched over rows (one row per leaf).

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

use super::categorical::draw;
use super::gather_logprob::gather;
use super::logit_mask::{top_k_mask, top_p_mask};
use super::softmax::softmax;

const OP: &str = "sample";

/// Logit processing of [`sample`] (HF `generate` / vLLM semantics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleParams {
    /// Softmax temperature, `>= 0` and finite; the logits are multiplied by `1/temperature`.
    /// `0` means greedy: the argmax (lowest index on ties), log-prob 0 and entropy 0 unless
    /// logits tie exactly for the max (then `−ln(#ties)` and `ln(#ties)`: the `T → 0` limit of
    /// the softmax is uniform over the tied maxima).
    pub temperature: f32,
    /// Top-k; `0` (or `>= vocab`) means off.
    pub top_k: usize,
    /// Top-p; `>= 1` means off.
    pub top_p: f32,
}

impl SampleParams {
    /// Plain sampling at `temperature`: no top-k, no top-p.
    pub fn temperature(temperature: f32) -> Self {
        SampleParams { temperature, top_k: 0, top_p: 1.0 }
    }

    /// Greedy decoding (`temperature = 0`).
    pub fn greedy() -> Self {
        SampleParams::temperature(0.0)
    }

    /// The logit multiplier: `1/temperature`, or 1 for greedy.
    pub fn scale(&self) -> f32 {
        if self.temperature == 0.0 { 1.0 } else { 1.0 / self.temperature }
    }

    fn validate(&self) -> Result<()> {
        crate::ensure!(
            self.temperature.is_finite() && self.temperature >= 0.0,
            OP,
            "temperature = {} must be finite and >= 0 (0 is greedy)",
            self.temperature
        );
        crate::ensure!(
            self.scale().is_finite(),
            OP,
            "temperature = {} is too small: 1/temperature overflows (use 0 for greedy)",
            self.temperature
        );
        crate::ensure!(
            !self.top_p.is_nan() && self.top_p >= 0.0,
            OP,
            "top_p = {} must be >= 0 (>= 1 means off)",
            self.top_p
        );
        Ok(())
    }
}

/// One sampling step for `rows` rows of `vocab` logits:
///
/// 1. scale by `1/temperature` (never materialized: every later step takes the scale);
/// 2. [`top_k_mask`](super::top_k_mask) (in place on `logits`) when `0 < top_k < vocab`;
/// 3. [`top_p_mask`](super::top_p_mask) (in place, on the scaled distribution) when `top_p < 1`;
/// 4. [`softmax`](super::softmax) of the masked, scaled logits into `probs` (the processed
///    distribution, normalized);
/// 5. [`categorical`](super::categorical) with `uniforms[r]` → `tokens[r]`;
/// 6. [`gather_logprob`](super::gather_logprob) → `logprobs[r]`, the log-probability of the
///    token **under the processed distribution** (after temperature, top-k and top-p), and
///    `entropy[r]` of that distribution when asked.
///
/// Greedy (`temperature = 0`): top-k with `k = 1`, scale 1, the draw with `u = 0` (lowest index
/// among tied maxima); `uniforms` is not read but must still hold `rows` values.
/// `logits` is left masked (what the processed distribution was built from); `probs` is
/// `[rows, vocab]` scratch that ends up holding it. A row of only `−∞` gives token `-1` and NaN
/// log-prob/entropy. Everything stays on the device: download `tokens` (and `logprobs`) when
/// the host needs them.
#[allow(clippy::too_many_arguments)]
pub fn sample<'a>(
    dev: &Device,
    logits: impl Into<ViewMut<'a, f32>>,
    probs: impl Into<ViewMut<'a, f32>>,
    uniforms: impl Into<View<'a, f32>>,
    tokens: impl Into<ViewMut<'a, i32>>,
    logprobs: impl Into<ViewMut<'a, f32>>,
    entropy: Option<ViewMut<'a, f32>>,
    rows: usize,
    vocab: usize,
    params: &SampleParams,
) -> Result<()> {
    let (mut logits, mut probs, uniforms) = (logits.into(), probs.into(), uniforms.into());
    let (mut tokens, mut logprobs, mut entropy) = (tokens.into(), logprobs.into(), entropy);
    params.validate()?;
    crate::ensure!(vocab > 0, OP, "vocab must be > 0");
    let n = validate::product(OP, &[rows, vocab])?;
    validate::output(dev, OP, "logits", &logits, n)?;
    validate::output(dev, OP, "probs", &probs, n)?;
    validate::input(dev, OP, "uniforms", &uniforms, rows)?;
    validate::output(dev, OP, "tokens", &tokens, rows)?;
    validate::output(dev, OP, "logprobs", &logprobs, rows)?;
    if let Some(e) = &entropy {
        validate::output(dev, OP, "entropy", e, rows)?;
    }
    let scale = params.scale();
    if let Inner::Cpu = &dev.inner {
        let e = entropy.as_mut().map(|e| &mut e.cpu()[..rows]);
        cpu::sample::sample(
            &mut logits.cpu()[..n],
            &mut probs.cpu()[..n],
            &uniforms.cpu()[..rows],
            &mut tokens.cpu()[..rows],
            &mut logprobs.cpu()[..rows],
            e,
            vocab,
            params,
        );
        return Ok(());
    }
    let greedy = params.temperature == 0.0;
    if greedy {
        top_k_mask(dev, logits.reborrow(), rows, vocab, 1)?;
    } else {
        top_k_mask(dev, logits.reborrow(), rows, vocab, params.top_k)?;
        top_p_mask(dev, logits.reborrow(), rows, vocab, scale, params.top_p)?;
    }
    softmax(dev, logits.as_view(), probs.reborrow(), rows, vocab, scale)?;
    draw(dev, probs.as_view(), (!greedy).then_some(uniforms), tokens.reborrow(), rows, vocab)?;
    let e = entropy.as_mut().map(|e| e.reborrow());
    gather(dev, logits.as_view(), tokens.as_view(), logprobs.reborrow(), e, rows, vocab, scale)
}
