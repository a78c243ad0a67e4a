//! `treepo eval`: avg@k, pass@k, maj@k and response length of a checkpoint.
//!
//! A checkpoint saved by a run carries that run's configuration (`run.toml`): by default eval
//! uses its task (with the task's knobs: parity-cot's bit count, countdown's numbers), its eval
//! settings (problems, k, temperature, the sampler limits and seed) and its device, so the
//! figure it prints is the one the run logged. A flag overrides one setting and says so.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use treepo_trainer::model::Model;
use treepo_trainer::pipeline;
use treepo_trainer::run::{RunConfig, checkpoint};
use treepo_trainer::tasks::{Split, TaskConfig, problems};

use crate::common;

/// Arguments of `treepo eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint directory (config.json, model.safetensors, tokenizer), a run directory
    /// (its latest checkpoint) or a run's checkpoints/ directory.
    #[arg(long)]
    model: PathBuf,
    /// Task name (parity-cot, countdown, arithmetic, math). Default: the task the checkpoint
    /// was trained on.
    #[arg(long)]
    task: Option<String>,
    /// JSONL file of {"question", "answer"} lines to evaluate on (`--task math`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Eval problems. Default: the run's eval.problems, else 128.
    #[arg(long)]
    problems: Option<usize>,
    /// Samples per problem. Default: the run's eval.k, else 8.
    #[arg(long)]
    k: Option<usize>,
    /// Sampling temperature. Default: the run's eval.temperature, else 1.
    #[arg(long)]
    temperature: Option<f32>,
    /// Longest response in tokens. Default: the run's rl.sampler limit, else 64.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Seed of the samples. Default: the run's eval seed, else 0.
    #[arg(long)]
    seed: Option<u64>,
    /// Device (auto, cpu, cuda, wgpu). Default: the run's device, else auto.
    #[arg(long)]
    device: Option<String>,
}

/// Runs the command.
pub fn run(a: EvalArgs) -> Result<()> {
    check_flags(&a)?;
    let dir = common::checkpoint_dir(&a.model, "--model")?;
    let saved = checkpoint::run_config(&dir)?;
    let task_cfg = task_config(&a, saved.as_ref(), &dir)?;
    let device = a.device.clone().or_else(|| saved.as_ref().map(|c| c.run.device.clone()));
    let dev = common::device(device.as_deref().unwrap_or("auto")).context("--device")?;
    let task = task_cfg.build().map_err(|e| anyhow!("task {}: {e}", task_cfg.kind()))?;
    let model = Model::load(&dev, &dir).with_context(|| format!("--model {}", dir.display()))?;
    let tok = common::tokenizer(task.as_ref(), Some(&dir), Some(model.config().vocab_size))?;
    let hooks = common::hooks(task.as_ref(), &tok)?;

    // The run's eval settings, each overridable.
    let note = |flag: &str, value: String, key: &str, was: String| {
        if value != was {
            eprintln!("note: {flag} {value} overrides the run's {key} = {was}");
        }
    };
    let (mut base, seed, problems_n, k, kv_pages) = match &saved {
        Some(c) => {
            if let Some(v) = a.problems {
                note("--problems", v.to_string(), "eval.problems", c.eval.problems.to_string());
            }
            if let Some(v) = a.k {
                note("--k", v.to_string(), "eval.k", c.eval.k.to_string());
            }
            if let Some(v) = a.temperature {
                let was = c.eval.temperature.to_string();
                note("--temperature", v.to_string(), "eval.temperature", was);
            }
            let seed = a.seed.unwrap_or(common::eval_seed(c.run.seed));
            let (n, k) = (a.problems.unwrap_or(c.eval.problems), a.k.unwrap_or(c.eval.k));
            (c.eval_sampler(), seed, n, k, c.run.kv_pages)
        }
        None => {
            let k = a.k.unwrap_or(8);
            let base = treepo_sampler::TreeConfig::with_shape(4, 16, 2.min(k), k);
            (base, a.seed.unwrap_or(0), a.problems.unwrap_or(128), k, 8192)
        }
    };
    if let Some(t) = a.temperature {
        base.temperature = t;
    }
    if let Some(max) = a.max_tokens.or(saved.is_none().then_some(64)) {
        base.tree_max_depth = max.div_ceil(base.tree_max_token_per_step);
        base.max_response_length = Some(max);
    }
    let base = common::sampler_config(&base, task.as_ref(), &tok, &model, seed)?;
    let context = model.config().max_position_embeddings;
    if base.max_response() >= context {
        bail!(
            "responses of up to {} tokens do not fit the model's context ({context} positions): \
             lower --max-tokens",
            base.max_response()
        );
    }
    let eval =
        problems(task.as_ref(), Split::Eval, 0..problems_n as u64).map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "eval {}: task {}, {problems_n} problems × {k} samples, temperature {}, seed {seed:#x}, \
         device {}",
        dir.display(),
        task.name(),
        base.temperature,
        dev.description()
    );
    let mut sample = common::sample_fn(&tok, &hooks, kv_pages);
    let kv_before = common::kv_exhaustion();
    let r = pipeline::evaluate(&mut sample, &model, &base, task.as_ref(), &tok, &eval, k)?;
    let kv = common::kv_exhaustion().since(kv_before);
    if kv.any() {
        eprintln!(
            "warning: the KV pool ({kv_pages} pages) ran out: {} samples cut short, {} problems \
             limited; the accuracy is underestimated",
            kv.leaves, kv.queries
        );
    }
    println!(
        "{} problems × {} samples: avg@{k} {:.4}  pass@{k} {:.4}  maj@{k} {:.4}  length {:.1}  ({} tokens, {:.1} s)",
        r.problems,
        r.k,
        r.avg_at_k,
        r.pass_at_k,
        r.maj_at_k,
        r.response_len,
        r.tokens_decoded,
        r.seconds,
        k = r.k
    );
    Ok(())
}

/// Range checks of the flags given, naming them.
fn check_flags(a: &EvalArgs) -> Result<()> {
    if a.k == Some(0) {
        bail!("--k must be >= 1");
    }
    if a.problems == Some(0) {
        bail!("--problems must be >= 1 (accuracy over no problems is meaningless)");
    }
    if let Some(m) = a.max_tokens
        && (m == 0 || m > i32::MAX as usize)
    {
        bail!("--max-tokens {m} must be in [1, {}]", i32::MAX);
    }
    if let Some(t) = a.temperature
        && !(t.is_finite() && t > 0.0)
    {
        bail!("--temperature {t} must be finite and > 0");
    }
    if let Some(d) = &a.device {
        common::device_name(d).context("--device")?;
    }
    Ok(())
}

/// The task to evaluate on: the checkpoint's own (with its knobs) unless `--task` names
/// another; `--data` points `math` at a file.
fn task_config(
    a: &EvalArgs,
    saved: Option<&RunConfig>,
    dir: &std::path::Path,
) -> Result<TaskConfig> {
    let mut cfg = match (&a.task, saved) {
        (None, Some(c)) => c.task.clone(),
        (None, None) => bail!(
            "{}: the checkpoint does not record its task (no {}: saved by an older treepo, or \
             not by a run); pass --task NAME",
            dir.display(),
            checkpoint::RUN_CONFIG_FILE
        ),
        (Some(name), Some(c)) if c.task.kind().name() == name => c.task.clone(),
        (Some(name), saved) => {
            let cfg = TaskConfig::from_name(name).map_err(|e| anyhow!("--task: {e}"))?;
            if let Some(c) = saved {
                eprintln!(
                    "warning: --task {name} overrides the task the checkpoint was trained on ({})",
                    c.task.kind()
                );
            }
            cfg
        }
    };
    match (&mut cfg, &a.data) {
        (TaskConfig::Math(m), Some(data)) => {
            m.eval_file = Some(data.clone());
            m.train_file.get_or_insert_with(|| data.clone());
        }
        (TaskConfig::Math(m), None) if m.train_file.is_none() && m.eval_file.is_none() => {
            bail!("--task math needs --data FILE (a JSONL file of {{\"question\", \"answer\"}})")
        }
        (other, Some(_)) if !matches!(other, TaskConfig::Math(_)) => {
            bail!("--data is for --task math; task {} makes its own problems", other.kind())
        }
        _ => {}
    }
    Ok(cfg)
}
