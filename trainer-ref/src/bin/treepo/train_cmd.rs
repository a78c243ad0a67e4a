//! `treepo sft` and `treepo train`.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use treepo_trainer::pipeline::Algo;
use treepo_trainer::run::RunConfig;

use crate::common;
use crate::runner::{self, Phases};

/// Arguments of `treepo sft` / `treepo train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The run's TOML configuration.
    #[arg(long)]
    config: PathBuf,
    /// Override `rl.algo`.
    #[arg(long, value_parser = parse_algo)]
    algo: Option<Algo>,
    /// Run name (directory under `run.out_dir`); default: the config file's stem.
    #[arg(long)]
    name: Option<String>,
    /// Override `run.device` (auto, cpu, cuda, wgpu).
    #[arg(long)]
    device: Option<String>,
    /// Override `run.seed`.
    #[arg(long)]
    seed: Option<u64>,
    /// Continue the run from its last checkpoint (exact step, optimizer state and RNG).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete an existing run directory of this name and start over.
    #[arg(long)]
    force: bool,
}

fn parse_algo(s: &str) -> Result<Algo, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        let names: Vec<&str> = Algo::ALL.iter().map(|a| a.name()).collect();
        format!("unknown algorithm `{s}` ({})", names.join(", "))
    })
}

/// Runs the command (`sft_only`: `treepo sft`).
pub fn run(a: TrainArgs, sft_only: bool, overrides: &[String]) -> Result<()> {
    let name = match a.name {
        Some(n) => n,
        None => a
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("--name is required"))?,
    };
    // The run directory is <run.out_dir>/<name>: a name with `..`, a separator or a root would
    // put it (and its checkpoints, which a fresh run may overwrite) anywhere.
    common::check_run_name(&name)?;
    if let Some(d) = &a.device {
        common::device_name(d).map_err(|e| anyhow!("--device: {e}"))?;
    }
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("--config {}", a.config.display()))?;
    let mut cfg = RunConfig::from_toml_with_overrides(&text, &a.config, overrides)?;
    common::set_config_origin(&a.config);
    if let Some(algo) = a.algo {
        cfg.rl.algo = algo;
    }
    if let Some(d) = a.device {
        cfg.run.device = d;
    }
    if let Some(s) = a.seed {
        cfg.run.seed = s;
    }
    cfg.validate().with_context(|| a.config.display().to_string())?;
    let dir = cfg.run.out_dir.join(name);
    let phases = Phases { sft: cfg.model.path.is_none() || sft_only, rl: !sft_only };
    if a.force {
        common::remove_run_dir(&dir)?;
    }
    let s = runner::run(&cfg, &dir, phases, a.resume, false)?;
    if s.interrupted {
        return Err(common::Interrupted { checkpoints: dir.join("checkpoints") }.into());
    }
    if let (Some(b), Some(af)) = (&s.before, &s.after) {
        println!(
            "avg@{k}: {:.3} after SFT -> {:.3} after RL ({})",
            b.avg_at_k,
            af.avg_at_k,
            cfg.rl.algo.name(),
            k = b.k
        );
    }
    println!("run directory: {}", dir.display());
    Ok(())
}
