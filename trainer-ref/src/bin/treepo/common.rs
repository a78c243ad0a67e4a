//! What every command shares: device selection, building the task, tokenizer and model of a
//! run, the sampling closure over a fresh [`ModelEngine`], progress bars and Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use treepo_kernels::Device;

use crate::device::DeviceArg;
use treepo_sampler::{FinishReason, QueryStatus, RolloutTree, TreeConfig, TreeSampler};
use treepo_trainer::model::{CharTokenizer, Model, ModelConfig, Tokenizer};
use treepo_trainer::pipeline::SamplingMode;
use treepo_trainer::run::{RunConfig, TrainerState, setup};
use treepo_trainer::tasks::{Hooks, Problem, Split, Task, TokenText};
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

/// The error a run stopped by Ctrl-C returns once its checkpoint is saved: `main` prints it and
/// exits with 130 (the shell's code for SIGINT), so scripts see the run did not finish.
#[derive(Debug)]
pub struct Interrupted {
    /// Where the checkpoint is.
    pub checkpoints: std::path::PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The same command line, resuming (and no longer deleting the run).
        let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--force").collect();
        if !args.iter().any(|a| a == "--resume") {
            args.push("--resume".into());
        }
        write!(
            f,
            "interrupted: the run is resumable from its checkpoint in {}; continue it with\n  \
             treepo {}",
            self.checkpoints.display(),
            args.join(" ")
        )
    }
}

impl std::error::Error for Interrupted {}

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

/// Checks a device name without opening the device.
pub fn device_name(name: &str) -> Result<()> {
    DeviceArg::from_str(name, true)
        .map(|_| ())
        .map_err(|_| anyhow!("unknown device `{name}` (auto, cpu, cuda, wgpu)"))
}

/// Splits `--section.key=value` config overrides (a dotted key: no flag of the CLI has a dot)
/// from the other arguments; returns `(arguments, overrides as "section.key=value")`.
pub fn split_overrides(args: Vec<String>) -> Result<(Vec<String>, Vec<String>)> {
    let mut rest = Vec::with_capacity(args.len());
    let mut overrides = Vec::new();
    for a in args {
        match a.strip_prefix("--") {
            Some(o) if o.split('=').next().is_some_and(|k| k.contains('.')) => {
                if !o.contains('=') {
                    bail!("config override {a}: write it as --{o}=VALUE");
                }
                overrides.push(o.to_string());
            }
            _ => rest.push(a),
        }
    }
    Ok((rest, overrides))
}

/// Deletes the run directory `dir` for `--force`, refusing a directory that does not look like
/// a run (no `checkpoints/`, `metrics.jsonl` or `config.toml`): `--out` can name any path.
pub fn remove_run_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let is_run =
        ["checkpoints", "metrics.jsonl", "config.toml"].iter().any(|f| dir.join(f).exists());
    if !is_run {
        bail!(
            "--force: {} does not look like a run directory (no checkpoints/, metrics.jsonl or \
             config.toml); not deleting it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("--force: deleting {}", dir.display()))
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

/// The checkpoint a `--model`/`model.path` value names: a checkpoint directory itself
/// (`config.json` in it), a run directory (its `checkpoints/latest`) or a run's `checkpoints/`
/// directory (its `latest`). `what` is the flag or key, for the error.
pub fn checkpoint_dir(path: &Path, what: &str) -> Result<std::path::PathBuf> {
    Ok(treepo_trainer::run::checkpoint::resolve(path, what)?)
}

/// The model of a run: the checkpoint at `model.path`, or a fresh one.
pub fn model(dev: &Device, cfg: &RunConfig, task: &dyn Task) -> Result<(Model, Tokenizer)> {
    match &cfg.model.path {
        Some(path) => {
            let dir = &checkpoint_dir(path, "model.path")?;
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
    Ok(setup::sampler_config(base, task, tok, model, seed)?)
}

pub use treepo_trainer::run::setup::eval_seed;

/// Task hooks for the sampler (answer detection, repetition) over `tok`.
pub fn hooks(task: &dyn Task, tok: &Tokenizer) -> Result<Hooks> {
    let text: Arc<dyn TokenText> = Arc::new(tok.clone());
    task.hooks(text).map_err(|e| anyhow!("task hooks: {e}"))
}

/// KV-pool exhaustion seen by every [`sample_fn`] of this process since it started: a pool too
/// small for the rollouts shortens them (the sampler finishes paths with
/// [`FinishReason::KvExhausted`]) instead of failing, so the runner reads these counters around
/// each RL step, logs the difference and warns.
static KV_EXHAUSTED_EVENTS: AtomicU64 = AtomicU64::new(0);
static KV_EXHAUSTED_LEAVES: AtomicU64 = AtomicU64::new(0);
static KV_LIMITED_QUERIES: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the KV-exhaustion counters (see [`kv_exhaustion`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KvExhaustion {
    /// Engine operations that hit `KvExhausted` (the sampler's `Cost::kv_exhausted_events`).
    pub events: u64,
    /// Leaves finished early with `FinishReason::KvExhausted` (shortened rollouts).
    pub leaves: u64,
    /// Queries the pool limited (`QueryStatus::KvLimited`: possibly fewer than `w` leaves).
    pub queries: u64,
}

impl KvExhaustion {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: KvExhaustion) -> KvExhaustion {
        KvExhaustion {
            events: self.events - earlier.events,
            leaves: self.leaves - earlier.leaves,
            queries: self.queries - earlier.queries,
        }
    }

    /// Whether anything was exhausted.
    pub fn any(&self) -> bool {
        self.events + self.leaves + self.queries > 0
    }
}

/// The process's KV-exhaustion counters now.
pub fn kv_exhaustion() -> KvExhaustion {
    KvExhaustion {
        events: KV_EXHAUSTED_EVENTS.load(Ordering::Relaxed),
        leaves: KV_EXHAUSTED_LEAVES.load(Ordering::Relaxed),
        queries: KV_LIMITED_QUERIES.load(Ordering::Relaxed),
    }
}

/// Adds `tree`'s KV exhaustion to the process counters.
fn count_kv_exhaustion(tree: &RolloutTree) {
    let leaves = tree
        .queries()
        .iter()
        .flat_map(|q| q.leaves())
        .filter(|l| l.reason() == FinishReason::KvExhausted)
        .count();
    let queries = tree.queries().iter().filter(|q| q.status() == QueryStatus::KvLimited).count();
    KV_EXHAUSTED_EVENTS.fetch_add(tree.cost().kv_exhausted_events as u64, Ordering::Relaxed);
    KV_EXHAUSTED_LEAVES.fetch_add(leaves as u64, Ordering::Relaxed);
    KV_LIMITED_QUERIES.fetch_add(queries as u64, Ordering::Relaxed);
}

/// A sampling closure over a fresh engine per call (the engine borrows the model; the update
/// after it mutates the weights). KV exhaustion is counted (see [`kv_exhaustion`]).
pub fn sample_fn<'a>(
    tok: &'a Tokenizer,
    hooks: &'a Hooks,
    kv_pages: usize,
) -> impl FnMut(&Model, &TreeConfig, SamplingMode, &[Problem]) -> Result<RolloutTree, TrainError> + 'a
{
    move |model, cfg, mode, problems| {
        let tree = setup::sample_fresh(model, kv_pages, cfg, hooks, tok, mode, problems, 0)?;
        count_kv_exhaustion(&tree);
        Ok(tree)
    }
}

/// Everything about a run's configuration that can be checked without training, checked before
/// anything is created or trained: the config's own ranges ([`RunConfig::validate`]), the task,
/// the tokenizer, the RL and eval sampler settings as the samplers will see them, prompts plus
/// responses against the model's context, and the KV pool against one batch of prompts.
/// Every error names the config file (see [`set_config_origin`]).
pub fn preflight(cfg: &RunConfig) -> Result<()> {
    let origin = &config_origin();
    cfg.validate().with_context(|| origin.to_string())?;
    let task = task(cfg).with_context(|| format!("{origin}: [task]"))?;
    let (tok, max_positions, positions_key) = match &cfg.model.path {
        Some(path) => {
            let dir = &checkpoint_dir(path, "model.path").with_context(|| origin.to_string())?;
            let mc = ModelConfig::load(dir).with_context(|| {
                format!("{origin}: model.path: {}", dir.join("config.json").display())
            })?;
            let tok = tokenizer(task.as_ref(), Some(dir), Some(mc.vocab_size))
                .with_context(|| format!("{origin}: model.path"))?;
            let key = format!("max_position_embeddings of {}", dir.join("config.json").display());
            (tok, mc.max_position_embeddings, key)
        }
        None => {
            let tok = tokenizer(task.as_ref(), None, None)?;
            (tok, cfg.model.max_positions, "model.max_positions".to_string())
        }
    };
    // The samplers' own checks, on the settings they will get (stop ids do not affect them).
    let hooks = hooks(task.as_ref(), &tok)?;
    TreeSampler::new(cfg.rl.sampler.clone(), hooks.clone())
        .map_err(|e| anyhow!("{origin}: rl.sampler: {e}"))?;
    TreeSampler::new(cfg.eval_sampler(), hooks).map_err(|e| {
        anyhow!("{origin}: eval.k = {} with the rl.sampler settings: {e}", cfg.eval.k)
    })?;
    // The task API has no "longest prompt": measure the prompts evaluation will use (all of
    // them, up to 1024) and a sample of the train split where SFT (index 0) and RL (index 2^20)
    // start drawing. Every synthetic task draws its prompt sizes from the same ranges for every
    // index, so a sample of a few hundred reaches the maximum.
    let mut longest = 0usize;
    let eval_n = cfg.eval.problems.min(1024) as u64;
    let train = (0..128u64).chain((1 << 20)..(1 << 20) + 128);
    let indices = (0..eval_n).map(|i| (Split::Eval, i)).chain(train.map(|i| (Split::Train, i)));
    for (split, i) in indices {
        let p = task.generate(split, i).map_err(|e| anyhow!("{origin}: [task]: {e}"))?;
        let n = tok.encode(&p.prompt).map_err(|e| anyhow!("{origin}: [task]: {e}"))?.len();
        longest = longest.max(n);
    }
    let response = cfg.rl.sampler.max_response();
    if longest + response > max_positions {
        bail!(
            "{origin}: prompts of up to {longest} tokens plus the longest response \
             (rl.sampler.max_response_length or d·l = {response}) exceed {positions_key} = \
             {max_positions}: raise it or shorten the responses"
        );
    }
    // The pool must at least hold one batch's prompts and a page of response per query, or
    // sampling fails (or every rollout is cut) after SFT.
    let page = RunConfig::KV_PAGE_TOKENS;
    let per_query = longest.div_ceil(page) + 1;
    for (what, n) in
        [("rl.queries_per_step", cfg.rl.queries_per_step), ("eval.problems", cfg.eval.problems)]
    {
        let need = n.saturating_mul(per_query);
        if cfg.run.kv_pages < need {
            bail!(
                "{origin}: run.kv_pages = {} cannot hold one batch: {what} = {n} prompts of up to \
                 {longest} tokens need at least {need} pages of {page} tokens",
                cfg.run.kv_pages
            );
        }
    }
    Ok(())
}

/// The file the run's configuration came from, for error messages.
static CONFIG_ORIGIN: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Records the file the configuration about to be run came from (errors of [`preflight`] name
/// it).
pub fn set_config_origin(path: &Path) {
    if let Ok(mut o) = CONFIG_ORIGIN.lock() {
        *o = path.display().to_string();
    }
}

fn config_origin() -> String {
    match CONFIG_ORIGIN.lock() {
        Ok(o) if !o.is_empty() => o.clone(),
        _ => "the run's configuration".into(),
    }
}

/// Reads a checkpoint's `trainer_state.json`, naming the file in every error and refusing a
/// phase other than `sft` or `rl` (an unknown phase used to skip training silently).
pub fn saved_state(checkpoint: &Path) -> Result<TrainerState> {
    let path = checkpoint.join("trainer_state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let state: TrainerState = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a trainer state", path.display()))?;
    check_phase(&state, &path)?;
    Ok(state)
}

/// Refuses a trainer state whose phase is neither `sft` nor `rl`.
pub fn check_phase(state: &TrainerState, path: &Path) -> Result<()> {
    if state.phase != "sft" && state.phase != "rl" {
        bail!(
            "{}: phase = {:?} is not \"sft\" or \"rl\"; the checkpoint is damaged",
            path.display(),
            state.phase
        );
    }
    Ok(())
}

/// A run name (`--name`): one plain path component, so the run stays inside `run.out_dir`.
pub fn check_run_name(name: &str) -> Result<()> {
    let mut parts = Path::new(name).components();
    let plain =
        matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None));
    if !plain || name.contains(['/', '\\']) || name.starts_with('.') || name.trim().is_empty() {
        bail!(
            "--name {name:?} must be a plain directory name (no path separators, no `..`, not \
             absolute, not starting with `.`): the run directory is <run.out_dir>/<name>"
        );
    }
    Ok(())
}
