//! `treepo`: the command line of treepo-rs. Each subcommand lives in its own module with its
//! clap arguments and a `run` function; errors are `anyhow` chains printed once, here.

mod device;
mod sample;
mod sample_report;

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
    /// Sample a rollout tree (or the sequential baseline) for one prompt and print it.
    Sample(sample::SampleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sample(args) => sample::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
