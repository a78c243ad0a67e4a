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
    /// Checkpoint every this many SFT and RL steps (and at the end of each phase; 0 = only at
    /// the ends).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest; older ones are deleted after each save); 0 keeps
    /// all.
    pub keep_last: u64,
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
            keep_last: 3,
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
    /// Tokens per KV page of the sampling engine (`EngineConfig::default().page_size`).
    pub const KV_PAGE_TOKENS: usize = 16;

    /// Parses TOML text; errors name the file and the offending key.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, TrainError> {
        let cfg: RunConfig = toml::from_str(text)
            .map_err(|e| TrainError::Config(format!("{}: {e}", origin.display())))?;
        cfg.validate().map_err(|e| match e {
            TrainError::Config(m) => TrainError::Config(format!("{}: {m}", origin.display())),
            other => other,
        })?;
        Ok(cfg)
    }

    /// Parses TOML text with `key=value` overrides applied (see [`apply_overrides`]), then
    /// validates like [`from_toml`](Self::from_toml).
    pub fn from_toml_with_overrides(
        text: &str,
        origin: &Path,
        overrides: &[String],
    ) -> Result<Self, TrainError> {
        if overrides.is_empty() {
            return Self::from_toml(text, origin);
        }
        let text = apply_overrides::<RunConfig>(text, origin, overrides)?;
        let what = format!("{} with {}", origin.display(), overrides.join(" "));
        Self::from_toml(&text, Path::new(&what))
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

    /// The sampler settings evaluation runs with: the RL sampler's limits at `eval.temperature`,
    /// `eval.k` samples per problem (what `pipeline::evaluate` builds from them).
    pub fn eval_sampler(&self) -> TreeConfig {
        let mut c = self.rl.sampler.clone();
        c.temperature = self.eval.temperature;
        c.tree_max_width = self.eval.k;
        c.tree_random_first_div_min = None;
        c.tree_random_first_div_max = None;
        c
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_ranges()?;
        self.validate_basic()
    }

    /// Values that used to be accepted and then truncated, clamped or ignored (issue 13 item 8);
    /// each error names the key and the value.
    fn validate_ranges(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        // The engine's pool: a u32 page count whose slots (16-token pages) index as int32.
        let max_pages = i32::MAX as usize / Self::KV_PAGE_TOKENS;
        if self.run.kv_pages == 0 || self.run.kv_pages > max_pages {
            return bad(format!(
                "run.kv_pages = {} must be in [1, {max_pages}] (pages of {} tokens)",
                self.run.kv_pages,
                Self::KV_PAGE_TOKENS
            ));
        }
        let l = &self.rl.loss;
        if !(l.kl_coef.is_finite() && l.kl_coef >= 0.0) {
            return bad(format!(
                "rl.loss.kl_coef = {} must be finite and >= 0 (0 = off)",
                l.kl_coef
            ));
        }
        if !(l.entropy_coef.is_finite() && l.entropy_coef >= 0.0) {
            return bad(format!(
                "rl.loss.entropy_coef = {} must be finite and >= 0 (0 = off)",
                l.entropy_coef
            ));
        }
        if !(l.clip_ratio_c == 0.0 || (l.clip_ratio_c.is_finite() && l.clip_ratio_c > 1.0)) {
            return bad(format!(
                "rl.loss.clip_ratio_c = {} must be 0 (off) or a finite value > 1",
                l.clip_ratio_c
            ));
        }
        ClipConfig {
            clip_ratio_low: l.clip_ratio_low,
            clip_ratio_high: l.clip_ratio_high,
            clip_ratio_c: (l.clip_ratio_c > 0.0).then_some(l.clip_ratio_c),
        }
        .validate()
        .map_err(|e| TrainError::Config(format!("rl.loss: {e}")))?;
        if self.eval.problems == 0 {
            return bad("eval.problems = 0: evaluation needs at least one problem".into());
        }
        if !self.eval.temperature.is_finite() {
            return bad(format!("eval.temperature = {} must be finite", self.eval.temperature));
        }
        if self.rl.mini_batches > self.rl.queries_per_step {
            return bad(format!(
                "rl.mini_batches = {} exceeds rl.queries_per_step = {} (a mini-batch holds whole \
                 queries)",
                self.rl.mini_batches, self.rl.queries_per_step
            ));
        }
        if self.rl.dynamic_sampling_rounds < -1 {
            return bad(format!(
                "rl.dynamic_sampling_rounds = {} must be -1 (off) or >= 0",
                self.rl.dynamic_sampling_rounds
            ));
        }
        self.rl.sampler.validate().map_err(|e| TrainError::Config(format!("rl.sampler: {e}")))?;
        let max_len = self.rl.sampler.max_response();
        if self.rl.overlong_buffer > max_len {
            return bad(format!(
                "rl.overlong_buffer = {} exceeds the longest response ({max_len} tokens, \
                 rl.sampler.max_response_length or d·l)",
                self.rl.overlong_buffer
            ));
        }
        if self.model.path.is_none() && max_len > self.model.max_positions {
            return bad(format!(
                "the longest response (rl.sampler.max_response_length or d·l = {max_len} tokens) \
                 exceeds model.max_positions = {}: responses would be cut at the context limit",
                self.model.max_positions
            ));
        }
        if self.eval.k > 0 {
            self.eval_sampler().validate().map_err(|e| {
                TrainError::Config(format!(
                    "eval.k = {} with the rl.sampler settings (evaluation samples eval.k answers \
                     per problem with rl.sampler's limits): {e}",
                    self.eval.k
                ))
            })?;
        }
        Ok(())
    }

    fn validate_basic(&self) -> Result<(), TrainError> {
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

/// TOML text with `key=value` overrides applied (`rl.steps=10`, `sft.optim.lr=1e-4`,
/// `task.name="countdown"`): the key is a dotted path into the file's tables (missing tables are
/// created), the value TOML (a bare word that is not valid TOML is taken as a string). Each
/// override is checked against `T` as it is applied, so an unknown key or a value of the wrong
/// type is an error naming that override. Any serde configuration type works (the LM runs'
/// [`RunConfig`], the flow runs' configuration).
pub fn apply_overrides<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &Path,
    overrides: &[String],
) -> Result<String, TrainError> {
    let err = |m: String| TrainError::Config(m);
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| err(format!("{}: {e}", origin.display())))?;
    for o in overrides {
        let (key, value) =
            o.split_once('=').ok_or_else(|| err(format!("override {o:?}: expected KEY=VALUE")))?;
        let path: Vec<&str> = key.split('.').collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(err(format!("override {o:?}: {key:?} is not a dotted config key")));
        }
        let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(mut t) => t.remove("v").unwrap_or_else(|| value.into()),
            Err(_) => toml::Value::String(value.to_string()),
        };
        let (last, parents) = path.split_last().unwrap_or((&key, &[]));
        let mut at = &mut table;
        for (i, p) in parents.iter().enumerate() {
            let entry =
                at.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
            at = entry.as_table_mut().ok_or_else(|| {
                err(format!("override {o:?}: {} is a value, not a table", path[..=i].join(".")))
            })?;
        }
        at.insert(last.to_string(), value);
        // Checked one at a time, so the error names the override that broke it.
        toml::Value::Table(table.clone())
            .try_into::<T>()
            .map_err(|e| err(format!("override {o:?}: {e}")))?;
    }
    toml::to_string(&table).map_err(|e| err(e.to_string()))
}
