//! `treepo bench`: the sampling engine on this machine — decode throughput of batched leaves,
//! and TreePO tree sampling against the sequential baseline on the same engine and model
//! (trajectories/s and tokens/s, and their ratios, measured in one run).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use treepo_sampler::{NoHooks, Query, RolloutTree, TreeConfig, TreeSampler};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::{Model, ModelConfig};

use crate::common;

/// Arguments of `treepo bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A checkpoint to benchmark (default: a random model of the demo's size).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Device (auto, cpu, cuda, wgpu).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Queries sampled together.
    #[arg(long, default_value_t = 8)]
    queries: usize,
    /// w: trajectories per query.
    #[arg(long, default_value_t = 16)]
    width: usize,
    /// b: branch factor.
    #[arg(long, default_value_t = 2)]
    branch: usize,
    /// d: segments per trajectory.
    #[arg(long, default_value_t = 14)]
    depth: usize,
    /// l: tokens per segment.
    #[arg(long, default_value_t = 8)]
    segment: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 16)]
    prompt: usize,
    /// Repetitions of each measurement (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// A stop id that a random model emits now and then, so paths end at varied lengths.
const STOP: u32 = 1;

pub(crate) fn measure(
    model: &Model,
    cfg: &TreeConfig,
    prompts: &[Vec<u32>],
    tree: bool,
) -> Result<(f64, RolloutTree)> {
    let mut engine = ModelEngine::new(model, EngineConfig::with_pages(16384))?;
    let sampler = TreeSampler::new(cfg.clone(), NoHooks)?;
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let queries = Query::batch(&refs);
    let t = Instant::now();
    let out = if tree {
        sampler.sample(&mut engine, &queries)?
    } else {
        sampler.sample_sequential(&mut engine, &queries)?
    };
    Ok((t.elapsed().as_secs_f64(), out))
}

/// Runs the command.
pub fn run(a: BenchArgs) -> Result<()> {
    let dev = common::device(&a.device)?;
    let model = match &a.model {
        Some(dir) => Model::load(&dev, dir)?,
        None => Model::random(&dev, ModelConfig::tiny(32), 7)?,
    };
    let v = model.config().vocab_size as u32;
    println!(
        "device {}; model {} params; {} queries × w={} b={} d={} l={}, prompt {} tokens",
        dev.description(),
        model.layout().total,
        a.queries,
        a.width,
        a.branch,
        a.depth,
        a.segment,
        a.prompt
    );
    let prompts: Vec<Vec<u32>> = (0..a.queries)
        .map(|q| (0..a.prompt).map(|i| 2 + ((q * 31 + i * 7) as u32 % (v - 2))).collect())
        .collect();
    let mut cfg = TreeConfig::with_shape(a.depth, a.segment, a.branch, a.width);
    cfg.stop_token_ids.insert(STOP);
    cfg.temperature = 1.0;
    println!(
        "{:<12} {:>9} {:>12} {:>12} {:>13} {:>12}",
        "sampling", "seconds", "trajectories", "traj/s", "resp tokens/s", "decoded tok"
    );
    let mut best = [(f64::MAX, 0usize, 0usize, 0usize); 2];
    for _ in 0..a.repeat.max(1) {
        for (i, tree) in [true, false].into_iter().enumerate() {
            let (secs, out) = measure(&model, &cfg, &prompts, tree)?;
            let leaves = out.total_leaves();
            let resp = out.total_response_tokens();
            if secs < best[i].0 {
                best[i] = (secs, leaves, resp, out.cost().tokens_decoded);
            }
        }
    }
    for (i, name) in ["tree", "sequential"].iter().enumerate() {
        let (s, l, r, d) = best[i];
        println!(
            "{name:<12} {s:>9.3} {l:>12} {:>12.1} {:>13.1} {d:>12}",
            l as f64 / s,
            r as f64 / s
        );
    }
    let (t, q) = (best[0], best[1]);
    println!(
        "tree / sequential: trajectories/s ×{:.2}, response tokens/s ×{:.2}, tokens decoded per response token {:.3} vs {:.3}",
        (t.1 as f64 / t.0) / (q.1 as f64 / q.0),
        (t.2 as f64 / t.0) / (q.2 as f64 / q.0),
        t.3 as f64 / t.2.max(1) as f64,
        q.3 as f64 / q.2.max(1) as f64
    );
    Ok(())
}
