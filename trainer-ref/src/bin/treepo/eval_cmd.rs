//! `treepo eval`.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use treepo_trainer::model::Model;
use treepo_trainer::pipeline;
use treepo_trainer::tasks::{Split, TaskConfig, problems};

use crate::common;

/// Arguments of `treepo eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// Task name (parity-cot, countdown, arithmetic, math).
    #[arg(long)]
    task: String,
    /// Eval problems.
    #[arg(long, default_value_t = 128)]
    problems: usize,
    /// Samples per problem.
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Longest response in tokens.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Device (auto, cpu, cuda, wgpu).
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Runs the command.
pub fn run(a: EvalArgs) -> Result<()> {
    // Errors name the flags the user typed.
    if a.k == 0 {
        bail!("--k must be >= 1");
    }
    if a.problems == 0 {
        bail!("--problems must be >= 1 (accuracy over no problems is meaningless)");
    }
    if a.max_tokens == 0 || a.max_tokens > i32::MAX as usize {
        bail!("--max-tokens {} must be in [1, {}]", a.max_tokens, i32::MAX);
    }
    if !(a.temperature.is_finite() && a.temperature > 0.0) {
        bail!("--temperature {} must be finite and > 0", a.temperature);
    }
    let dev = common::device(&a.device).context("--device")?;
    let task = TaskConfig::from_name(&a.task)
        .map_err(|e| anyhow!("--task: {e}"))?
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    let model =
        Model::load(&dev, &a.model).with_context(|| format!("--model {}", a.model.display()))?;
    let tok = common::tokenizer(task.as_ref(), Some(&a.model), Some(model.config().vocab_size))?;
    let hooks = common::hooks(task.as_ref(), &tok)?;
    let mut base = treepo_sampler::TreeConfig::with_shape(
        a.max_tokens.div_ceil(16).max(1),
        16,
        2.min(a.k),
        a.k,
    );
    base.max_response_length = Some(a.max_tokens);
    base.temperature = a.temperature;
    let base = common::sampler_config(&base, task.as_ref(), &tok, &model, 0)?;
    let eval =
        problems(task.as_ref(), Split::Eval, 0..a.problems as u64).map_err(|e| anyhow!("{e}"))?;
    let mut sample = common::sample_fn(&tok, &hooks, 8192);
    let r = pipeline::evaluate(&mut sample, &model, &base, task.as_ref(), &tok, &eval, a.k)?;
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
