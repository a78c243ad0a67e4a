//! `treepo`: the command line of treepo-rs — train small models with TreePO (tree-structured
//! rollouts) and its baselines. Each subcommand lives in its own module with its clap arguments
//! and a `run` function; errors are `anyhow` chains printed once, here.
//!
//! ```text
//! treepo demo                          SFT warm-up + TreePO RL on a synthetic task, CPU, minutes
//! treepo sft   --config FILE.toml      supervised warm-up only
//! treepo train --config FILE.toml [--algo treepo|grpo|grpo-tree|...|treegrpo|treerl|spo-tree]
//! treepo eval  --model DIR --task NAME avg@k, pass@k, maj@k, response length
//! treepo sample --model DIR --prompt TEXT [--tree | --sequential]
//! treepo bench                         engine throughput: tree vs sequential sampling
//! treepo experiment NAME               the paper's comparisons at small scale
//! treepo flow demo | experiment        TreeGRPO on a small flow-matching image generator
//! ```
//!
//! `demo`, `sft`, `train`, `experiment` and `flow` take `--section.key=value` overrides of any key of
//! the run's TOML configuration (`--rl.steps=10 --sft.optim.lr=1e-4`). A run stopped by Ctrl-C
//! saves a checkpoint, says how to resume it and exits with 130.

mod bench_cmd;
mod common;
mod demo;
mod device;
mod eval_cmd;
mod experiment;
mod flow_cmd;
mod flow_experiment;
mod progress;
mod runner;
mod sample;
mod sample_report;
mod train_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tree-structured RL rollouts of language models (TreePO).
#[derive(Parser, Debug)]
#[command(name = "treepo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// SFT warm-up then TreePO RL on a synthetic task; prints accuracy before and after RL.
    Demo(demo::DemoArgs),
    /// Supervised warm-up only (the `[sft]` section of a config).
    Sft(train_cmd::TrainArgs),
    /// A full run from a TOML config: SFT (unless the model is loaded), then RL.
    Train(train_cmd::TrainArgs),
    /// Evaluate a checkpoint: avg@k, pass@k, maj@k and response length.
    Eval(eval_cmd::EvalArgs),
    /// Sample a rollout tree (or the sequential baseline) for one prompt and print it.
    Sample(sample::SampleArgs),
    /// Engine throughput on this machine: decode tokens/s, tree vs sequential sampling.
    Bench(bench_cmd::BenchArgs),
    /// The paper's comparisons at small scale; writes a markdown report.
    Experiment(experiment::ExperimentArgs),
    /// TreeGRPO on a small rectified-flow image generator: `flow demo`, `flow experiment`.
    Flow(flow_cmd::FlowArgs),
}

fn main() -> ExitCode {
    let (args, overrides) = match common::split_overrides(std::env::args().collect()) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    common::install_ctrl_c();
    let no_overrides = |what: &str| -> anyhow::Result<()> {
        match overrides.first() {
            Some(o) => anyhow::bail!(
                "--{o}: `treepo {what}` has no run configuration to override (overrides apply \
                 to demo, sft, train and experiment)"
            ),
            None => Ok(()),
        }
    };
    let result = match cli.command {
        Command::Demo(a) => demo::run(a, &overrides),
        Command::Sft(a) => train_cmd::run(a, true, &overrides),
        Command::Train(a) => train_cmd::run(a, false, &overrides),
        Command::Eval(a) => no_overrides("eval").and_then(|()| eval_cmd::run(a)),
        Command::Sample(args) => no_overrides("sample").and_then(|()| sample::run(&args)),
        Command::Bench(a) => no_overrides("bench").and_then(|()| bench_cmd::run(a)),
        Command::Experiment(a) => experiment::run(a, &overrides),
        Command::Flow(a) => flow_cmd::run(a, &overrides),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<common::Interrupted>().is_some()
                || e.downcast_ref::<flow_cmd::Stopped>().is_some() =>
        {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
