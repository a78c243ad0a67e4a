//! `treepo sample`: load a checkpoint and its tokenizer, sample one prompt with TreePO (or the
//! sequential baseline) on the model's [`ModelEngine`], print every trajectory and the cost,
//! and write the tree as SVG/DOT.
//!
//! A checkpoint saved by a run carries its configuration (`run.toml`): the task (answer marker,
//! stop symbol) and the sampler shape (`w`, `b`, `d`, `l`, the response limit) default to the
//! run's. Otherwise the defaults are w = 16, b = 2, l = 16 and as many segments (at most 6) as
//! the model's context leaves after the prompt.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use treepo_sampler::{ConfigError, Query, TreeConfig, TreeSampler};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::{Model, Tokenizer};
use treepo_trainer::run::{RunConfig, checkpoint};
use treepo_trainer::tasks::{Hooks, TaskConfig, TextAnswerHooks};

use crate::device::DeviceArg;

/// Arguments of `treepo sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A checkpoint directory (config.json, model.safetensors or a sharded index, and
    /// tokenizer.json or char_tokenizer.json), a run directory (its latest checkpoint) or a
    /// run's checkpoints/ directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt text.
    #[arg(long, required_unless_present = "prompt_ids", conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// The prompt as token ids, comma-separated (e.g. `--prompt-ids 1,15,4`).
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// TreePO tree sampling (the default).
    #[arg(long, conflicts_with = "sequential")]
    pub tree: bool,
    /// The sequential baseline: `width` independent samples sharing the prompt.
    #[arg(long)]
    pub sequential: bool,
    /// Backend to run on.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// w: trajectories per prompt [default: the run's, else 16].
    #[arg(long)]
    pub width: Option<usize>,
    /// b: children per active path per step [default: the run's, else 2].
    #[arg(long)]
    pub branch: Option<usize>,
    /// d: segments per trajectory at most [default: the run's, else as many as fit, up to 6].
    #[arg(long)]
    pub depth: Option<usize>,
    /// l: tokens per segment [default: the run's, else 16].
    #[arg(long)]
    pub segment: Option<usize>,
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
    /// arithmetic, math) [default: the run's; without one, `\boxed{}` / `####` answers and the
    /// model's EOS ids].
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

/// The tree shape a run of `treepo sample` used (flags, the run's config or the defaults).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// w.
    pub width: usize,
    /// b.
    pub branch: usize,
    /// d.
    pub depth: usize,
    /// l.
    pub segment: usize,
}

/// Runs the subcommand.
pub fn run(a: &SampleArgs) -> anyhow::Result<()> {
    let dir = crate::common::checkpoint_dir(&a.model, "--model")?;
    let saved = checkpoint::run_config(&dir)?;
    let dev = a.device.open()?;
    let model = Model::load(&dev, &dir)
        .with_context(|| format!("cannot load the model from {}", dir.display()))?;
    let cfg = model.config();
    let tok = Tokenizer::load(&dir, cfg.vocab_size)
        .with_context(|| format!("cannot load the tokenizer of {}", dir.display()))?;
    let prompt = match (&a.prompt, &a.prompt_ids) {
        (_, Some(ids)) => {
            if let Some(bad) = ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                bail!(
                    "--prompt-ids: token {bad} is outside the vocabulary (size {})",
                    cfg.vocab_size
                );
            }
            ids.clone()
        }
        (Some(text), None) => tok.encode(text).context("--prompt: cannot encode the prompt")?,
        (None, None) => bail!("give --prompt TEXT or --prompt-ids 1,2,3"),
    };
    if prompt.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    let (hooks, stop) = hooks(a.task.as_deref(), saved.as_ref(), &tok)?;
    let (shape, response_limit) =
        shape(a, saved.as_ref(), prompt.len(), cfg.max_position_embeddings)?;
    let mut config = TreeConfig::with_shape(shape.depth, shape.segment, shape.branch, shape.width);
    config.max_response_length = response_limit;
    config.temperature = a.temperature;
    config.top_k = a.top_k;
    config.top_p = a.top_p;
    config.seed = a.seed;
    config.stop_token_ids = cfg.eos_token_ids.iter().copied().chain(stop).collect();
    if config.stop_token_ids.is_empty() {
        eprintln!(
            "note: no stop token (no eos_token_id in config.json, no --task and no run.toml): \
             paths run to depth d"
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
    let shown = a.prompt.clone().unwrap_or_else(|| tok.decode(&prompt).unwrap_or_default());
    crate::sample_report::print(&tree, &tok, &engine, a, shape, &shown, secs);
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

/// The tree shape and response limit: each flag given, else the run's `rl.sampler`, else the
/// defaults, with `d` (when not given) lowered to what the model's context leaves after the
/// prompt. Errors name the flag to change.
fn shape(
    a: &SampleArgs,
    saved: Option<&RunConfig>,
    prompt: usize,
    positions: usize,
) -> anyhow::Result<(Shape, Option<usize>)> {
    let run = saved.map(|c| &c.rl.sampler);
    let pick = |flag: Option<usize>, of_run: fn(&TreeConfig) -> usize, default: usize| {
        flag.or(run.map(of_run)).unwrap_or(default)
    };
    let segment = pick(a.segment, |c| c.tree_max_token_per_step, 16);
    let width = pick(a.width, |c| c.tree_max_width, 16);
    // The run's (or the default) b is lowered to a --width below it; a --branch typed above
    // --width is the user's error, reported in flag terms.
    let branch = match a.branch {
        Some(b) => b,
        None => pick(None, |c| c.tree_fixed_step_div, 2).min(width.max(1)),
    };
    let limit = if a.depth.is_none() && a.segment.is_none() {
        run.and_then(|c| c.max_response_length)
    } else {
        None
    };
    let depth = match a.depth {
        Some(d) => d,
        None => {
            let wanted = run.map_or(6, |c| c.tree_max_depth);
            // Room for the response: the context minus the prompt (one position spare).
            let room = positions.saturating_sub(prompt + 1);
            let fits = room / segment.max(1);
            if fits == 0 {
                bail!(
                    "the prompt ({prompt} tokens) leaves {room} of the model's {positions} \
                     positions, less than one segment of {segment}: lower --segment or shorten \
                     the prompt"
                );
            }
            if fits < wanted {
                eprintln!(
                    "note: d = {fits} segments of {segment} tokens (the model's context of \
                     {positions} positions leaves {room} after the prompt); set --depth to \
                     choose"
                );
            }
            wanted.min(fits)
        }
    };
    if depth.checked_mul(segment).is_none_or(|n| n > i32::MAX as usize) {
        bail!("--depth {depth} × --segment {segment} is far too long a response");
    }
    let limit = limit.filter(|&m| m < depth * segment);
    Ok((Shape { width, branch, depth, segment }, limit))
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

/// The task's hooks and stop symbol (the `--task` named, else the run's), or text hooks with no
/// extra stop id.
fn hooks(
    task: Option<&str>,
    saved: Option<&RunConfig>,
    tok: &Tokenizer,
) -> anyhow::Result<(Hooks, Option<u32>)> {
    let text = Arc::new(tok.clone());
    let task = match (task, saved) {
        (Some(name), Some(c)) if c.task.kind().name() == name => c.task.build()?,
        (Some(name), _) => TaskConfig::from_name(name)?.build()?,
        (None, Some(c)) => c.task.build().context("the run's task (run.toml)")?,
        (None, None) => return Ok((Hooks::Text(TextAnswerHooks::new(text)), None)),
    };
    let name = task.name();
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
