//! One training step on a device: forward over a [`TrainBatch`], log-probs of its targets, a
//! per-target gradient `dL/dlogπ` (SFT's mean NLL or the RL surrogate), the log-prob backward
//! into `dlogits`, the model backward, then [`AdamW`].
//!
//! The same code serves the tree-packed layout and the per-leaf layout: the loss is always
//! computed through [`crate::rl::packed_loss`] over the batch's targets, which reduces exactly to
//! the per-leaf loss when every target belongs to one leaf.

use treepo_kernels::ops::{self, LogprobTargets};
use treepo_kernels::{Buffer, Device};

use super::{AdamW, StepReport, TrainBatch, TrainError};
use crate::model::{Activations, GradScratch, Model, PackedBatch};
use crate::rl::{
    LossStats, PackedLeaf, PackedTokens, PolicyLossConfig, pack_advantages, packed_loss,
};

/// Per-target log-probs (and per-row entropies) of one forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Logprobs {
    /// `log π(target | prefix)` per target, in the batch's target order.
    pub logp: Vec<f32>,
    /// Entropy of the predictive distribution at each target's row.
    pub entropy: Vec<f32>,
}

/// What one SFT step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SftReport {
    /// Mean negative log-likelihood over the response tokens, before the update.
    pub loss: f64,
    /// Response tokens trained on (leaf tokens).
    pub tokens: usize,
    /// The optimizer step.
    pub step: StepReport,
}

/// What one RL step did.
#[derive(Clone, Debug, PartialEq)]
pub struct RlReport {
    /// Loss statistics (clip fractions, KL, ...).
    pub stats: LossStats,
    /// Mean entropy over the target groups' tokens (leaf tokens, or trained edge tokens).
    pub entropy: f64,
    /// The optimizer step.
    pub step: StepReport,
}

/// A model, its optimizer and the per-size scratch buffers.
pub struct Trainer {
    /// The model being trained.
    pub model: Model,
    /// Its optimizer state.
    pub optim: AdamW,
    /// A frozen copy for the KL penalty, when enabled.
    pub reference: Option<Model>,
    buffers: Option<(usize, Activations, GradScratch, Buffer<f32>)>,
}

/// A batch uploaded to the device.
struct DeviceBatch {
    packed: PackedBatch,
    targets: LogprobTargets,
}

impl Trainer {
    /// A trainer for `model`.
    pub fn new(model: Model, optim: AdamW) -> Self {
        Trainer { model, optim, reference: None, buffers: None }
    }

    fn upload(&self, batch: &TrainBatch) -> Result<DeviceBatch, TrainError> {
        let dev = self.model.device();
        let cfg = self.model.config();
        let packed =
            PackedBatch::new(dev, cfg, &batch.tokens, &batch.positions, &batch.kv_row_end)?;
        let targets =
            LogprobTargets::upload(dev, &batch.row_ptr, &batch.target_tokens, cfg.vocab_size)?;
        Ok(DeviceBatch { packed, targets })
    }

    /// Scratch buffers for `n` tokens (reallocated only when `n` changes).
    fn buffers(&mut self, n: usize) -> Result<(), TrainError> {
        if self.buffers.as_ref().map(|b| b.0) != Some(n) {
            let dev = self.model.device();
            let cfg = self.model.config();
            let acts = Activations::new(dev, cfg, n)?;
            let scratch = GradScratch::new(dev, cfg, n)?;
            let dlogits = dev.zeros::<f32>(n * cfg.vocab_size)?;
            self.buffers = Some((n, acts, scratch, dlogits));
        }
        Ok(())
    }

    /// Forward pass and target log-probs under `model` (the policy or the reference), at
    /// sampling temperature `temperature` (logits are divided by it, as when sampling).
    fn logprobs_with(
        model: &Model,
        batch: &TrainBatch,
        db: &DeviceBatch,
        acts: &mut Activations,
        temperature: f32,
    ) -> Result<Logprobs, TrainError> {
        let dev = model.device();
        let (n, v) = (batch.len(), model.config().vocab_size);
        model.forward(&db.packed, acts)?;
        let mut logp = dev.zeros::<f32>(batch.num_targets().max(1))?;
        let mut entropy = dev.zeros::<f32>(n)?;
        ops::target_logprob(
            dev,
            acts.logits(),
            &db.targets,
            &mut logp,
            Some(entropy.view_mut()),
            n,
            v,
            1.0 / temperature,
        )?;
        let logp = dev.download(logp.slice(0..batch.num_targets())?)?;
        let row_h = dev.download(&entropy)?;
        let entropy = batch.target_rows().iter().map(|&r| row_h[r]).collect();
        Ok(Logprobs { logp, entropy })
    }

    /// Log-probs of the batch's targets under the current weights (no update): the old log-probs
    /// of an RL step are recomputed this way, by the trainer's own forward.
    pub fn logprobs(
        &mut self,
        batch: &TrainBatch,
        temperature: f32,
    ) -> Result<Logprobs, TrainError> {
        check_temperature(temperature)?;
        let db = self.upload(batch)?;
        self.buffers(batch.len())?;
        let (_, acts, _, _) =
            self.buffers.as_mut().ok_or_else(|| TrainError::Batch("no buffers".into()))?;
        Self::logprobs_with(&self.model, batch, &db, acts, temperature)
    }

    /// Accumulates into the optimizer's gradients the gradient of `Σ_k grad_logp[k]·logπ_k`
    /// (+ `Σ_r grad_entropy[r]·H_r` when given), i.e. runs the backward pass from per-target
    /// weights. The forward of `batch` must be the last one run (this method reruns it).
    pub fn accumulate(
        &mut self,
        batch: &TrainBatch,
        grad_logp: &[f32],
        grad_entropy: Option<&[f32]>,
        temperature: f32,
    ) -> Result<(), TrainError> {
        check_temperature(temperature)?;
        if grad_logp.len() != batch.num_targets() {
            return Err(TrainError::Batch(format!(
                "{} target gradients for {} targets",
                grad_logp.len(),
                batch.num_targets()
            )));
        }
        if let Some(i) = grad_logp.iter().position(|g| !g.is_finite()) {
            return Err(TrainError::NonFinite { what: format!("loss gradient of target {i}") });
        }
        let db = self.upload(batch)?;
        self.buffers(batch.len())?;
        let dev = self.model.device().clone();
        let (n, v) = (batch.len(), self.model.config().vocab_size);
        let (_, acts, scratch, dlogits) =
            self.buffers.as_mut().ok_or_else(|| TrainError::Batch("no buffers".into()))?;
        self.model.forward(&db.packed, acts)?;
        let g = dev.upload(if grad_logp.is_empty() { &[0.0f32][..] } else { grad_logp })?;
        let ge = match grad_entropy {
            Some(h) => Some(dev.upload(h)?),
            None => None,
        };
        ops::target_logprob_bwd(
            &dev,
            acts.logits(),
            &db.targets,
            &g,
            ge.as_ref().map(|b| b.view()),
            &mut *dlogits,
            n,
            v,
            1.0 / temperature,
        )?;
        self.model.backward(&db.packed, acts, dlogits.view(), scratch, &mut self.optim.grads)?;
        Ok(())
    }

    /// One supervised step: mean NLL of the response tokens (every leaf token counts once per
    /// leaf through it), then AdamW.
    pub fn sft_step(&mut self, batch: &TrainBatch) -> Result<SftReport, TrainError> {
        let lp = self.logprobs(batch, 1.0)?;
        let mut mult = vec![0usize; batch.num_targets()];
        for leaf in &batch.leaf_targets {
            for &k in leaf {
                mult[k] += 1;
            }
        }
        let tokens = batch.leaf_tokens();
        if tokens == 0 {
            return Err(TrainError::Batch("no response tokens".into()));
        }
        let loss = -mult.iter().zip(&lp.logp).map(|(&m, &l)| m as f64 * l as f64).sum::<f64>()
            / tokens as f64;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite { what: "SFT loss".into() });
        }
        let grad: Vec<f32> = mult.iter().map(|&m| -(m as f64 / tokens as f64) as f32).collect();
        self.optim.zero_grad(self.model.device())?;
        self.accumulate(batch, &grad, None, 1.0)?;
        let step = self.optim.step(&mut self.model)?;
        Ok(SftReport { loss, tokens, step })
    }

    /// One policy-gradient step: advantages at every target of each target group
    /// (`advantages[group][i]` for [`TrainBatch::leaf_targets`]`[group][i]`: per leaf, or per
    /// trained edge for an edge batch), the old log-probs of the batch's targets, the clipped
    /// loss of `cfg` aggregated over the batch with each group as one sequence, then AdamW.
    /// `temperature` is the sampling temperature.
    pub fn rl_step(
        &mut self,
        batch: &TrainBatch,
        advantages: &[Vec<f64>],
        logp_old: &[f32],
        cfg: &PolicyLossConfig,
        temperature: f32,
    ) -> Result<RlReport, TrainError> {
        let (grad, grad_entropy, stats, entropy) =
            self.rl_gradient(batch, advantages, logp_old, cfg, temperature)?;
        self.optim.zero_grad(self.model.device())?;
        self.accumulate(batch, &grad, grad_entropy.as_deref(), temperature)?;
        let step = self.optim.step(&mut self.model)?;
        Ok(RlReport { stats, entropy, step })
    }

    /// The per-target `dL/dlogπ` (and per-row `dL/dH` under an entropy bonus) of the RL loss,
    /// with its statistics and the mean entropy over the groups' targets (a target counted once
    /// per group holding it). Targets in no group get no loss term.
    #[allow(clippy::type_complexity)]
    pub fn rl_gradient(
        &mut self,
        batch: &TrainBatch,
        advantages: &[Vec<f64>],
        logp_old: &[f32],
        cfg: &PolicyLossConfig,
        temperature: f32,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>, LossStats, f64), TrainError> {
        let leaf_lens: Vec<usize> = batch.leaf_targets.iter().map(Vec::len).collect();
        let weights = cfg.aggregation.sequence_weights(&leaf_lens)?;
        self.rl_gradient_weighted(batch, advantages, &weights, logp_old, cfg, temperature)
    }

    /// [`Trainer::rl_gradient`] with the loss aggregation's per-group weights given
    /// (`weights[group]` multiplies every token term of the group) instead of computed from
    /// this batch: a data-parallel rank that holds part of a mini-batch passes the weights of
    /// the whole mini-batch, so the ranks' gradients sum to the whole mini-batch's.
    #[allow(clippy::type_complexity)]
    pub fn rl_gradient_weighted(
        &mut self,
        batch: &TrainBatch,
        advantages: &[Vec<f64>],
        weights: &[f64],
        logp_old: &[f32],
        cfg: &PolicyLossConfig,
        temperature: f32,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>, LossStats, f64), TrainError> {
        if weights.len() != batch.leaf_targets.len() {
            return Err(TrainError::Batch(format!(
                "{} aggregation weights for {} target groups",
                weights.len(),
                batch.leaf_targets.len()
            )));
        }
        if advantages.len() != batch.leaf_targets.len() {
            return Err(TrainError::Batch(format!(
                "{} advantage lists for {} leaves",
                advantages.len(),
                batch.leaf_targets.len()
            )));
        }
        if logp_old.len() != batch.num_targets() {
            return Err(TrainError::Batch(format!(
                "{} old log-probs for {} targets",
                logp_old.len(),
                batch.num_targets()
            )));
        }
        let lp = self.logprobs(batch, temperature)?;
        let logp_ref = match (&cfg.kl, self.reference.as_ref()) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(TrainError::Config(
                    "the KL penalty needs a reference model (Trainer::reference)".into(),
                ));
            }
            (Some(_), Some(reference)) => {
                let db = self.upload(batch)?;
                let (_, acts, _, _) =
                    self.buffers.as_mut().ok_or_else(|| TrainError::Batch("no buffers".into()))?;
                Some(Self::logprobs_with(reference, batch, &db, acts, temperature)?.logp)
            }
        };
        let leaves: Vec<PackedLeaf<'_>> = batch
            .leaf_targets
            .iter()
            .zip(advantages)
            .map(|(t, a)| PackedLeaf { tokens: t, advantages: a })
            .collect();
        let adv = pack_advantages(batch.num_targets(), &leaves, weights)?;
        let f64s = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
        let (logp, old, h) = (f64s(&lp.logp), f64s(logp_old), f64s(&lp.entropy));
        let lr = logp_ref.as_deref().map(f64s);
        let loss = packed_loss(
            &PackedTokens {
                logp: &logp,
                logp_old: &old,
                advantages: &adv,
                logp_ref: lr.as_deref(),
                entropy: Some(&h),
            },
            cfg,
        )?;
        if !loss.stats.total().is_finite() {
            return Err(TrainError::NonFinite { what: "policy loss".into() });
        }
        let grad: Vec<f32> = loss.dloss_dlogp.iter().map(|&g| g as f32).collect();
        let grad_entropy = (cfg.entropy_coef != 0.0).then(|| {
            let mut ge = vec![0f32; batch.len()];
            for (k, r) in batch.target_rows().into_iter().enumerate() {
                ge[r] += (-cfg.entropy_coef * adv[k].weight_sum) as f32;
            }
            ge
        });
        let leaf_tokens = batch.leaf_tokens().max(1) as f64;
        let entropy =
            batch.leaf_targets.iter().flatten().map(|&k| lp.entropy[k] as f64).sum::<f64>()
                / leaf_tokens;
        Ok((grad, grad_entropy, loss.stats, entropy))
    }

    /// The device.
    pub fn device(&self) -> &Device {
        self.model.device()
    }
}

fn check_temperature(t: f32) -> Result<(), TrainError> {
    if !(t.is_finite() && t > 0.0) {
        return Err(TrainError::Config(format!(
            "temperature {t} must be finite and > 0 for training"
        )));
    }
    Ok(())
}
