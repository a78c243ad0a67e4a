//! Our engine against its PyTorch peer, Hugging Face `generate`, on the same checkpoint and the
//! same prompts, in one process tree: this bench writes a random tiny model (`ModelConfig::tiny`,
//! Qwen2, the synthetic tasks' 21-symbol vocabulary) as an HF checkpoint and the prompts as JSON
//! into a temporary directory, times our engine's sequential sampling (w samples per prompt,
//! `num_return_sequences` in HF terms) and TreePO's tree sampling on the CPU, then runs
//! `scripts/peers/hf_generate.py --model DIR --prompts FILE --device cpu` with the Python of
//! `TREEPO_PY` (default `python3`) and prints the ratios. 4 prompts of 16 tokens, w = 16 and
//! 64, d·l = 14·8 = 112 new tokens per sample, no stop token (every path runs the full length,
//! so both sides produce the same tokens), temperature 1, no top-k. Medians of 5 runs (3 for
//! HF), wall clock around the sampler call / `generate`.
//!
//! Without PyTorch and transformers the peer prints `SKIP hf_generate: …` and so does this
//! bench (loudly, with the reason); the engine's figures are still printed.
//!
//! Run: `cargo bench -p treepo-benches --bench hf_peer`
//! (`TREEPO_PY=~/.cache/treepo-rs/py-venv/bin/python` for the test venv of the Python package).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use treepo_kernels::Device;
use treepo_sampler::{Query, RolloutTree, TreeConfig, TreeSampler};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::{self, Model, ModelConfig};
use treepo_trainer::tasks::{CharVocab, Hooks, TaskConfig};

const PROMPTS: usize = 4;
const PROMPT_LEN: usize = 16;
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of one sampling call (tree or sequential) on a fresh engine, and its tree.
fn sample_once(
    model: &Model,
    sampler: &TreeSampler<Hooks>,
    prompts: &[Vec<u32>],
    sequential: bool,
) -> (f64, RolloutTree) {
    let mut e = ModelEngine::new(model, EngineConfig::with_pages(4096)).expect("engine");
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let queries = Query::batch(&refs);
    let t = Instant::now();
    let tree = if sequential {
        sampler.sample_sequential(&mut e, &queries)
    } else {
        sampler.sample(&mut e, &queries)
    }
    .expect("sampling");
    (t.elapsed().as_secs_f64(), tree)
}

/// The peer's `PEER hf_generate w=…` lines as `(w, traj_per_s)`, or the reason it skipped.
fn run_peer(dir: &Path, widths: &[usize]) -> Result<Vec<(usize, f64)>, String> {
    let python = std::env::var("TREEPO_PY").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peers/hf_generate.py");
    let ws: Vec<String> = widths.iter().map(usize::to_string).collect();
    let out = Command::new(&python)
        .arg(&script)
        .args(["--device", "cpu", "--iters", "3", "--widths", &ws.join(",")])
        .arg("--model")
        .arg(dir)
        .arg("--prompts")
        .arg(dir.join("prompts.json"))
        .output()
        .map_err(|e| format!("cannot run {python}: {e} (set TREEPO_PY to a Python with torch)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(skip) = text.lines().find(|l| l.starts_with("SKIP")) {
        return Err(format!("{skip} (python: {python}; set TREEPO_PY to a Python with torch)"));
    }
    if !out.status.success() {
        return Err(format!(
            "{python} {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    let field = |l: &str, k: &str| -> Option<f64> {
        l.split_whitespace().find_map(|t| t.strip_prefix(k)).and_then(|v| v.parse().ok())
    };
    Ok(text
        .lines()
        .filter(|l| l.starts_with("PEER hf_generate"))
        .filter_map(|l| Some((field(l, "w=")? as usize, field(l, "traj_per_s=")?)))
        .collect())
}

fn main() {
    treepo_benches::print_load();
    let dev = Device::cpu();
    let task = TaskConfig::from_name("countdown").and_then(|t| t.build()).expect("task");
    let vocab = CharVocab::new(task.vocabulary().unwrap_or_default()).expect("vocab");
    let hooks = task.hooks(Arc::new(vocab.clone())).expect("hooks");
    let cfg = ModelConfig::tiny(vocab.len());
    let model = Model::random(&dev, cfg.clone(), 1).expect("model");
    let dir: PathBuf = std::env::temp_dir().join(format!("treepo-hf-peer-{}", std::process::id()));
    model::save(&dir, &cfg, model.layout(), &model.params_host().expect("params"))
        .expect("checkpoint");
    let prompts: Vec<Vec<u32>> = (0..PROMPTS)
        .map(|q| (0..PROMPT_LEN).map(|i| ((i * 7 + q * 3) % 20 + 1) as u32).collect())
        .collect();
    std::fs::write(dir.join("prompts.json"), format!("{prompts:?}")).expect("prompts");
    let widths = [16, 64];
    let mut ours = Vec::new();
    for &w in &widths {
        let mut c = TreeConfig::with_shape(14, 8, 2, w);
        c.stop_token_ids.clear();
        c.seed = 7;
        let sampler = TreeSampler::new(c, hooks.clone()).expect("sampler config");
        let (mut seq, mut tree) = (Vec::new(), Vec::new());
        let mut trajectories = (0, 0);
        for _ in 0..RUNS {
            let (s, t) = sample_once(&model, &sampler, &prompts, true);
            seq.push(s);
            trajectories.0 = t.total_leaves();
            let (s, t) = sample_once(&model, &sampler, &prompts, false);
            tree.push(s);
            trajectories.1 = t.total_leaves();
        }
        let (seq, tree) = (median(seq), median(tree));
        println!(
            "engine w={w}: sequential {} trajectories in {seq:.3} s = {:.1} traj/s; tree {} in \
             {tree:.3} s = {:.1} traj/s",
            trajectories.0,
            trajectories.0 as f64 / seq,
            trajectories.1,
            trajectories.1 as f64 / tree
        );
        ours.push((w, trajectories.0 as f64 / seq, trajectories.1 as f64 / tree));
    }
    match run_peer(&dir, &widths) {
        Ok(peer) => {
            for (w, seq, tree) in ours {
                let Some(&(_, hf)) = peer.iter().find(|p| p.0 == w) else {
                    println!("SKIP hf_peer w={w}: the peer printed no line for it");
                    continue;
                };
                println!(
                    "RESULT hf_peer w={w}: HF generate {hf:.1} traj/s; engine sequential \
                     {seq:.1} traj/s ({:.2}x HF), engine tree {tree:.1} traj/s ({:.2}x HF)",
                    seq / hf,
                    tree / hf
                );
            }
        }
        Err(why) => println!("SKIP hf_peer: the HF generate peer did not run: {why}"),
    }
    treepo_benches::print_load();
    let _ = std::fs::remove_dir_all(&dir);
}
