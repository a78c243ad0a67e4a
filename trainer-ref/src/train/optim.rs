//! AdamW over the flat parameter buffer (llm.c: gradients and both moments share the layout,
//! so the update is one kernel), with the learning-rate schedule, the finite check and global
//! grad-norm clipping that run before the weights are touched.

use serde::{Deserialize, Serialize};
use treepo_kernels::ops::{self, AdamWParams};
use treepo_kernels::{Buffer, Device};

use super::TrainError;
use crate::model::Model;

/// Learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrSchedule {
    /// `lr` after warm-up (TreePO's setting).
    Constant,
    /// Cosine from `lr` to `min_lr` over `total_steps` (warm-up included).
    Cosine {
        /// Steps of the whole run.
        total_steps: u64,
        /// Final learning rate.
        min_lr: f64,
    },
}

/// Optimizer hyper-parameters (defaults: TreePO's paper values).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Adam β1.
    pub beta1: f64,
    /// Adam β2.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Decoupled weight decay (matrices and embeddings only).
    pub weight_decay: f64,
    /// Global gradient-norm clip (`0` = off).
    pub grad_clip: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Schedule after warm-up.
    pub schedule: LrSchedule,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
            warmup_steps: 10,
            schedule: LrSchedule::Constant,
        }
    }
}

impl OptimConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |f: &str, v: f64| TrainError::Config(format!("optimizer `{f}` = {v} is invalid"));
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(bad("lr", self.lr));
        }
        for (f, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(bad(f, v));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(bad("eps", self.eps));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(bad("weight_decay", self.weight_decay));
        }
        if !(self.grad_clip >= 0.0 && self.grad_clip.is_finite()) {
            return Err(bad("grad_clip", self.grad_clip));
        }
        if let LrSchedule::Cosine { min_lr, .. } = self.schedule
            && !(min_lr >= 0.0 && min_lr.is_finite())
        {
            return Err(bad("schedule.min_lr", min_lr));
        }
        Ok(())
    }

    /// Learning rate of optimizer step `step` (1-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps > 0 && step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine { total_steps, min_lr } => {
                let span = total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = (step.saturating_sub(self.warmup_steps) as f64 / span).min(1.0);
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// Gradients, moments and the decay mask of one model, on its device.
pub struct AdamW {
    cfg: OptimConfig,
    /// Parameter gradients (accumulated by the backward pass).
    pub grads: Buffer<f32>,
    m: Buffer<f32>,
    v: Buffer<f32>,
    decay: Buffer<f32>,
    step: u64,
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The step number (1-based).
    pub step: u64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether the gradients were scaled down.
    pub clipped: bool,
}

impl AdamW {
    /// Fresh state (zero moments) for `model`.
    pub fn new(model: &Model, cfg: OptimConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        let dev = model.device();
        let n = model.layout().total;
        let mask: Vec<f32> =
            model.layout().decay_mask().iter().map(|&d| if d { 1.0 } else { 0.0 }).collect();
        Ok(AdamW {
            cfg,
            grads: dev.zeros(n)?,
            m: dev.zeros(n)?,
            v: dev.zeros(n)?,
            decay: dev.upload(&mask)?,
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The configuration.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// Zeroes the gradients (the backward pass accumulates).
    pub fn zero_grad(&mut self, dev: &Device) -> Result<(), TrainError> {
        let n = self.grads.len();
        ops::fill(dev, &mut self.grads, 0.0, n)?;
        Ok(())
    }

    /// Checks every gradient tensor is finite (the error names the first that is not), clips the
    /// global norm, then updates `model`'s weights. On error the weights are untouched.
    pub fn step(&mut self, model: &mut Model) -> Result<StepReport, TrainError> {
        let dev = model.device().clone();
        let mut total = 0f64;
        for t in &model.layout().tensors {
            let ss = ops::sum_squares(&dev, self.grads.slice(t.range.clone())?, t.range.len())?;
            if !ss.is_finite() {
                return Err(TrainError::NonFinite { what: format!("gradient of `{}`", t.name) });
            }
            total += ss;
        }
        let grad_norm = total.sqrt();
        let clipped = self.cfg.grad_clip > 0.0 && grad_norm > self.cfg.grad_clip;
        let n = self.grads.len();
        if clipped {
            ops::scale(&dev, &mut self.grads, (self.cfg.grad_clip / grad_norm) as f32, n)?;
        }
        let step = self.step + 1;
        let lr = self.cfg.lr_at(step);
        let hp = AdamWParams {
            lr: lr as f32,
            beta1: self.cfg.beta1 as f32,
            beta2: self.cfg.beta2 as f32,
            eps: self.cfg.eps as f32,
            weight_decay: self.cfg.weight_decay as f32,
            step,
        };
        ops::adamw(
            &dev,
            model.params_mut(),
            &self.grads,
            &mut self.m,
            &mut self.v,
            &self.decay,
            &hp,
            n,
        )?;
        self.step = step;
        Ok(StepReport { step, lr, grad_norm, clipped })
    }

    /// The moments and step count, for checkpoints: `(m, v, step)` on the host.
    pub fn state(&self, dev: &Device) -> Result<(Vec<f32>, Vec<f32>, u64), TrainError> {
        Ok((dev.download(&self.m)?, dev.download(&self.v)?, self.step))
    }

    /// Restores moments and step count saved by [`AdamW::state`].
    pub fn restore(
        &mut self,
        dev: &Device,
        m: &[f32],
        v: &[f32],
        step: u64,
    ) -> Result<(), TrainError> {
        if m.len() != self.m.len() || v.len() != self.v.len() {
            return Err(TrainError::Config(format!(
                "optimizer state holds {}/{} values but the model has {} parameters",
                m.len(),
                v.len(),
                self.m.len()
            )));
        }
        dev.write(&mut self.m, m)?;
        dev.write(&mut self.v, v)?;
        self.step = step;
        Ok(())
    }
}
