//! What every command shares: device selection, building the task, tokenizer and model of a
//! run, the sampling closure over a fresh [`ModelEngine`], progress bars and Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use treepo_kernels::Device;

use crate::device::DeviceArg;
use treepo_sampler::{RolloutTree, TreeConfig, TreeSampler};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::{CharTokenizer, Model, Tokenizer};
use treepo_trainer::pipeline::{self, SamplingMode};
use treepo_trainer::run::RunConfig;
use treepo_trainer::tasks::{Hooks, Problem, Task, TokenText};
use treepo_trainer::train::TrainError;

/// Set by Ctrl-C; long loops check it between steps, save a checkpoint and stop.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once).
pub fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C: finishing the current step, then saving a checkpoint (Ctrl-C again to quit now)"
        );
    });
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `auto`, `cpu`, `cuda` or `wgpu` → a device (see [`DeviceArg`]).
pub fn device(name: &str) -> Result<Device> {
    let arg = DeviceArg::from_str(name, true)
        .map_err(|_| anyhow!("unknown device `{name}` (auto, cpu, cuda, wgpu)"))?;
    arg.open()
}

/// The run's task.
pub fn task(cfg: &RunConfig) -> Result<Box<dyn Task>> {
    cfg.task.build().map_err(|e| anyhow!("task: {e}"))
}

/// The character tokenizer of a synthetic task (its vocabulary), or the tokenizer saved beside
/// a checkpoint.
pub fn tokenizer(
    task: &dyn Task,
    model_dir: Option<&Path>,
    vocab: Option<usize>,
) -> Result<Tokenizer> {
    if let (Some(dir), Some(v)) = (model_dir, vocab) {
        return Tokenizer::load(dir, v).with_context(|| format!("tokenizer of {}", dir.display()));
    }
    let symbols = task.vocabulary().ok_or_else(|| {
        anyhow!(
            "task `{}` needs a real tokenizer: set model.path to a checkpoint with tokenizer.json",
            task.name()
        )
    })?;
    Ok(Tokenizer::Char(CharTokenizer::new(symbols)?))
}

/// The model of a run: the checkpoint at `model.path`, or a fresh one.
pub fn model(dev: &Device, cfg: &RunConfig, task: &dyn Task) -> Result<(Model, Tokenizer)> {
    match &cfg.model.path {
        Some(dir) => {
            let m = Model::load(dev, dir).with_context(|| format!("model {}", dir.display()))?;
            let tok = tokenizer(task, Some(dir), Some(m.config().vocab_size))?;
            Ok((m, tok))
        }
        None => {
            let tok = tokenizer(task, None, None)?;
            let mc = cfg.model.config(tok.vocab_size())?;
            Ok((Model::random(dev, mc, cfg.run.seed)?, tok))
        }
    }
}

/// The sampler settings of `cfg` with the task's stop symbol and the model's context limit.
pub fn sampler_config(
    base: &TreeConfig,
    task: &dyn Task,
    tok: &Tokenizer,
    model: &Model,
    seed: u64,
) -> Result<TreeConfig> {
    let mut c = base.clone();
    if let Some(stop) = task.stop_symbol() {
        let id = tok
            .token_id(&stop.to_string())
            .ok_or_else(|| anyhow!("the tokenizer has no token for the stop symbol {stop:?}"))?;
        c.stop_token_ids.insert(id);
    }
    if c.stop_token_ids.is_empty() {
        c.stop_token_ids.extend(model.config().eos_token_ids.iter().copied());
    }
    if c.stop_token_ids.is_empty() {
        bail!("no stop token: the task has no stop symbol and the model config no eos_token_id");
    }
    c.seed = seed;
    Ok(c)
}

/// Task hooks for the sampler (answer detection, repetition) over `tok`.
pub fn hooks(task: &dyn Task, tok: &Tokenizer) -> Result<Hooks> {
    let text: Arc<dyn TokenText> = Arc::new(tok.clone());
    task.hooks(text).map_err(|e| anyhow!("task hooks: {e}"))
}

/// A sampling closure over a fresh engine per call (the engine borrows the model; the update
/// after it mutates the weights).
pub fn sample_fn<'a>(
    tok: &'a Tokenizer,
    hooks: &'a Hooks,
    kv_pages: usize,
) -> impl FnMut(&Model, &TreeConfig, SamplingMode, &[Problem]) -> Result<RolloutTree, TrainError> + 'a
{
    move |model, cfg, mode, problems| {
        let mut engine = ModelEngine::new(model, EngineConfig::with_pages(kv_pages as u32))
            .map_err(|e| TrainError::Batch(format!("engine: {e}")))?;
        let sampler = TreeSampler::new(cfg.clone(), hooks.clone())
            .map_err(|e| TrainError::Config(format!("sampler: {e}")))?;
        pipeline::sample(&mut engine, &sampler, mode, tok, problems)
    }
}

/// A progress bar with `len` steps and a message.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>6} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}
