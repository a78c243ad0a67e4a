//! Sampler benchmarks on the deterministic toy engine (`treepo_sampler::toy`).
//!
//! 1. `sampler/scheduler_per_step`: wall time of the scheduler *excluding* every engine call
//!    (classification, budgets, fallback planning, bookkeeping), per decode step — the figure to
//!    hold against a decode step of the real model (target < 5 %).
//! 2. Tree vs sequential on the paper's shape scaled down (w = 16, b = 2, d = 14, l = 8): the
//!    run prints tokens decoded, engine steps, segments and peak KV pages of both samplers and
//!    the ratio sequential / tree, measured in this run; criterion also times both end to end on
//!    the toy engine (whose "decode" is a table lookup, so that time is mostly scheduler + toy).
//!
//! Run: `cargo bench -p treepo-benches --bench sampler`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use treepo_sampler::toy::{self, EOS, EOT, KvConfig, MarkovConfig, MarkovModel, ToyEngine};
use treepo_sampler::{Query, RolloutTree, TextHooks, TreeConfig, TreeSampler};

const QUERIES: usize = 8;

fn config() -> TreeConfig {
    let mut c = TreeConfig::with_shape(14, 8, 2, 16);
    c.stop_token_ids = [EOS, EOT].into();
    c.seed = 2025;
    c
}

/// Prompts of 8 tokens (one page), so the prompt node ends page-aligned.
fn prompts() -> Vec<Vec<u32>> {
    (0..QUERIES).map(|q| (0..8).map(|i| ((q * 7 + i * 3) % 14 + 2) as u32).collect()).collect()
}

fn engine() -> ToyEngine<MarkovModel> {
    // Stops get likelier along the response, so trajectories end at varied lengths (as with a
    // real model) instead of all running into d·l. Pages of l tokens: every fork after the prompt
    // is page-aligned, so children share all their parent's pages (the tree-kv crate docs, "Forks
    // and the tail claim").
    let markov = MarkovConfig { seed: 7, spread: 3.0, stop_logit: -5.0, stop_ramp: 0.03 };
    ToyEngine::markov(markov, KvConfig { page_size: 8, pool_pages: 1 << 16 })
}

type Sampler = TreeSampler<TextHooks<fn(&[u32]) -> String>>;

fn run(sampler: &Sampler, sequential: bool) -> RolloutTree {
    let prompts = prompts();
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let queries = Query::batch(&refs);
    let mut e = engine();
    let out = if sequential {
        sampler.sample_sequential(&mut e, &queries)
    } else {
        sampler.sample(&mut e, &queries)
    };
    match out {
        Ok(tree) => tree,
        Err(err) => panic!("sampling failed: {err}"),
    }
}

/// Median scheduler time per engine step over `runs` runs, in µs.
fn scheduler_us_per_step(sampler: &Sampler, sequential: bool, runs: usize) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = run(sampler, sequential);
            t.cost().time.scheduler.as_secs_f64() * 1e6 / t.cost().engine_steps.max(1) as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(sampler: &Sampler) {
    let (tree, seq) = (run(sampler, false), run(sampler, true));
    let line = |name: &str, t: &RolloutTree, per_step: f64| {
        let c = t.cost();
        println!(
            "{name:<10} leaves {:>4}  tokens decoded {:>6}  engine steps {:>3}  segments {:>5}  forks {:>4}  \
             fallbacks {:>3}  peak KV pages {:>5}  scheduler {per_step:>6.1} µs/step (median of 15 runs)",
            t.total_leaves(),
            c.tokens_decoded,
            c.engine_steps,
            c.segments_decoded,
            c.forks,
            c.fallbacks,
            c.peak_kv_pages,
        );
    };
    println!(
        "\n== sampler: {QUERIES} queries, w = 16, b = 2, d = 14, l = 8 (toy Markov engine) =="
    );
    line("tree", &tree, scheduler_us_per_step(sampler, false, 15));
    line("sequential", &seq, scheduler_us_per_step(sampler, true, 15));
    let ratio = seq.cost().tokens_decoded as f64 / tree.cost().tokens_decoded.max(1) as f64;
    let per_response =
        |t: &RolloutTree| t.cost().tokens_decoded as f64 / t.total_response_tokens().max(1) as f64;
    println!(
        "ratio sequential/tree tokens decoded: {ratio:.2}x  (mean response length: tree {:.1}, sequential {:.1})",
        tree.total_response_tokens() as f64 / tree.total_leaves().max(1) as f64,
        seq.total_response_tokens() as f64 / seq.total_leaves().max(1) as f64,
    );
    println!(
        "tokens decoded per response token: tree {:.3}, sequential {:.3} (ratio {:.2}x)",
        per_response(&tree),
        per_response(&seq),
        per_response(&seq) / per_response(&tree).max(f64::MIN_POSITIVE)
    );
    println!(
        "ratio sequential/tree KV peak pages: {:.2}x\n",
        seq.cost().peak_kv_pages as f64 / tree.cost().peak_kv_pages.max(1) as f64
    );
}

fn bench(c: &mut Criterion) {
    treepo_benches::print_load_once();
    let sampler = match TreeSampler::new(config(), toy::text_hooks()) {
        Ok(s) => s,
        Err(e) => panic!("config: {e}"),
    };
    report(&sampler);
    let mut g = c.benchmark_group("sampler");
    g.measurement_time(Duration::from_secs(4)).sample_size(20);
    // Scheduler time only, divided by the run's engine steps: criterion reports µs per step.
    g.bench_function("scheduler_per_step", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = run(&sampler, false);
                let steps = t.cost().engine_steps.max(1) as u32;
                total += t.cost().time.scheduler / steps;
            }
            total
        })
    });
    g.bench_function("tree_end_to_end", |b| b.iter(|| black_box(run(&sampler, false))));
    g.bench_function("sequential_end_to_end", |b| b.iter(|| black_box(run(&sampler, true))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
