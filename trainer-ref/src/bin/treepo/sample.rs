//! `treepo sample`: load a checkpoint and its tokenizer, sample one prompt with TreePO (or the
//! sequential baseline) on the model's [`ModelEngine`], print every trajectory and the cost,
//! and write the tree as SVG/DOT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use treepo_sampler::{ConfigError, Query, TreeConfig, TreeSampler};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::{Model, Tokenizer};
use treepo_trainer::tasks::{Hooks, TaskConfig, TextAnswerHooks};

use crate::device::DeviceArg;

/// Arguments of `treepo sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint directory: config.json, model.safetensors (or a sharded index) and
    /// tokenizer.json or char_tokenizer.json.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    pub prompt: String,
    /// TreePO tree sampling (the default).
    #[arg(long, conflicts_with = "sequential")]
    pub tree: bool,
    /// The sequential baseline: `width` independent samples sharing the prompt.
    #[arg(long)]
    pub sequential: bool,
    /// Backend to run on.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// w: trajectories per prompt.
    #[arg(long, default_value_t = 16)]
    pub width: usize,
    /// b: children per active path per step.
    #[arg(long, default_value_t = 2)]
    pub branch: usize,
    /// d: segments per trajectory at most.
    #[arg(long, default_value_t = 6)]
    pub depth: usize,
    /// l: tokens per segment.
    #[arg(long, default_value_t = 16)]
    pub segment: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Root seed of every draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Task whose answer marker and stop symbol the hooks use (parity-cot, countdown,
    /// arithmetic, math). Default: `\boxed{}` / `####` answers and the model's EOS ids.
    #[arg(long)]
    pub task: Option<String>,
    /// KV pool pages of 16 tokens (default: enough for the whole tree).
    #[arg(long)]
    pub pages: Option<u32>,
    /// Write the rollout tree as SVG here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write the rollout tree as Graphviz DOT here.
    #[arg(long)]
    pub dot: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(a: &SampleArgs) -> anyhow::Result<()> {
    if !a.model.is_dir() {
        bail!(
            "model directory {} does not exist (expected config.json, model.safetensors and a tokenizer)",
            a.model.display()
        );
    }
    let dev = a.device.open()?;
    let model = Model::load(&dev, &a.model)
        .with_context(|| format!("cannot load the model from {}", a.model.display()))?;
    let cfg = model.config();
    let tok = Tokenizer::load(&a.model, cfg.vocab_size)
        .with_context(|| format!("cannot load the tokenizer of {}", a.model.display()))?;
    let prompt = tok.encode(&a.prompt).context("cannot encode the prompt")?;
    if prompt.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    let (hooks, stop) = hooks(a.task.as_deref(), &tok)?;
    if a.depth.checked_mul(a.segment).is_none_or(|n| n > i32::MAX as usize) {
        bail!("--depth {} × --segment {} is far too long a response", a.depth, a.segment);
    }
    let mut config = TreeConfig::with_shape(a.depth, a.segment, a.branch, a.width);
    config.temperature = a.temperature;
    config.top_k = a.top_k;
    config.top_p = a.top_p;
    config.seed = a.seed;
    config.stop_token_ids = cfg.eos_token_ids.iter().copied().chain(stop).collect();
    if config.stop_token_ids.is_empty() {
        eprintln!(
            "note: no stop token (no eos_token_id in config.json and no --task): paths run to depth d"
        );
    }
    // The flags the user typed, not the sampler's config keys.
    config.validate().map_err(|e| anyhow::anyhow!("{}", flag_error(&e)))?;
    let context = prompt.len() + config.max_response();
    if context >= cfg.max_position_embeddings {
        bail!(
            "prompt ({} tokens) + d·l ({}) reaches the model's max_position_embeddings ({}); \
             lower --depth or --segment",
            prompt.len(),
            config.max_response(),
            cfg.max_position_embeddings
        );
    }
    let sampler = TreeSampler::new(config, hooks).context("invalid sampling configuration")?;
    for w in sampler.warnings() {
        eprintln!("warning: {w}");
    }
    let pages = a.pages.unwrap_or_else(|| default_pages(prompt.len(), sampler.config()));
    let mut engine = ModelEngine::new(&model, EngineConfig::with_pages(pages))
        .context("cannot build the engine")?;
    let queries = [Query::new(0, &prompt)];
    let start = Instant::now();
    let tree = if a.sequential {
        sampler.sample_sequential(&mut engine, &queries)
    } else {
        sampler.sample(&mut engine, &queries)
    }
    .context("sampling failed")?;
    let secs = start.elapsed().as_secs_f64();
    crate::sample_report::print(&tree, &tok, &engine, a, secs);
    if let Some(p) = &a.svg {
        std::fs::write(p, tree.to_svg())
            .with_context(|| format!("cannot write {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &a.dot {
        std::fs::write(p, tree.to_dot())
            .with_context(|| format!("cannot write {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// A sampler configuration error in terms of this command's flags.
pub fn flag_error(e: &ConfigError) -> String {
    match e {
        ConfigError::ZeroSegmentLength => "--segment must be >= 1".into(),
        ConfigError::ZeroWidth => "--width must be >= 1".into(),
        ConfigError::ZeroBranchFactor => "--branch must be >= 1".into(),
        ConfigError::ZeroDepth => "--depth must be >= 1".into(),
        ConfigError::BranchFactorAboveWidth { b, w } => {
            format!("--branch {b} exceeds --width {w}; set --branch <= --width")
        }
        ConfigError::InvalidTemperature(t) => {
            format!("--temperature {t} must be finite and >= 0 (0 = greedy)")
        }
        ConfigError::InvalidTopP(p) => format!("--top-p {p} must be in (0, 1]"),
        other => other.to_string(),
    }
}

/// The task's hooks and stop symbol, or text hooks with no extra stop id.
fn hooks(task: Option<&str>, tok: &Tokenizer) -> anyhow::Result<(Hooks, Option<u32>)> {
    let text = Arc::new(tok.clone());
    let Some(name) = task else {
        return Ok((Hooks::Text(TextAnswerHooks::new(text)), None));
    };
    let task = TaskConfig::from_name(name)?.build()?;
    let hooks =
        task.hooks(text).with_context(|| format!("the tokenizer does not fit task {name}"))?;
    let stop = match task.stop_symbol() {
        Some(c) => Some(tok.token_id(&c.to_string()).with_context(|| {
            format!("the tokenizer has no token for the stop symbol {c:?} of task {name}")
        })?),
        None => None,
    };
    Ok((hooks, stop))
}

/// Pages for the worst case: the prompt, every leaf's whole response and a tail copy per fork,
/// twice over for fallback re-openings (16-token pages).
fn default_pages(prompt: usize, c: &TreeConfig) -> u32 {
    let per_leaf = c.max_response().div_ceil(16) + 2;
    let pages = prompt.div_ceil(16) + 2 * c.width() * per_leaf;
    pages.clamp(64, i32::MAX as usize / 16) as u32
}
