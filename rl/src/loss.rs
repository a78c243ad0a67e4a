//! The per-token policy loss and its derivative with respect to `logπ` (docs/treepo.md §3.1).
//!
//! ```text
//! ρ      = exp(clamp(logπ − logπ_old, −20, 20))
//! L_clip = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))
//! L      = min(L_clip, −A·c)   if A < 0 and dual clip is on,   else L_clip
//! ```
//!
//! Case analysis (`lo = 1−ε_low`, `hi = 1+ε_high`, `c > 1 ≥ lo`):
//!
//! | advantage | ratio          | region         | `L`       | `dL/dlogπ` |
//! |-----------|----------------|----------------|-----------|------------|
//! | `A > 0`   | `ρ ≤ hi`       | unclipped      | `−A·ρ`    | `−A·ρ'`    |
//! | `A > 0`   | `ρ > hi`       | clipped high   | `−A·hi`   | `0`        |
//! | `A < 0`   | `ρ < lo`       | clipped low    | `−A·lo`   | `0`        |
//! | `A < 0`   | `lo ≤ ρ ≤ c`   | unclipped      | `−A·ρ`    | `−A·ρ'`    |
//! | `A < 0`   | `ρ > c`        | dual clipped   | `−A·c`    | `0`        |
//! | `A = 0`   | any            | unclipped      | `0`       | `0`        |
//!
//! so `L = −A·f⁺(ρ)` for `A > 0` with `f⁺ = min(ρ, hi)`, and `L = −A·f⁻(ρ)` for `A < 0` with
//! `f⁻ = clamp(ρ, lo, c)` (`c = ∞` without dual clip): the regime depends on the sign of `A`
//! and on `ρ` only, never on `|A|` — the fact the tree-packed form rests on ([`super::packed`]).
//! `ρ' = dρ/dlogπ` is `ρ`, or `0` when the log-ratio lies outside `[−20, 20]` (the clamp is
//! flat there); this is the exact derivative of the computed loss. At a kink (`ρ = hi`, `lo`
//! or `c`) the derivative from the unclipped side is used. Per token the caller's aggregation
//! weight `w` multiplies both the loss and the derivative.

use serde::{Deserialize, Serialize};

use super::error::RlError;

/// Bound of the log-ratio before `exp` (verl's value).
pub const LOG_RATIO_CLAMP: f64 = 20.0;

/// Clip parameters of the surrogate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// `ε_low`: the ratio is clipped below at `1 − ε_low` (for `A < 0`).
    pub clip_ratio_low: f64,
    /// `ε_high`: the ratio is clipped above at `1 + ε_high` (for `A > 0`).
    pub clip_ratio_high: f64,
    /// Dual-clip constant `c > 1` for `A < 0`; `None` turns dual clip off.
    pub clip_ratio_c: Option<f64>,
}

impl Default for ClipConfig {
    /// DAPO's clip-higher 0.2 / 0.28 and TreePO's dual clip `c = 10`.
    fn default() -> Self {
        Self { clip_ratio_low: 0.2, clip_ratio_high: 0.28, clip_ratio_c: Some(10.0) }
    }
}

impl ClipConfig {
    /// Checks `0 ≤ ε_low < 1`, `ε_high ≥ 0` and `c > 1`, all finite.
    pub fn validate(&self) -> Result<(), RlError> {
        let (lo, hi) = (self.clip_ratio_low, self.clip_ratio_high);
        if !(lo.is_finite() && (0.0..1.0).contains(&lo)) {
            return Err(RlError::InvalidConfig(format!("clip_ratio_low = {lo} must be in [0, 1)")));
        }
        if !(hi.is_finite() && hi >= 0.0) {
            return Err(RlError::InvalidConfig(format!("clip_ratio_high = {hi} must be ≥ 0")));
        }
        if let Some(c) = self.clip_ratio_c
            && !(c.is_finite() && c > 1.0)
        {
            return Err(RlError::InvalidConfig(format!("clip_ratio_c = {c} must be > 1")));
        }
        Ok(())
    }

    fn lower(&self) -> f64 {
        1.0 - self.clip_ratio_low
    }

    fn upper(&self) -> f64 {
        1.0 + self.clip_ratio_high
    }
}

/// Which branch of the loss is active for a token (for the clip-fraction metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipRegion {
    /// The gradient flows (`−A·ρ` branch), or `A = 0`.
    Unclipped,
    /// `A < 0` and `ρ < 1 − ε_low`.
    ClippedLow,
    /// `A > 0` and `ρ > 1 + ε_high`.
    ClippedHigh,
    /// `A < 0` and `ρ > c`.
    DualClipped,
}

/// The importance ratio of a token and its derivative with respect to `logπ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// `ρ = exp(clamp(logπ − logπ_old, −20, 20))`.
    pub value: f64,
    /// `dρ/dlogπ`: `ρ` inside the clamp, `0` outside.
    pub derivative: f64,
}

/// `ρ` and `dρ/dlogπ` of a token.
pub fn ratio(logp: f64, logp_old: f64) -> Ratio {
    let log_ratio = logp - logp_old;
    let clamped = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    let value = clamped.exp();
    let derivative = if log_ratio.abs() <= LOG_RATIO_CLAMP { value } else { 0.0 };
    Ratio { value, derivative }
}

/// The surrogate factor `f(ρ)` of one advantage sign (`L = −A·f(ρ)`), with `df/dlogπ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Side {
    pub(crate) factor: f64,
    pub(crate) derivative: f64,
    pub(crate) region: ClipRegion,
}

/// `f⁺(ρ) = min(ρ, 1+ε_high)`: the factor of every positive-advantage term.
pub(crate) fn positive_side(r: Ratio, clip: &ClipConfig) -> Side {
    let hi = clip.upper();
    if r.value > hi {
        Side { factor: hi, derivative: 0.0, region: ClipRegion::ClippedHigh }
    } else {
        Side { factor: r.value, derivative: r.derivative, region: ClipRegion::Unclipped }
    }
}

/// `f⁻(ρ) = clamp(ρ, 1−ε_low, c)`: the factor of every negative-advantage term.
pub(crate) fn negative_side(r: Ratio, clip: &ClipConfig) -> Side {
    let lo = clip.lower();
    match clip.clip_ratio_c {
        _ if r.value < lo => Side { factor: lo, derivative: 0.0, region: ClipRegion::ClippedLow },
        Some(c) if r.value > c => {
            Side { factor: c, derivative: 0.0, region: ClipRegion::DualClipped }
        }
        _ => Side { factor: r.value, derivative: r.derivative, region: ClipRegion::Unclipped },
    }
}

/// Loss of one token, already multiplied by its aggregation weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLoss {
    /// The importance ratio `ρ`.
    pub ratio: f64,
    /// `w·L`: this token's contribution to the aggregated loss.
    pub loss: f64,
    /// `d(w·L)/dlogπ`: `−w·A·ρ` in the unclipped region, else 0.
    pub dloss_dlogp: f64,
    /// The active branch.
    pub region: ClipRegion,
}

/// The clipped (and dual-clipped) surrogate of one token with advantage `advantage` and
/// aggregation weight `weight`. Pure; assumes a validated `clip` and finite inputs (the batch
/// functions check both).
pub fn clipped_token_loss(
    logp: f64,
    logp_old: f64,
    advantage: f64,
    weight: f64,
    clip: &ClipConfig,
) -> TokenLoss {
    let r = ratio(logp, logp_old);
    let side = if advantage > 0.0 {
        positive_side(r, clip)
    } else if advantage < 0.0 {
        negative_side(r, clip)
    } else {
        Side { factor: 0.0, derivative: 0.0, region: ClipRegion::Unclipped }
    };
    TokenLoss {
        ratio: r.value,
        loss: -weight * advantage * side.factor,
        dloss_dlogp: -weight * advantage * side.derivative,
        region: side.region,
    }
}

/// Coefficient of the optional KL penalty to a frozen reference policy (k3 estimator).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KlPenalty {
    /// `β` (0.001 is the usual value when enabled; TreePO, DAPO and Dr.GRPO use none).
    pub coef: f64,
}

impl Default for KlPenalty {
    fn default() -> Self {
        Self { coef: 0.001 }
    }
}

/// Bound of `logπ_ref − logπ` before `exp` in k3 (verl's `low_var_kl`).
pub const KL_LOG_RATIO_CLAMP: f64 = 20.0;
/// Upper bound of the k3 value (verl's `low_var_kl`; k3 ≥ 0, so the lower bound −10 never acts).
pub const K3_MAX: f64 = 10.0;

/// Unweighted k3 estimate of one token and its derivative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct K3 {
    /// `k3 = exp(δ) − δ − 1` with `δ = clamp(logπ_ref − logπ, −20, 20)`, then clamped to `≤ 10`.
    pub value: f64,
    /// `dk3/dlogπ = 1 − exp(logπ_ref − logπ)`, or 0 where either clamp is active.
    pub dvalue_dlogp: f64,
}

/// Schulman's k3 estimator of `KL(π‖π_ref)` for one token, with verl's clamps. The loss term is
/// `β·w·k3`, its derivative `β·w·dk3/dlogπ`.
pub fn kl_k3(logp: f64, logp_ref: f64) -> K3 {
    let delta = logp_ref - logp;
    let d = delta.clamp(-KL_LOG_RATIO_CLAMP, KL_LOG_RATIO_CLAMP);
    let k3 = d.exp() - d - 1.0;
    if k3 > K3_MAX {
        K3 { value: K3_MAX, dvalue_dlogp: 0.0 }
    } else {
        // k3 ≤ 10 implies |δ| < 20: the log-ratio clamp is inactive and d = δ.
        K3 { value: k3, dvalue_dlogp: 1.0 - d.exp() }
    }
}

/// The entropy bonus's contribution to the loss, `−coef·w·H_t`, for a token whose policy
/// distribution has entropy `entropy` (computed by the model's forward).
///
/// It does not depend on `logπ` of the sampled token, so it adds nothing to `dL/dlogπ`. Its
/// gradient goes straight to the logits: with `p = softmax(z/T)` and `H = −Σ_j p_j log p_j`,
/// `∂H/∂z_j = −p_j (log p_j + H)/T`, so the model backward adds
/// `coef·w·p_j (log p_j + H)/T` to `dL/dz_j`.
pub fn entropy_bonus(entropy: f64, weight: f64, coef: f64) -> f64 {
    -coef * weight * entropy
}
