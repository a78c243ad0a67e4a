//! The tree-packed policy loss: one term per packed token instead of one per (leaf, token), with
//! exactly the per-leaf loss and gradient (docs/treepo.md §3.4, docs/training.md).
//!
//! ## Derivation
//!
//! A packed token `t` lies on `K` leaves `i ∈ I(t)`. Its context is the shared prefix, so `logπ`,
//! `logπ_old` and hence `ρ` are the same for every leaf through it. The per-leaf loss of the
//! token is `Σ_{i∈I(t)} w_i·L_i(ρ)` with leaf weights `w_i` (aggregation, [`super::aggregation`])
//! and per-leaf-token advantages `A_i`. By the case analysis of [`super::loss`]:
//!
//! - `A_i > 0`: `L_i = max(−A_i ρ, −A_i clip(ρ)) = −A_i·f⁺(ρ)`, `f⁺(ρ) = min(ρ, 1+ε_high)`;
//! - `A_i < 0`: `L_clip,i = −A_i·max(ρ, 1−ε_low)`, and the per-leaf dual clip is
//!   `min(L_clip,i, −A_i c) = min(−A_i·max(ρ, lo), −A_i·c) = −A_i·min(max(ρ, lo), c)` because
//!   `−A_i > 0` factors out of the `min`; so `L_i = −A_i·f⁻(ρ)`, `f⁻(ρ) = clamp(ρ, lo, c)`
//!   (`c = ∞` without dual clip, and `c > 1 > lo` so the clamp is well formed);
//! - `A_i = 0`: `L_i = 0`.
//!
//! `f⁺` and `f⁻` depend on `ρ` alone: at a fixed `ρ`, every negative-advantage leaf is in the same
//! regime (clipped low, unclipped or dual clipped), and so is every positive one. Therefore
//!
//! ```text
//! Σ_i w_i L_i = −f⁺(ρ)·S⁺_w − f⁻(ρ)·S⁻_w,   S⁺_w = Σ_{A_i>0} w_i A_i,   S⁻_w = Σ_{A_i<0} w_i A_i
//! d/dlogπ     = −f⁺'(ρ)·S⁺_w − f⁻'(ρ)·S⁻_w
//! ```
//!
//! with `f⁺' = ρ'` on `ρ ≤ 1+ε_high` and `f⁻' = ρ'` on `lo ≤ ρ ≤ c` (else 0), the same kink
//! convention as the per-leaf form. In the objective's notation (`J = −L`, unit weights) this is
//! `min(ρ, 1+ε_high)·S⁺ + max(ρ, 1−ε_low)·S⁻` with the dual clip capping the `S⁻` part at `c·S⁻`.
//! The KL and entropy terms depend on the token only, so they sum to `W·(β·k3)` and `−W·coef·H`
//! with `W = Σ_i w_i`. The per-leaf weights need not be equal (`seq-mean-token-mean` gives
//! `1/(G·|o_i|)`), which is why the sums are weighted. The token-mean denominator counts the
//! token `K` times: weights come from the leaves' full lengths. Clip-fraction counts use the
//! number of positive and negative leaves through the token (`n_pos`, `n_neg`) and `K`.

use super::error::{RlError, check_finite, check_len};
use super::loss::{
    ClipConfig, ClipRegion, entropy_bonus, kl_k3, negative_side, positive_side, ratio,
};
use super::per_leaf::{LossStats, PolicyLossConfig, optional_input};

/// Per packed token: weighted advantage sums of the leaves through it, and their counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PackedAdvantage {
    /// `S⁺_w = Σ w_i A_i` over the leaves through the token with `A_i > 0`.
    pub s_pos: f64,
    /// `S⁻_w = Σ w_i A_i` over the leaves through the token with `A_i < 0` (≤ 0).
    pub s_neg: f64,
    /// `W = Σ w_i` over all leaves through the token (KL and entropy terms).
    pub weight_sum: f64,
    /// Leaves through the token with `A_i > 0`.
    pub n_pos: usize,
    /// Leaves through the token with `A_i < 0`.
    pub n_neg: usize,
    /// `K`: all leaves through the token.
    pub multiplicity: usize,
}

/// One leaf as a path through the packed tokens.
#[derive(Debug, Clone, Copy)]
pub struct PackedLeaf<'a> {
    /// Packed-token indices of the leaf's response tokens, in order.
    pub tokens: &'a [usize],
    /// The leaf's advantage at each of those tokens.
    pub advantages: &'a [f64],
}

/// Accumulates [`PackedAdvantage`] for `num_packed_tokens` tokens from leaves and their
/// aggregation weights (`weights[i]` for `leaves[i]`, from [`super::LossAggregation::
/// sequence_weights`] over the leaf lengths `tokens.len()` of the whole mini-batch).
pub fn pack_advantages(
    num_packed_tokens: usize,
    leaves: &[PackedLeaf<'_>],
    weights: &[f64],
) -> Result<Vec<PackedAdvantage>, RlError> {
    check_len("leaf weights", leaves.len(), weights.len())?;
    check_finite("leaf weights", weights)?;
    let mut sums = vec![PackedAdvantage::default(); num_packed_tokens];
    for (leaf, &w) in leaves.iter().zip(weights) {
        check_len("leaf advantages", leaf.tokens.len(), leaf.advantages.len())?;
        check_finite("leaf advantages", leaf.advantages)?;
        for (&t, &a) in leaf.tokens.iter().zip(leaf.advantages) {
            let Some(s) = sums.get_mut(t) else {
                return Err(RlError::InvalidTree(format!(
                    "leaf token index {t} is outside the {num_packed_tokens} packed tokens"
                )));
            };
            s.multiplicity += 1;
            s.weight_sum += w;
            if a > 0.0 {
                s.s_pos += w * a;
                s.n_pos += 1;
            } else if a < 0.0 {
                s.s_neg += w * a;
                s.n_neg += 1;
            }
        }
    }
    Ok(sums)
}

/// Surrogate loss of one packed token (already weighted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackedTokenLoss {
    /// `ρ`.
    pub ratio: f64,
    /// `Σ_i w_i L_i = −f⁺(ρ)·S⁺_w − f⁻(ρ)·S⁻_w`.
    pub loss: f64,
    /// Its derivative with respect to the token's `logπ`.
    pub dloss_dlogp: f64,
    /// Region of the positive-advantage leaves (`Unclipped` or `ClippedHigh`).
    pub positive: ClipRegion,
    /// Region of the negative-advantage leaves (`Unclipped`, `ClippedLow` or `DualClipped`).
    pub negative: ClipRegion,
}

/// The clipped surrogate of one packed token. Pure; assumes a validated `clip` and finite
/// inputs ([`packed_loss`] checks both).
pub fn packed_token_loss(
    logp: f64,
    logp_old: f64,
    adv: &PackedAdvantage,
    clip: &ClipConfig,
) -> PackedTokenLoss {
    let r = ratio(logp, logp_old);
    let pos = positive_side(r, clip);
    let neg = negative_side(r, clip);
    PackedTokenLoss {
        ratio: r.value,
        loss: -pos.factor * adv.s_pos - neg.factor * adv.s_neg,
        dloss_dlogp: -pos.derivative * adv.s_pos - neg.derivative * adv.s_neg,
        positive: pos.region,
        negative: neg.region,
    }
}

/// Per-token inputs of a packed tree (or of several, concatenated).
#[derive(Debug, Clone, Copy)]
pub struct PackedTokens<'a> {
    /// `logπ_θ` per packed token.
    pub logp: &'a [f64],
    /// `logπ_old` per packed token.
    pub logp_old: &'a [f64],
    /// Advantage sums per packed token ([`pack_advantages`]).
    pub advantages: &'a [PackedAdvantage],
    /// `logπ_ref` per packed token (required when the KL penalty is on).
    pub logp_ref: Option<&'a [f64]>,
    /// Policy entropy per packed token (required when the entropy bonus is on).
    pub entropy: Option<&'a [f64]>,
}

/// Loss of packed tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedLoss {
    /// `dL/dlogπ` per packed token (surrogate + KL); equals the sum of the per-leaf derivatives of
    /// the leaves through the token.
    pub dloss_dlogp: Vec<f64>,
    /// Statistics, equal to the per-leaf ones (tokens counted once per leaf).
    pub stats: LossStats,
}

/// The loss of packed tokens; `config.aggregation` is not read here (it is in the weights).
pub fn packed_loss(
    tokens: &PackedTokens<'_>,
    config: &PolicyLossConfig,
) -> Result<PackedLoss, RlError> {
    config.validate()?;
    let n = tokens.logp.len();
    check_len("packed logp_old", n, tokens.logp_old.len())?;
    check_len("packed advantages", n, tokens.advantages.len())?;
    check_finite("packed logp", tokens.logp)?;
    check_finite("packed logp_old", tokens.logp_old)?;
    for (index, a) in tokens.advantages.iter().enumerate() {
        if let Some(value) = [a.s_pos, a.s_neg, a.weight_sum].into_iter().find(|v| !v.is_finite()) {
            return Err(RlError::NonFinite { what: "packed advantage sums", index, value });
        }
    }
    let logp_ref = optional_input("packed logp_ref", tokens.logp_ref, config.kl.is_some(), n)?;
    let entropy = optional_input("packed entropy", tokens.entropy, config.entropy_coef != 0.0, n)?;

    let mut stats = LossStats::default();
    let mut dloss_dlogp = Vec::with_capacity(n);
    for t in 0..n {
        let adv = &tokens.advantages[t];
        let tok = packed_token_loss(tokens.logp[t], tokens.logp_old[t], adv, &config.clip);
        stats.pg_loss += tok.loss;
        stats.num_tokens += adv.multiplicity;
        stats.count(tok.positive, adv.n_pos);
        stats.count(tok.negative, adv.n_neg);
        stats.old_minus_new_logp += adv.multiplicity as f64 * (tokens.logp_old[t] - tokens.logp[t]);
        let mut grad = tok.dloss_dlogp;
        if let (Some(kl), Some(lr)) = (config.kl, logp_ref) {
            let k3 = kl_k3(tokens.logp[t], lr[t]);
            stats.kl_loss += kl.coef * adv.weight_sum * k3.value;
            grad += kl.coef * adv.weight_sum * k3.dvalue_dlogp;
        }
        if let Some(h) = entropy {
            stats.entropy_loss += entropy_bonus(h[t], adv.weight_sum, config.entropy_coef);
        }
        dloss_dlogp.push(grad);
    }
    Ok(PackedLoss { dloss_dlogp, stats })
}
