//! `treepo demo`: the README's main job. A small model learns a synthetic reasoning task from
//! scratch on the CPU — supervised warm-up, then TreePO RL — and the accuracy before and after
//! RL is printed with the path of the report (metrics, plots, checkpoints).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use treepo_trainer::run::RunConfig;

use crate::common::Interrupted;
use crate::runner::{self, Phases};

/// The demo's configuration (`configs/demo.toml`).
const DEMO_CONFIG: &str = include_str!("../../../../configs/demo.toml");

/// Arguments of `treepo demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// A shortened run (CI smoke test, about a minute): fewer steps and problems.
    #[arg(long)]
    quick: bool,
    /// Where the run directory goes.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Device (auto, cpu, cuda, wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue an interrupted demo from its last checkpoint.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete an existing run directory of the demo and start over.
    #[arg(long)]
    force: bool,
}

/// Runs the demo.
pub fn run(a: DemoArgs, overrides: &[String]) -> Result<()> {
    let origin = std::path::Path::new("configs/demo.toml");
    let mut cfg = RunConfig::from_toml_with_overrides(DEMO_CONFIG, origin, overrides)?;
    crate::common::set_config_origin(origin);
    cfg.run.device = a.device;
    cfg.run.seed = a.seed;
    cfg.run.out_dir = a.out;
    let name = if a.quick { "demo-quick" } else { "demo" };
    if a.quick {
        cfg.sft.steps = 60;
        cfg.rl.steps = 4;
        cfg.rl.queries_per_step = 8;
        cfg.eval.problems = 32;
        cfg.eval.k = 2;
        cfg.eval.every = 2;
    }
    cfg.validate()?;
    let dir = cfg.run.out_dir.join(name);
    if a.force {
        crate::common::remove_run_dir(&dir)?;
    }
    let s = runner::run(&cfg, &dir, Phases { sft: true, rl: true }, a.resume, false)?;
    if s.interrupted {
        return Err(Interrupted { checkpoints: dir.join("checkpoints") }.into());
    }
    if let (Some(b), Some(af)) = (&s.before, &s.after) {
        println!();
        println!(
            "task {}: accuracy (avg@{k} on {} held-out problems)",
            cfg.task.kind().name(),
            b.problems,
            k = b.k
        );
        println!("  after SFT : {:.3}   (mean response length {:.1})", b.avg_at_k, b.response_len);
        println!(
            "  after RL  : {:.3}   (mean response length {:.1})",
            af.avg_at_k, af.response_len
        );
        println!(
            "  RL sampled {} tokens in {:.1} s; whole demo {:.1} s",
            s.rl_tokens_decoded, s.rl_sample_seconds, s.seconds
        );
    }
    if !s.before_examples.is_empty() && s.before_examples.len() == s.after_examples.len() {
        println!();
        println!("sampled answers (one per problem; ✓ = scored correct):");
        for (b, af) in s.before_examples.iter().zip(&s.after_examples) {
            let mark = |c: bool| if c { "✓" } else { "✗" };
            println!("  prompt    {:?}", b.prompt);
            println!("  after SFT {} {:?}", mark(b.correct), b.response);
            println!("  after RL  {} {:?}", mark(af.correct), af.response);
        }
    }
    println!("report: {} (metrics.jsonl, *.svg plots, checkpoints/)", dir.display());
    Ok(())
}
