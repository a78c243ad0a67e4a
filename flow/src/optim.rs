//! AdamW with global gradient-norm clipping, on the kernels' `adamw`, `sum_squares` and `scale`.

use serde::{Deserialize, Serialize};
use treepo_kernels::ops::{self, AdamWParams};
use treepo_kernels::{Buffer, Device};

use crate::net::VelocityNet;
use crate::{FlowError, Result};

/// Optimizer settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Learning rate.
    pub lr: f32,
    /// AdamW β1.
    pub beta1: f32,
    /// AdamW β2.
    pub beta2: f32,
    /// Decoupled weight decay of the matrices.
    pub weight_decay: f32,
    /// Global gradient-norm clip (`0` disables it).
    pub grad_clip: f32,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig { lr: 2e-3, beta1: 0.9, beta2: 0.99, weight_decay: 0.0, grad_clip: 1.0 }
    }
}

/// AdamW state over a network's flat parameters.
pub struct Optimizer {
    /// Settings.
    pub config: OptimConfig,
    /// Gradients: backward passes add into it; [`Optimizer::step`] consumes and zeroes it.
    pub grads: Buffer<f32>,
    m: Buffer<f32>,
    v: Buffer<f32>,
    decay: Buffer<f32>,
    steps: u64,
    dev: Device,
}

impl Optimizer {
    /// Zeroed state for `net`.
    pub fn new(net: &VelocityNet, config: OptimConfig) -> Result<Self> {
        let dev = net.device().clone();
        let n = net.layout.len;
        if !(config.grad_clip.is_finite() && config.grad_clip >= 0.0) {
            return Err(FlowError::Config(format!(
                "grad_clip = {} must be finite and ≥ 0",
                config.grad_clip
            )));
        }
        Ok(Optimizer {
            config,
            grads: dev.zeros(n)?,
            m: dev.zeros(n)?,
            v: dev.zeros(n)?,
            decay: dev.upload(&net.decay_mask())?,
            steps: 0,
            dev,
        })
    }

    /// Clips the accumulated gradient to the configured global norm, takes one AdamW step with
    /// learning rate `lr`, zeroes the gradient; returns the pre-clip norm. A non-finite gradient
    /// is an error and leaves the parameters untouched.
    pub fn step(&mut self, net: &mut VelocityNet, lr: f32) -> Result<f64> {
        let n = self.grads.len();
        let norm = ops::sum_squares(&self.dev, &self.grads, n)?.sqrt();
        if !norm.is_finite() {
            return Err(FlowError::NonFinite(format!("gradient norm {norm}: the step is skipped")));
        }
        let clip = self.config.grad_clip as f64;
        if clip > 0.0 && norm > clip {
            ops::scale(&self.dev, &mut self.grads, (clip / norm) as f32, n)?;
        }
        self.steps += 1;
        let hp = AdamWParams {
            lr,
            beta1: self.config.beta1,
            beta2: self.config.beta2,
            eps: 1e-8,
            weight_decay: self.config.weight_decay,
            step: self.steps,
        };
        ops::adamw(
            &self.dev,
            &mut net.params,
            &self.grads,
            &mut self.m,
            &mut self.v,
            &self.decay,
            &hp,
            n,
        )?;
        ops::fill(&self.dev, &mut self.grads, 0.0, n)?;
        Ok(norm)
    }
}
