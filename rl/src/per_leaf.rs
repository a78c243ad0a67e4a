//! The policy loss of whole sequences, one leaf (trajectory) at a time: the plain training path,
//! what GRPO uses, and the reference the tree-packed form is tested against.
//!
//! Usage per optimizer step: compute the aggregation weights once over the mini-batch
//! ([`LossAggregation::sequence_weights`]), then call [`sequence_loss`] on each sequence (in any
//! micro-batch order) and [`LossStats::merge`] the statistics. [`per_leaf_loss`] does all of it
//! for a mini-batch held in memory.

use serde::{Deserialize, Serialize};

use super::aggregation::LossAggregation;
use super::error::{RlError, check_finite, check_len};
use super::loss::{ClipConfig, ClipRegion, KlPenalty, clipped_token_loss, entropy_bonus, kl_k3};

/// Everything that defines the loss of a token.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyLossConfig {
    /// Clip parameters.
    pub clip: ClipConfig,
    /// Aggregation mode.
    pub aggregation: LossAggregation,
    /// Optional k3 KL penalty to a reference policy (off by default; needs `logp_ref`).
    pub kl: Option<KlPenalty>,
    /// Entropy bonus coefficient (0 = off; otherwise needs `entropy`).
    pub entropy_coef: f64,
}

impl PolicyLossConfig {
    /// Checks the clip parameters and the coefficients.
    pub fn validate(&self) -> Result<(), RlError> {
        self.clip.validate()?;
        if let Some(kl) = self.kl
            && !(kl.coef.is_finite() && kl.coef >= 0.0)
        {
            return Err(RlError::InvalidConfig(format!("kl coef = {} must be ≥ 0", kl.coef)));
        }
        if !self.entropy_coef.is_finite() {
            return Err(RlError::InvalidConfig(format!(
                "entropy_coef = {} must be finite",
                self.entropy_coef
            )));
        }
        Ok(())
    }
}

/// Per-token inputs of one sequence (response tokens only).
#[derive(Debug, Clone, Copy)]
pub struct SequenceTokens<'a> {
    /// `logπ_θ` of the sampled tokens under the current policy.
    pub logp: &'a [f64],
    /// `logπ_old`, recomputed by the trainer's own forward.
    pub logp_old: &'a [f64],
    /// Advantage of each token (a leaf-level advantage is repeated on every token).
    pub advantages: &'a [f64],
    /// `logπ_ref` (required when the KL penalty is on).
    pub logp_ref: Option<&'a [f64]>,
    /// Policy entropy at each token (required when the entropy bonus is on).
    pub entropy: Option<&'a [f64]>,
}

/// Additive statistics of a (part of a) mini-batch: merge them across micro-batches.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LossStats {
    /// `Σ w·L` of the clipped surrogate.
    pub pg_loss: f64,
    /// `Σ β·w·k3`.
    pub kl_loss: f64,
    /// `Σ −coef·w·H`.
    pub entropy_loss: f64,
    /// Response tokens counted (a tree-packed token counts once per leaf through it).
    pub num_tokens: usize,
    /// Tokens in [`ClipRegion::ClippedLow`].
    pub clipped_low: usize,
    /// Tokens in [`ClipRegion::ClippedHigh`].
    pub clipped_high: usize,
    /// Tokens in [`ClipRegion::DualClipped`].
    pub dual_clipped: usize,
    /// `Σ (logπ_old − logπ)` (for the ppo_kl metric).
    pub old_minus_new_logp: f64,
}

impl LossStats {
    /// The loss value: surrogate + KL + entropy terms.
    pub fn total(&self) -> f64 {
        self.pg_loss + self.kl_loss + self.entropy_loss
    }

    /// Adds another part's statistics.
    pub fn merge(&mut self, other: &LossStats) {
        self.pg_loss += other.pg_loss;
        self.kl_loss += other.kl_loss;
        self.entropy_loss += other.entropy_loss;
        self.num_tokens += other.num_tokens;
        self.clipped_low += other.clipped_low;
        self.clipped_high += other.clipped_high;
        self.dual_clipped += other.dual_clipped;
        self.old_minus_new_logp += other.old_minus_new_logp;
    }

    /// Fraction of tokens clipped below, above and dual-clipped (0 without tokens).
    pub fn clip_fractions(&self) -> (f64, f64, f64) {
        let n = self.num_tokens.max(1) as f64;
        (self.clipped_low as f64 / n, self.clipped_high as f64 / n, self.dual_clipped as f64 / n)
    }

    /// `ppo_kl = mean(logπ_old − logπ)` over tokens (0 without tokens).
    pub fn ppo_kl(&self) -> f64 {
        self.old_minus_new_logp / self.num_tokens.max(1) as f64
    }

    pub(crate) fn count(&mut self, region: ClipRegion, times: usize) {
        match region {
            ClipRegion::Unclipped => {}
            ClipRegion::ClippedLow => self.clipped_low += times,
            ClipRegion::ClippedHigh => self.clipped_high += times,
            ClipRegion::DualClipped => self.dual_clipped += times,
        }
    }
}

/// Loss of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceLoss {
    /// `dL/dlogπ` per token (surrogate + KL); the model backward uses `dloss_t = −dL/dlogπ_t`.
    pub dloss_dlogp: Vec<f64>,
    /// The sequence's statistics.
    pub stats: LossStats,
}

/// The loss of one sequence whose tokens all carry aggregation weight `weight`.
pub fn sequence_loss(
    seq: &SequenceTokens<'_>,
    weight: f64,
    config: &PolicyLossConfig,
) -> Result<SequenceLoss, RlError> {
    config.validate()?;
    let n = seq.logp.len();
    check_len("logp_old", n, seq.logp_old.len())?;
    check_len("advantages", n, seq.advantages.len())?;
    check_finite("logp", seq.logp)?;
    check_finite("logp_old", seq.logp_old)?;
    check_finite("advantages", seq.advantages)?;
    check_finite("sequence weight", &[weight])?;
    let logp_ref = optional_input("logp_ref", seq.logp_ref, config.kl.is_some(), n)?;
    let entropy = optional_input("entropy", seq.entropy, config.entropy_coef != 0.0, n)?;

    let mut stats = LossStats { num_tokens: n, ..LossStats::default() };
    let mut dloss_dlogp = Vec::with_capacity(n);
    for t in 0..n {
        let tok = clipped_token_loss(
            seq.logp[t],
            seq.logp_old[t],
            seq.advantages[t],
            weight,
            &config.clip,
        );
        stats.pg_loss += tok.loss;
        stats.count(tok.region, 1);
        stats.old_minus_new_logp += seq.logp_old[t] - seq.logp[t];
        let mut grad = tok.dloss_dlogp;
        if let (Some(kl), Some(lr)) = (config.kl, logp_ref) {
            let k3 = kl_k3(seq.logp[t], lr[t]);
            stats.kl_loss += kl.coef * weight * k3.value;
            grad += kl.coef * weight * k3.dvalue_dlogp;
        }
        if let Some(h) = entropy {
            stats.entropy_loss += entropy_bonus(h[t], weight, config.entropy_coef);
        }
        dloss_dlogp.push(grad);
    }
    Ok(SequenceLoss { dloss_dlogp, stats })
}

/// Loss of a whole mini-batch in memory: weights from `config.aggregation`, then
/// [`sequence_loss`] per sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLoss {
    /// `dL/dlogπ` per sequence and token.
    pub dloss_dlogp: Vec<Vec<f64>>,
    /// Merged statistics; `stats.total()` is the mini-batch loss.
    pub stats: LossStats,
}

/// The per-leaf loss of a mini-batch.
pub fn per_leaf_loss(
    seqs: &[SequenceTokens<'_>],
    config: &PolicyLossConfig,
) -> Result<BatchLoss, RlError> {
    let lens: Vec<usize> = seqs.iter().map(|s| s.logp.len()).collect();
    let weights = config.aggregation.sequence_weights(&lens)?;
    let mut stats = LossStats::default();
    let mut dloss_dlogp = Vec::with_capacity(seqs.len());
    for (seq, &w) in seqs.iter().zip(&weights) {
        let s = sequence_loss(seq, w, config)?;
        stats.merge(&s.stats);
        dloss_dlogp.push(s.dloss_dlogp);
    }
    Ok(BatchLoss { dloss_dlogp, stats })
}

/// Checks an optional per-token input that a config term needs.
pub(crate) fn optional_input<'a>(
    what: &'static str,
    input: Option<&'a [f64]>,
    needed: bool,
    n: usize,
) -> Result<Option<&'a [f64]>, RlError> {
    match (needed, input) {
        (false, _) => Ok(None),
        (true, None) => Err(RlError::InvalidConfig(format!(
            "the loss config needs `{what}`, but none was given"
        ))),
        (true, Some(x)) => {
            check_len(what, n, x.len())?;
            check_finite(what, x)?;
            Ok(Some(x))
        }
    }
}
