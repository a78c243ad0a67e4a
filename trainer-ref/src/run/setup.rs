//! What every process of a run builds from its [`RunConfig`] — the task, tokenizer, sampler
//! settings, RL settings and the problem stream — so that the `treepo` binary, the Python
//! workers of `treepo.distributed` and the tests all draw the same problems with the same seeds.

use std::sync::Arc;

use treepo_kernels::Device;
use treepo_sampler::{RolloutTree, TreeConfig, TreeSampler};

use super::{RunConfig, checkpoint};
use crate::engine::{EngineConfig, ModelEngine};
use crate::model::{CharTokenizer, Model, Tokenizer};
use crate::pipeline::{self, RlSettings, SamplingMode};
use crate::rl::{AdvantageConfig, ClipConfig, KlPenalty, OverlongPenalty, PolicyLossConfig};
use crate::tasks::{Hooks, Problem, Split, Task, TaskRng, TokenText, problems};
use crate::train::{AdamW, SftReport, TrainError, Trainer};

/// The first train-split index RL draws problems from (SFT draws from 0 up, far below).
pub const RL_FIRST_PROBLEM: u64 = 1 << 20;

/// The seed of a run's evaluation samples, derived from `run.seed` (the runner and `treepo
/// eval` use the same, so eval reproduces the run's figures).
pub const fn eval_seed(run_seed: u64) -> u64 {
    run_seed ^ 0xe7a1
}

/// The sampler seed of RL step `step` (0-based) of a run whose RL sampler has seed `base`:
/// SplitMix64's finalizer of `base ^ step`, so resuming at step k draws what an uninterrupted
/// run would have drawn.
pub fn step_seed(base: u64, step: u64) -> u64 {
    let mut z = (base ^ step).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `base` with the task's stop symbol (else the model's EOS ids) as stop tokens and `seed`.
pub fn sampler_config(
    base: &TreeConfig,
    task: &dyn Task,
    tok: &Tokenizer,
    model: &Model,
    seed: u64,
) -> Result<TreeConfig, TrainError> {
    let mut c = base.clone();
    if let Some(stop) = task.stop_symbol() {
        let id = tok.token_id(&stop.to_string()).ok_or_else(|| {
            TrainError::Config(format!("the tokenizer has no token for the stop symbol {stop:?}"))
        })?;
        c.stop_token_ids.insert(id);
    }
    if c.stop_token_ids.is_empty() {
        c.stop_token_ids.extend(model.config().eos_token_ids.iter().copied());
    }
    if c.stop_token_ids.is_empty() {
        return Err(TrainError::Config(
            "no stop token: the task has no stop symbol and the model config no eos_token_id"
                .into(),
        ));
    }
    c.seed = seed;
    Ok(c)
}

/// The RL settings of `cfg` (algorithm, advantage options, clipped loss, mini-batches, ...)
/// around the RL sampler settings `sampler`.
pub fn rl_settings(cfg: &RunConfig, sampler: &TreeConfig) -> RlSettings {
    let (mode, estimator) = cfg.rl.algo.parts();
    // `rl.algo` picks the estimator; `[rl.advantage]` carries the estimators' options.
    let mut advantage: AdvantageConfig = cfg.rl.advantage.unwrap_or_default();
    advantage.estimator = estimator;
    let max_len = sampler
        .max_response_length
        .unwrap_or(sampler.tree_max_depth * sampler.tree_max_token_per_step);
    let loss = &cfg.rl.loss;
    RlSettings {
        sampling: mode,
        advantage,
        loss: PolicyLossConfig {
            clip: ClipConfig {
                clip_ratio_low: loss.clip_ratio_low,
                clip_ratio_high: loss.clip_ratio_high,
                clip_ratio_c: (loss.clip_ratio_c > 0.0).then_some(loss.clip_ratio_c),
            },
            aggregation: loss.loss_agg_mode,
            kl: (loss.kl_coef > 0.0).then_some(KlPenalty { coef: loss.kl_coef }),
            entropy_coef: loss.entropy_coef,
        },
        sampler: sampler.clone(),
        mini_batches: cfg.rl.mini_batches,
        packed: cfg.rl.packed && mode == SamplingMode::Tree,
        dynamic_sampling: usize::try_from(cfg.rl.dynamic_sampling_rounds).ok(),
        overlong: (cfg.rl.overlong_buffer > 0).then_some(OverlongPenalty {
            max_response_len: max_len,
            buffer_len: cfg.rl.overlong_buffer,
            factor: 1.0,
        }),
    }
}

/// Samples `problems` with `mode` on a fresh engine of `kv_pages` pages over `model` (the
/// engine borrows the model, so it lives for this call only). The queries' ids, which seed
/// their randomness, are `first_id, first_id + 1, ...`: a slice of a batch sampled with its
/// position in the batch as `first_id` draws what the whole batch would have drawn for it.
#[allow(clippy::too_many_arguments)]
pub fn sample_fresh(
    model: &Model,
    kv_pages: usize,
    cfg: &TreeConfig,
    hooks: &Hooks,
    tok: &Tokenizer,
    mode: SamplingMode,
    problems: &[Problem],
    first_id: u64,
) -> Result<RolloutTree, TrainError> {
    let pages = u32::try_from(kv_pages).map_err(|_| {
        TrainError::Config(format!("run.kv_pages = {kv_pages} does not fit in 32 bits"))
    })?;
    let mut engine = ModelEngine::new(model, EngineConfig::with_pages(pages))
        .map_err(|e| TrainError::Batch(format!("engine: {e}")))?;
    let sampler = TreeSampler::new(cfg.clone(), hooks.clone())
        .map_err(|e| TrainError::Config(format!("sampler: {e}")))?;
    pipeline::sample_ids(&mut engine, &sampler, mode, tok, problems, first_id)
}

/// A run's task, tokenizer and settings, for a process that samples or trains part of it.
pub struct RunSetup {
    /// The configuration.
    pub cfg: RunConfig,
    /// The task.
    pub task: Box<dyn Task>,
    /// Its tokenizer (the task's characters).
    pub tok: Tokenizer,
    /// The sampler's task hooks.
    pub hooks: Hooks,
    /// RL settings, the sampler seeded with `run.seed` ([`step_seed`] derives each step's).
    pub rl: RlSettings,
    /// The evaluation sampler.
    pub eval_sampler: TreeConfig,
}

impl RunSetup {
    /// Validates `cfg` and builds the task, tokenizer, hooks and settings, and the run's model
    /// on `dev`: the checkpoint `model.path` names (a checkpoint, a run directory or its
    /// `checkpoints/`, as [`checkpoint::resolve`] reads it; its tokenizer with it), else the
    /// config's fresh model (`run.seed`'s initialisation), as `treepo train` starts from.
    pub fn new(cfg: RunConfig, dev: &Device) -> Result<(Self, Model), TrainError> {
        cfg.validate()?;
        let task = cfg.task.build().map_err(|e| TrainError::Config(format!("task: {e}")))?;
        let (model, tok) = match &cfg.model.path {
            Some(path) => {
                let dir = checkpoint::resolve(path, "model.path")?;
                let model = Model::load(dev, &dir)?;
                let tok = Tokenizer::load(&dir, model.config().vocab_size)?;
                (model, tok)
            }
            None => {
                let symbols = task.vocabulary().ok_or_else(|| {
                    TrainError::Config(format!(
                        "task `{}` needs a real tokenizer: set model.path to a checkpoint with \
                         tokenizer.json",
                        task.name()
                    ))
                })?;
                let tok = Tokenizer::Char(CharTokenizer::new(symbols)?);
                let model = Model::random(dev, cfg.model.config(tok.vocab_size())?, cfg.run.seed)?;
                (model, tok)
            }
        };
        let text: Arc<dyn TokenText> = Arc::new(tok.clone());
        let hooks = task.hooks(text).map_err(|e| TrainError::Config(format!("task hooks: {e}")))?;
        let sampler = sampler_config(&cfg.rl.sampler, task.as_ref(), &tok, &model, cfg.run.seed)?;
        let mut eval_sampler = sampler.clone();
        eval_sampler.temperature = cfg.eval.temperature;
        eval_sampler.seed = eval_seed(cfg.run.seed);
        let rl = rl_settings(&cfg, &sampler);
        Ok((RunSetup { cfg, task, tok, hooks, rl, eval_sampler }, model))
    }

    /// The problems of RL step `step` (0-based): `rl.queries_per_step` consecutive train-split
    /// problems from [`RL_FIRST_PROBLEM`] on (what `treepo train` draws with dynamic sampling
    /// off).
    pub fn step_problems(&self, step: u64) -> Result<Vec<Problem>, TrainError> {
        let q = self.cfg.rl.queries_per_step as u64;
        let first = RL_FIRST_PROBLEM + step * q;
        problems(self.task.as_ref(), Split::Train, first..first + q)
            .map_err(|e| TrainError::Batch(e.to_string()))
    }

    /// The RL settings of step `step`: [`RunSetup::rl`] with the step's sampler seed.
    pub fn step_settings(&self, step: u64) -> RlSettings {
        let mut s = self.rl.clone();
        s.sampler.seed = step_seed(self.rl.sampler.seed, step);
        s
    }

    /// The run's `[sft]` phase on `trainer` (its optimizer replaced by the SFT one), from the
    /// first demonstration on, as `treepo train` runs it; `on_step(step, report)` after each.
    /// Leaves a fresh RL optimizer in `trainer`.
    pub fn sft(
        &self,
        trainer: &mut Trainer,
        mut on_step: impl FnMut(usize, &SftReport),
    ) -> Result<(), TrainError> {
        let cfg = &self.cfg;
        trainer.optim = AdamW::new(&trainer.model, cfg.sft.optim)?;
        let mut rng = TaskRng::for_query(cfg.run.seed, 0);
        let batch = cfg.sft.batch_size;
        for step in 0..cfg.sft.steps {
            let first = (step * batch) as u64;
            let reports = pipeline::sft_steps(
                trainer,
                self.task.as_ref(),
                &self.tok,
                first,
                batch,
                1,
                &mut rng,
                |_, _| {},
            )?;
            on_step(step, &reports[0]);
        }
        trainer.optim = AdamW::new(&trainer.model, cfg.rl.optim)?;
        Ok(())
    }

    /// The evaluation problems (`eval.problems` of the eval split).
    pub fn eval_problems(&self) -> Result<Vec<Problem>, TrainError> {
        problems(self.task.as_ref(), Split::Eval, 0..self.cfg.eval.problems as u64)
            .map_err(|e| TrainError::Batch(e.to_string()))
    }
}
