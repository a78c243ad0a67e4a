//! The model engine (`treepo_trainer::engine::ModelEngine`) on the tiny demo model
//! (`ModelConfig::tiny`: 4 layers, C = 128, 4 q / 2 KV heads of 32, vocabulary of the synthetic
//! tasks), per backend:
//!
//! 1. `engine_decode/{dev}/leaves={1,16,64}`: one `decode_segment` of 16 tokens (4 on software
//!    adapters) for B leaves forked from a 16-token prompt — decode tokens/s. On the CPU and
//!    CUDA also B = 64 leaves under a 480-token prompt (the model's context is 512) with the tree
//!    plan and with the naive per-leaf plan: the ratio is what reading the shared prompt once is
//!    worth inside the whole model step.
//! 2. TreePO vs sequential on this engine: 16 countdown prompts (the realistic batch),
//!    b = 2, response length 112 as d × l: `14 × 8` (the paper's 14 segments, scaled down) and
//!    `7 × 16` (fewer, longer segments); w = 16 with the task's stop symbol (a random model emits
//!    it with probability ~1/21 per token, so paths end at varied lengths), w = 16 with no stop
//!    token (every path runs d·l tokens), and w = 64 (the paper's rollouts per prompt) with no
//!    stop token. Prints trajectories/s, decoded tokens/s and response tokens/s of both, their
//!    ratios (median of 5 interleaved runs, fresh engines, the sampler call timed) and, with no
//!    stop token, the **ceiling**: sequential / tree decoded tokens, what the ratio would be if
//!    both decoded at the same rate (with b = 2 the tree needs log2(w/2) narrow segments before
//!    it is w wide; the fewer the segments, the larger their share). The `TARGET` line checks
//!    response tokens/s ≥ 1.4× at w = 16, 7 × 16. `TREEPO_BENCH_MIN_SHARED=N` sets the tree
//!    plan's fold threshold of these runs (default: the engine's 64).
//!
//! Run: `cargo bench -p treepo-benches --bench engine`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tree_attn::PlanKind;
use treepo_benches::harness;
use treepo_kernels::{BackendKind, Device};
use treepo_sampler::{
    BranchKey, DecodeParams, Engine, EntropyMode, Query, RolloutTree, SamplingParams,
    SegmentRequest, TreeConfig, TreeSampler,
};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::{Model, ModelConfig};
use treepo_trainer::tasks::{CharVocab, Hooks, Split, TaskConfig};

/// Prompts per sampling call.
const QUERIES: u64 = 16;

fn tiny(dev: &Device, vocab: usize) -> Model {
    Model::random(dev, ModelConfig::tiny(vocab), 1).expect("model")
}

/// KV pages a backend can hold for the tiny model (32 KiB each; wgpu binds at most 128 MiB).
/// 12 288 pages hold w = 64 sequential samples of 16 prompts at full length (1 024 paths of
/// 9 pages) with room to spare: a smaller pool would put the sampler under page pressure and
/// compare truncated runs.
fn pool(dev: &Device) -> u32 {
    if dev.kind() == BackendKind::Wgpu { 1536 } else { 12_288 }
}

fn sampling() -> DecodeParams {
    DecodeParams {
        stop: Default::default(),
        sampling: SamplingParams::default(),
        entropy: EntropyMode::Skip,
    }
}

/// One decode case: `leaves` fresh children of a `prompt`-token prompt decode `tokens` tokens.
struct Case {
    id: String,
    prompt: usize,
    leaves: usize,
    tokens: usize,
    plan: PlanKind,
}

/// Times one `decode_segment` of a [`Case`]; returns the best seconds per segment over
/// criterion's samples.
fn decode_case(c: &mut Criterion, dev: &Device, model: &Model, case: Case) -> f64 {
    let Case { id, prompt, leaves: b, tokens, plan } = case;
    let cfg = EngineConfig { plan, ..EngineConfig::with_pages(pool(dev)) };
    let mut e = ModelEngine::new(model, cfg).expect("engine");
    let p: Vec<u32> = (0..prompt as u32).map(|i| i * 7 % 20 + 1).collect();
    let root = e.prefill(&[&p]).expect("prefill")[0];
    let params = sampling();
    let mut best = f64::INFINITY;
    let mut group = c.benchmark_group("engine_decode");
    group.bench_function(&id, |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for it in 0..iters {
                let kids = e.fork(root, b).expect("fork");
                let key = BranchKey::root(it, 0);
                let reqs: Vec<SegmentRequest> = (0..b)
                    .map(|i| SegmentRequest {
                        node: kids[i],
                        key: key.child(i as u32),
                        response_offset: 0,
                        max_tokens: tokens,
                    })
                    .collect();
                dev.synchronize().expect("sync");
                let t = Instant::now();
                e.decode_segment(&reqs, &params).expect("decode");
                dev.synchronize().expect("sync");
                let el = t.elapsed();
                total += el;
                best = best.min(el.as_secs_f64());
                for k in kids {
                    e.release(k).expect("release");
                }
            }
            total
        })
    });
    group.finish();
    if best.is_finite() {
        println!(
            "RESULT engine_decode/{id}: {:.2} ms/segment, {:.0} tokens/s ({})",
            best * 1e3,
            (b * tokens) as f64 / best,
            dev.description()
        );
    }
    best
}

fn decode(c: &mut Criterion) {
    treepo_benches::print_load_once();
    for dev in harness::devices() {
        let model = tiny(&dev, 21);
        let soft = harness::is_software(&dev);
        let tokens = if soft { 4 } else { 16 };
        for b in [1, 16, 64] {
            let id = format!("{}/leaves={b}", dev.kind());
            let case = Case { id, prompt: 16, leaves: b, tokens, plan: PlanKind::Tree };
            decode_case(c, &dev, &model, case);
        }
        if soft || dev.kind() == BackendKind::Wgpu {
            continue;
        }
        let k = dev.kind();
        let long = |plan: PlanKind, name: &str| Case {
            id: format!("{k}/prompt=480/leaves=64/{name}"),
            prompt: 480,
            leaves: 64,
            tokens: 16,
            plan,
        };
        let tree = decode_case(c, &dev, &model, long(PlanKind::Tree, "tree"));
        let naive = decode_case(c, &dev, &model, long(PlanKind::Naive, "naive"));
        if tree.is_finite() && naive.is_finite() {
            println!(
                "RESULT engine_decode/{k}/prompt=480/leaves=64: naive/tree time {:.2}x",
                naive / tree
            );
        }
    }
}

/// `TREEPO_BENCH_MIN_SHARED`: the tree plan's fold threshold for the sampling runs (default:
/// the engine's), to sweep it (`docs/engine.md`).
fn min_shared() -> Option<u32> {
    let v = std::env::var("TREEPO_BENCH_MIN_SHARED").ok()?;
    Some(v.parse().expect("TREEPO_BENCH_MIN_SHARED must be a token count"))
}

/// The countdown workload: hooks, stop id and prompts.
fn workload() -> (CharVocab, Hooks, u32, Vec<Vec<u32>>) {
    let task = TaskConfig::from_name("countdown").and_then(|t| t.build()).expect("task");
    let vocab = CharVocab::new(task.vocabulary().unwrap_or_default()).expect("vocab");
    let hooks = task.hooks(Arc::new(vocab.clone())).expect("hooks");
    let stop = task.stop_symbol().and_then(|c| vocab.id(c)).expect("stop id");
    let prompts = (0..QUERIES)
        .map(|i| {
            vocab.encode(&task.generate(Split::Train, i).expect("problem").prompt).expect("encode")
        })
        .collect();
    (vocab, hooks, stop, prompts)
}

/// One sampling run on a fresh engine; returns the tree and the wall time of the sampler call.
fn run(
    model: &Model,
    dev: &Device,
    sampler: &TreeSampler<Hooks>,
    prompts: &[Vec<u32>],
    sequential: bool,
) -> (RolloutTree, f64) {
    let mut cfg = EngineConfig::with_pages(pool(dev));
    cfg.plan_min_shared = min_shared().unwrap_or(cfg.plan_min_shared);
    let mut e = ModelEngine::new(model, cfg).expect("engine");
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let queries = Query::batch(&refs);
    let t = Instant::now();
    let tree = if sequential {
        sampler.sample_sequential(&mut e, &queries)
    } else {
        sampler.sample(&mut e, &queries)
    }
    .expect("sampling");
    dev.synchronize().expect("sync");
    (tree, t.elapsed().as_secs_f64())
}

fn tree_vs_sequential(c: &mut Criterion) {
    treepo_benches::print_load_once();
    let (vocab, hooks, stop, prompts) = workload();
    for dev in harness::devices() {
        if harness::is_software(&dev) {
            println!("SKIP engine tree_vs_sequential on {}: software adapter", dev.description());
            continue;
        }
        let model = tiny(&dev, vocab.len());
        // (w, d, l, regime, stop ids).
        let regimes = [
            (16, 14, 8, "stop symbol", vec![stop]),
            (16, 14, 8, "no stop token", vec![]),
            (16, 7, 16, "no stop token", vec![]),
            (64, 14, 8, "no stop token", vec![]),
        ];
        for (w, d, l, regime, stops) in regimes {
            let stopless = stops.is_empty();
            let mut cfg = TreeConfig::with_shape(d, l, 2, w);
            cfg.stop_token_ids = stops.into_iter().collect();
            cfg.seed = 2025;
            let sampler = TreeSampler::new(cfg, hooks.clone()).expect("config");
            let mut times = [Vec::new(), Vec::new()];
            let mut trees = Vec::new();
            for _ in 0..5 {
                for (k, seq) in [false, true].into_iter().enumerate() {
                    let (tree, s) = run(&model, &dev, &sampler, &prompts, seq);
                    times[k].push(s);
                    trees.push(tree);
                }
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (tt, ts) = (median(&mut times[0]), median(&mut times[1]));
            let (tree, seq) = (&trees[0], &trees[1]);
            println!(
                "\n== engine: TreePO vs sequential on {} ({regime}): {QUERIES} queries, w={w} b=2 d={d} l={l}, plan min_shared {} ==",
                dev.description(),
                min_shared().unwrap_or(EngineConfig::default().plan_min_shared)
            );
            let line = |name: &str, t: &RolloutTree, s: f64| {
                let c = t.cost();
                println!(
                    "{name:<10} {:>4} trajectories  {:>6} tokens decoded  {:>6} response tokens  {:>3} steps  \
                     peak {:>4} KV pages  {:>6.3} s  {:>7.1} traj/s  {:>7.0} decoded tok/s  {:>7.0} response tok/s",
                    t.total_leaves(),
                    c.tokens_decoded,
                    t.total_response_tokens(),
                    c.engine_steps,
                    c.peak_kv_pages,
                    s,
                    t.total_leaves() as f64 / s,
                    c.tokens_decoded as f64 / s,
                    t.total_response_tokens() as f64 / s
                );
            };
            line("tree", tree, tt);
            line("sequential", seq, ts);
            let rate = |t: &RolloutTree, s: f64| t.total_response_tokens() as f64 / s;
            let response = rate(tree, tt) / rate(seq, ts);
            let ceiling = if stopless {
                format!(
                    " (ceiling at equal decode rates: {:.2}x)",
                    seq.cost().tokens_decoded as f64 / tree.cost().tokens_decoded as f64
                )
            } else {
                String::new()
            };
            treepo_benches::print_load();
            println!(
                "RESULT engine_tree_vs_sequential/{}/w={w}/{d}x{l}/{regime}: trajectories/s tree/seq {:.2}x, decoded tokens/s {:.2}x, response tokens/s {response:.2}x{ceiling}",
                dev.kind(),
                (tree.total_leaves() as f64 / tt) / (seq.total_leaves() as f64 / ts),
                (tree.cost().tokens_decoded as f64 / tt) / (seq.cost().tokens_decoded as f64 / ts),
            );
            if dev.kind() == BackendKind::Cpu && w == 16 && d == 7 && stopless {
                let verdict = if response >= 1.4 { "MET" } else { "MISSED" };
                println!(
                    "TARGET cpu tree vs sequential, w=16, {QUERIES} prompts, 7x16, no stop token: response tokens/s {response:.2}x, target >= 1.4x: {verdict}"
                );
            }
        }
        let mut cfg = TreeConfig::with_shape(14, 8, 2, 16);
        cfg.stop_token_ids = [stop].into();
        let sampler = TreeSampler::new(cfg, hooks.clone()).expect("config");
        let mut g = c.benchmark_group(format!("engine_sampling/{}", dev.kind()));
        g.sample_size(10).measurement_time(Duration::from_secs(5));
        // The sampler call only (engine construction, a 64 MiB zeroed pool, is not timed).
        for (name, seq) in [("tree", false), ("sequential", true)] {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            Duration::from_secs_f64(run(&model, &dev, &sampler, &prompts, seq).1)
                        })
                        .sum()
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = harness::criterion();
    targets = decode, tree_vs_sequential
}
criterion_main!(benches);
