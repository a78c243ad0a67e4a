//! The TOML configuration of a run: one file says everything a run does, and the resolved copy
//! is written into the run directory. Keys mirror TreePO's where they exist (the sampler section
//! takes `tree_max_depth`, `tree_max_token_per_step`, ... verbatim).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use treepo_sampler::TreeConfig;

use crate::model::{ModelConfig, ModelType};
use crate::pipeline::Algo;
use crate::rl::{AdvantageConfig, ClipConfig, LossAggregation};
use crate::tasks::TaskConfig;
use crate::train::{LrSchedule, OptimConfig, TrainError};

/// Run-wide settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    /// Seed of everything random (model init, problem order, sampling).
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `wgpu`.
    pub device: String,
    /// Where runs are written (`<out_dir>/<name>`).
    pub out_dir: PathBuf,
    /// Checkpoint every this many RL steps (and at the end; 0 = only at the end).
    pub checkpoint_every: u64,
    /// KV pages of the sampling engine's pool.
    pub kv_pages: usize,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            seed: 0,
            device: "auto".into(),
            out_dir: "runs".into(),
            checkpoint_every: 10,
            kv_pages: 8192,
        }
    }
}

/// The model: a fresh one of the given size, or a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Load this checkpoint directory instead of initializing (HF format).
    pub path: Option<PathBuf>,
    /// Width C.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Longest sequence.
    pub max_positions: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            path: None,
            hidden_size: 96,
            intermediate_size: 256,
            layers: 3,
            heads: 4,
            kv_heads: 2,
            max_positions: 256,
        }
    }
}

impl ModelSection {
    /// The configuration of a fresh model over `vocab` ids.
    pub fn config(&self, vocab: usize) -> Result<ModelConfig, TrainError> {
        if self.heads == 0 || !self.hidden_size.is_multiple_of(self.heads) {
            return Err(TrainError::Config(format!(
                "model.heads = {} must divide model.hidden_size = {}",
                self.heads, self.hidden_size
            )));
        }
        let cfg = ModelConfig {
            model_type: ModelType::Qwen2,
            vocab_size: vocab,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: self.kv_heads,
            head_dim: self.hidden_size / self.heads,
            max_position_embeddings: self.max_positions,
            ..ModelConfig::tiny(vocab)
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Supervised warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftSection {
    /// Optimizer steps.
    pub steps: usize,
    /// Problems per step.
    pub batch_size: usize,
    /// Optimizer.
    pub optim: OptimConfig,
}

impl Default for SftSection {
    fn default() -> Self {
        SftSection {
            steps: 200,
            batch_size: 32,
            optim: OptimConfig {
                lr: 3e-3,
                warmup_steps: 20,
                weight_decay: 0.0,
                schedule: LrSchedule::Constant,
                ..OptimConfig::default()
            },
        }
    }
}

/// The clipped loss (verl names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossSection {
    /// ε_low.
    pub clip_ratio_low: f64,
    /// ε_high (clip-higher).
    pub clip_ratio_high: f64,
    /// Dual-clip constant (0 = off).
    pub clip_ratio_c: f64,
    /// Aggregation.
    pub loss_agg_mode: LossAggregation,
    /// KL (k3) coefficient to the initial policy (0 = off, TreePO's setting).
    pub kl_coef: f64,
    /// Entropy bonus coefficient (0 = off).
    pub entropy_coef: f64,
}

impl Default for LossSection {
    fn default() -> Self {
        let c = ClipConfig::default();
        LossSection {
            clip_ratio_low: c.clip_ratio_low,
            clip_ratio_high: c.clip_ratio_high,
            clip_ratio_c: c.clip_ratio_c.unwrap_or(0.0),
            loss_agg_mode: LossAggregation::TokenMean,
            kl_coef: 0.0,
            entropy_coef: 0.0,
        }
    }
}

/// Reinforcement learning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlSection {
    /// The algorithm.
    pub algo: Algo,
    /// RL iterations (rollout batches).
    pub steps: u64,
    /// Queries per rollout batch.
    pub queries_per_step: usize,
    /// Optimizer steps per rollout batch.
    pub mini_batches: usize,
    /// Pack whole trees for the update.
    pub packed: bool,
    /// Extra generation rounds of dynamic sampling (`-1` = off).
    pub dynamic_sampling_rounds: i64,
    /// Overlong penalty buffer in tokens (0 = off); the limit is the sampler's
    /// `max_response_length` (or d·l).
    pub overlong_buffer: usize,
    /// Advantage estimator options; the estimator itself always follows `algo`.
    pub advantage: Option<AdvantageConfig>,
    /// The loss.
    pub loss: LossSection,
    /// Optimizer.
    pub optim: OptimConfig,
    /// The sampler (TreePO keys).
    pub sampler: TreeConfig,
}

impl Default for RlSection {
    fn default() -> Self {
        let mut sampler = TreeConfig::with_shape(6, 8, 2, 8);
        sampler.temperature = 1.0;
        RlSection {
            algo: Algo::Treepo,
            steps: 30,
            queries_per_step: 16,
            mini_batches: 2,
            packed: true,
            dynamic_sampling_rounds: 1,
            overlong_buffer: 0,
            advantage: None,
            loss: LossSection::default(),
            optim: OptimConfig {
                lr: 5e-4,
                warmup_steps: 2,
                weight_decay: 0.0,
                ..OptimConfig::default()
            },
            sampler,
        }
    }
}

/// Evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// Eval problems.
    pub problems: usize,
    /// Samples per problem.
    pub k: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Evaluate every this many RL steps (0 = only before and after).
    pub every: u64,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection { problems: 64, k: 4, temperature: 1.0, every: 0 }
    }
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Run-wide settings.
    pub run: RunSection,
    /// The task.
    pub task: TaskConfig,
    /// The model.
    pub model: ModelSection,
    /// Supervised warm-up.
    pub sft: SftSection,
    /// RL.
    pub rl: RlSection,
    /// Evaluation.
    pub eval: EvalSection,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            run: RunSection::default(),
            task: TaskConfig::from_name("parity-cot")
                .unwrap_or_else(|_| unreachable!("parity-cot is a known task")),
            model: ModelSection::default(),
            sft: SftSection::default(),
            rl: RlSection::default(),
            eval: EvalSection::default(),
        }
    }
}

impl RunConfig {
    /// Parses TOML text; errors name the file and the offending key.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, TrainError> {
        let cfg: RunConfig = toml::from_str(text)
            .map_err(|e| TrainError::Config(format!("{}: {e}", origin.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, path)
    }

    /// The resolved configuration as TOML.
    pub fn to_toml(&self) -> Result<String, TrainError> {
        toml::to_string_pretty(self).map_err(|e| TrainError::Config(e.to_string()))
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.sft.optim.validate()?;
        self.rl.optim.validate()?;
        self.rl.sampler.validate().map_err(|e| TrainError::Config(format!("rl.sampler: {e}")))?;
        if self.rl.queries_per_step == 0 || self.rl.mini_batches == 0 {
            return Err(TrainError::Config(
                "rl.queries_per_step and rl.mini_batches must be > 0".into(),
            ));
        }
        if self.eval.k == 0 || self.eval.temperature.is_nan() || self.eval.temperature <= 0.0 {
            return Err(TrainError::Config("eval.k must be > 0 and eval.temperature > 0".into()));
        }
        if self.sft.batch_size == 0 {
            return Err(TrainError::Config("sft.batch_size must be > 0".into()));
        }
        "auto,cpu,cuda,wgpu".split(',').any(|d| d == self.run.device).then_some(()).ok_or_else(
            || {
                TrainError::Config(format!(
                    "run.device `{}` is not one of auto, cpu, cuda, wgpu",
                    self.run.device
                ))
            },
        )
    }
}
