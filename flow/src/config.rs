//! The run configuration of the flow system (TOML sections `model`, `pretrain`, `sampling`,
//! `rl`, `eval`), with its checks. Defaults are the demo's.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use treepo_rl::ClipConfig;

use crate::net::NetConfig;
use crate::optim::OptimConfig;
use crate::rollout::Layout;
use crate::sde::Schedule;
use crate::{FlowError, Result};

/// Which RL algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Tree rollouts, TreeGRPO's backed-up edge advantages, window edges trained.
    Treegrpo,
    /// DanceGRPO / Flow-GRPO: `G` independent SDE trajectories, GRPO advantages, every step
    /// trained.
    Dancegrpo,
}

impl Method {
    /// The name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Method::Treegrpo => "treegrpo",
            Method::Dancegrpo => "dancegrpo",
        }
    }
}

/// Rectified-flow pretraining.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch: usize,
    /// Training images drawn (balanced over classes).
    pub images: usize,
    /// Optimizer (peak learning rate, cosine-decayed to 10%).
    pub optim: OptimConfig,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig { steps: 1500, batch: 128, images: 6000, optim: OptimConfig::default() }
    }
}

/// The sampler.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Denoising steps `T`.
    pub steps: usize,
    /// SDE noise level `a` (Flow-GRPO's 0.7).
    pub noise_level: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig { steps: 10, noise_level: 0.7 }
    }
}

/// The RL phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlConfig {
    /// Algorithm.
    pub method: Method,
    /// Iterations (sample → advantages → one optimizer step).
    pub iterations: usize,
    /// Prompts (classes) per iteration, cycling through the classes.
    pub prompts: usize,
    /// TreeGRPO: children per branching `k`.
    pub k: usize,
    /// TreeGRPO: window width `w` (SDE steps; `k^w` leaves).
    pub w: usize,
    /// TreeGRPO: the window start moves by `s` steps ...
    pub s: usize,
    /// ... every `τ` iterations (`tau`), wrapping within the schedule.
    pub tau: usize,
    /// DanceGRPO: trajectories per prompt `G`.
    pub group: usize,
    /// Optimizer (constant learning rate).
    pub optim: OptimConfig,
    /// The ratio clip.
    pub clip: ClipConfig,
    /// Weight of each reward's per-prompt z-score in the leaf reward (the paper: 1 and 1).
    pub weights: RewardWeights,
}

/// Weights of the rewards (each ≥ 0, finite, not both 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardWeights {
    /// The classifier's `P(prompted class)`.
    pub classifier: f64,
    /// The analytic aesthetic score.
    pub aesthetic: f64,
}

impl Default for RewardWeights {
    fn default() -> Self {
        RewardWeights { classifier: 1.0, aesthetic: 1.0 }
    }
}

impl RewardWeights {
    /// In the order of `Rewards::list` (classifier, aesthetic).
    pub fn as_array(&self) -> [f64; 2] {
        [self.classifier, self.aesthetic]
    }
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            method: Method::Treegrpo,
            iterations: 100,
            prompts: 12,
            k: 2,
            w: 3,
            s: 1,
            tau: 1,
            group: 8,
            optim: OptimConfig { lr: 3e-4, ..OptimConfig::default() },
            clip: ClipConfig { clip_ratio_low: 0.2, clip_ratio_high: 0.2, clip_ratio_c: None },
            weights: RewardWeights::default(),
        }
    }
}

/// Evaluation: deterministic ODE samples from fixed noise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Samples per class.
    pub per_class: usize,
    /// Evaluate every this many RL iterations (and after the last).
    pub every: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { per_class: 16, every: 10 }
    }
}

/// The whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Seed of everything (data, init, noise).
    pub seed: u64,
    /// The velocity network.
    pub model: NetConfig,
    /// Pretraining.
    pub pretrain: PretrainConfig,
    /// Sampling.
    pub sampling: SamplingConfig,
    /// RL.
    pub rl: RlConfig,
    /// Evaluation.
    pub eval: EvalConfig,
}

impl FlowConfig {
    /// The demo's `--quick` variant: the same pipeline, small enough for CI (seconds).
    pub fn quick() -> Self {
        let mut c = FlowConfig::default();
        c.pretrain.steps = 150;
        c.pretrain.images = 1200;
        c.rl.iterations = 6;
        c.rl.prompts = 6;
        c.eval.per_class = 4;
        c.eval.every = 3;
        c
    }

    /// Checks every section; the error names the key.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.schedule()?;
        let positive = [
            ("pretrain.steps", self.pretrain.steps),
            ("pretrain.batch", self.pretrain.batch),
            ("pretrain.images", self.pretrain.images),
            ("rl.prompts", self.rl.prompts),
            ("rl.tau", self.rl.tau),
            ("rl.group", self.rl.group),
            ("eval.per_class", self.eval.per_class),
            ("eval.every", self.eval.every),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(FlowError::Config(format!("{key} = 0 must be ≥ 1")));
            }
        }
        for (key, lr) in
            [("pretrain.optim.lr", self.pretrain.optim.lr), ("rl.optim.lr", self.rl.optim.lr)]
        {
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(FlowError::Config(format!("{key} = {lr} must be finite and ≥ 0")));
            }
        }
        self.rl.clip.validate()?;
        let w = self.rl.weights.as_array();
        if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || w.iter().all(|&x| x == 0.0) {
            return Err(FlowError::Config(format!(
                "rl.weights = {w:?}: each must be finite and ≥ 0, and not all 0"
            )));
        }
        self.layout(0)?.validate(self.sampling.steps)
    }

    /// The schedule.
    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::new(self.sampling.steps, self.sampling.noise_level)
    }

    /// The rollout layout of RL iteration `iteration`. TreeGRPO's window starts at
    /// `(s·⌊iteration/τ⌋) mod (T − w + 1)`; a window wider than the schedule, `k = 0`, `w = 0`
    /// or `G = 0` is an error.
    pub fn layout(&self, iteration: usize) -> Result<Layout> {
        let steps = self.sampling.steps;
        let rl = &self.rl;
        let layout = match rl.method {
            Method::Treegrpo => {
                if rl.w == 0 || rl.w > steps {
                    return Err(FlowError::Config(format!(
                        "rl.w = {} must be in 1..={steps} (sampling.steps): the SDE window lies \
                         inside the schedule",
                        rl.w
                    )));
                }
                if rl.k == 0 {
                    return Err(FlowError::Config(
                        "rl.k = 0: each window state needs ≥ 1 child".into(),
                    ));
                }
                let leaves = (rl.k as u64).checked_pow(rl.w as u32).unwrap_or(u64::MAX);
                if leaves > 4096 {
                    return Err(FlowError::Config(format!(
                        "rl.k^rl.w = {}^{} leaves per prompt exceeds 4096",
                        rl.k, rl.w
                    )));
                }
                let positions = steps - rl.w + 1;
                let tau = rl.tau.max(1);
                let start = (rl.s * (iteration / tau)) % positions;
                Layout::Tree { k: rl.k, window: window(start, rl.w) }
            }
            Method::Dancegrpo => Layout::Flat { group: rl.group },
        };
        layout.validate(steps)?;
        Ok(layout)
    }
}

fn window(start: usize, w: usize) -> Range<usize> {
    start..start + w
}
