//! The engine's token step against the CPU GEMM peak (issue 15, item 3).
//!
//! For the demo model (`ModelConfig::tiny`: 4 layers, C = 128) and a big model (8 layers,
//! C = 512, I = 1536, 8 q / 4 KV heads of 64: 25 M parameters), 64 leaves forked from a
//! 16-token prompt decode one segment of 16 tokens on the CPU (random weights; median of the
//! repetitions, the `decode_segment` call timed). Per token step it prints:
//!
//! - the useful GFLOP/s: `2·(linear weights of the layers)` per computed row plus the attention's
//!   `4·context·hq·head_dim` per row and layer (context = prompt + the segment's mean position),
//!   plus `2·C·V` per sampled row for the LM head; norms, RoPE, sampling and planning count zero;
//! - that rate as a % of the 2-thread GEMM peak measured in the same run (the best of a
//!   1024³ f32 GEMM in both weight layouts through `ops::gemm`), and of a GEMM of the step's
//!   largest shape (m = 64 rows, k = C, n = 2·I) in the fastest weight layout (`[n,k]`,
//!   `[k,n]`, or `[k,n]` in panel order where the CPU runs the weight GEMM, as the engine does);
//! - `TARGET met/MISSED` against ≥ 70 % (big) and ≥ 40 % (demo) of the peak;
//! - the CPU backend's parallel regions (rayon fork-joins, `cpu::regions::parallel_regions`, a
//!   lower bound: a `gemm` crate call counts once) and the process's context switches per step.
//!
//! It also prints, per model, the GFLOP/s of the step's GEMM shapes (m = 1, 4, 16, 64) in each
//! weight layout on one hot weight, and at m = 64 with the weights streamed from memory (`[k,n]`
//! against panel order, where the CPU runs the weight GEMM): what the engine's layout rule
//! (`engine::weights`) rests on.
//!
//! Run: `cargo bench -p treepo-benches --bench engine_step` (`-- demo` or `-- big` for one
//! model; `-- demo profile` times only the token steps, 20 times as many, for `perf`;
//! `TREEPO_BENCH_CPU_SPIN=0` runs the engine with `cpu_spin` off, `TREEPO_BENCH_PANELS=0` with
//! `cpu_weight_panels` off, `TREEPO_BENCH_OP_TIMES=1` with `op_times` on: an `OPS` line then
//! gives the µs per token step of each op kind, e.g. attention against the four GEMMs, on one
//! thread (`RAYON_NUM_THREADS=1`) and on two).

use std::time::Instant;

use treepo_benches::harness;
use treepo_kernels::Device;
use treepo_kernels::cpu::regions::parallel_regions;
use treepo_kernels::ops::{self, GemmSpec, Transpose};
use treepo_sampler::{
    BranchKey, DecodeParams, Engine, EntropyMode, SamplingParams, SegmentRequest,
};
use treepo_trainer::engine::{EngineConfig, ModelEngine, Op};
use treepo_trainer::model::{Model, ModelConfig};

const ROWS: usize = 64;
const PROMPT: usize = 16;
const TOKENS: usize = 16;
const VOCAB: usize = 21;

/// The big model of the issue: C = 512, 8 layers, ~25 M parameters.
fn big() -> ModelConfig {
    let mut c = ModelConfig::tiny(VOCAB);
    c.hidden_size = 512;
    c.intermediate_size = 1536;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
    c.head_dim = 64;
    c
}

/// Voluntary + involuntary context switches of every thread of this process (Linux; 0
/// elsewhere): a rayon worker that sleeps between regions and is woken again counts one.
fn context_switches() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0 };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// An engine switch, on unless the variable is `0`: `TREEPO_BENCH_CPU_SPIN=0` turns the
/// polling workers off (`EngineConfig::cpu_spin`), `TREEPO_BENCH_PANELS=0` the panel-order
/// weights (`EngineConfig::cpu_weight_panels`), each for an A/B with the same binary.
fn flag(var: &str) -> bool {
    std::env::var(var).map_or(true, |v| v != "0")
}

/// The `OPS` line of a step measured with `TREEPO_BENCH_OP_TIMES=1`: µs per token step of each
/// op kind of the forward (`engine::op_times`), their sum, and what the step spent outside them
/// (sampling, the LM head, bookkeeping).
fn print_ops(name: &str, s: &Step) {
    if s.ops.is_empty() {
        return;
    }
    let sum: f64 = s.ops.iter().map(|o| o.1).sum();
    let list: Vec<String> = s.ops.iter().map(|(n, us)| format!("{n} {us:.1}")).collect();
    println!(
        "OPS engine_step/{name} (µs per token step, means over the timed segments): {}; \
         ops {sum:.1} of the step's {:.1}",
        list.join(", "),
        s.mean_us
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Best GFLOP/s of `reps` calls of `spec` (A and B random-ish, C overwritten): on one hot B.
fn gemm_rate(dev: &Device, spec: &GemmSpec, reps: usize) -> f64 {
    gemm_rate_on(dev, spec, reps, 1)
}

/// Best GFLOP/s of `spec` over `copies` copies of B called in turn, each `rounds` times: with
/// ≥ 100 MB of copies every call streams its B from memory, as the engine's weights do.
fn gemm_rate_streamed(dev: &Device, spec: &GemmSpec, rounds: usize) -> f64 {
    let copies = (100 << 20) / (4 * spec.k * spec.n) + 1;
    gemm_rate_on(dev, spec, rounds * copies, copies)
}

fn gemm_rate_on(dev: &Device, spec: &GemmSpec, reps: usize, copies: usize) -> f64 {
    let (m, n, k) = (spec.m, spec.n, spec.k);
    let fill = |len: usize, s: f32| -> Vec<f32> {
        (0..len).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 * s - 0.5).collect()
    };
    let a = dev.upload(&fill(m * k, 1.0)).expect("a");
    let b = fill(k * n, 0.5);
    let b = if spec.b_panels { ops::pack_panels(&b, k, n).expect("pack") } else { b };
    let b: Vec<_> = (0..copies).map(|_| dev.upload(&b).expect("b")).collect();
    let mut c = dev.zeros::<f32>(m * n).expect("c");
    let mut best = f64::INFINITY;
    // Inside the pool, as the engine runs its steps (`ModelEngine::on_pool`).
    rayon::scope(|_| {
        for r in 0..reps + 1 {
            let t = Instant::now();
            ops::gemm(dev, &a, &b[r % copies], &mut c, spec).expect("gemm");
            best = best.min(t.elapsed().as_secs_f64());
        }
    });
    spec.flops() / best / 1e9
}

/// Useful FLOPs of one step's rows (see the module docs).
fn flops_per_row(cfg: &ModelConfig, context: f64) -> (f64, f64) {
    let (c, i) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let (q, kv) = (
        (cfg.num_attention_heads * cfg.head_dim) as f64,
        (cfg.num_key_value_heads * cfg.head_dim) as f64,
    );
    let linear = c * (q + 2.0 * kv) + q * c + 3.0 * c * i;
    let attn = 4.0 * context * q;
    let layers = cfg.num_hidden_layers as f64 * (2.0 * linear + attn);
    (layers, 2.0 * c * cfg.vocab_size as f64)
}

struct Step {
    seconds: f64,
    gflops: f64,
    regions: f64,
    switches: f64,
    /// µs per token step of each op kind, with `TREEPO_BENCH_OP_TIMES=1` (else empty), and the
    /// mean µs per token step they are part of.
    ops: Vec<(&'static str, f64)>,
    mean_us: f64,
}

/// Median token step of `reps` segments on a fresh engine for `model`.
fn step(model: &Model, reps: usize) -> Step {
    let cfg = model.config().clone();
    let engine = EngineConfig {
        cpu_spin: flag("TREEPO_BENCH_CPU_SPIN"),
        cpu_weight_panels: flag("TREEPO_BENCH_PANELS"),
        op_times: std::env::var("TREEPO_BENCH_OP_TIMES").is_ok_and(|v| v == "1"),
        ..EngineConfig::with_pages(512)
    };
    let mut e = ModelEngine::new(model, engine).expect("engine");
    let prompt: Vec<u32> = (0..PROMPT as u32).map(|i| i * 7 % 20 + 1).collect();
    let root = e.prefill(&[&prompt]).expect("prefill")[0];
    let params = DecodeParams {
        stop: Default::default(),
        sampling: SamplingParams::default(),
        entropy: EntropyMode::Skip,
    };
    let (mut secs, mut flops, mut regions, mut switches) = (vec![], vec![], vec![], vec![]);
    let mut all_steps = 0u64;
    let (per_row, head) = flops_per_row(&cfg, PROMPT as f64 + TOKENS as f64 / 2.0 + 1.0);
    for it in 0..reps + 1 {
        let kids = e.fork(root, ROWS).expect("fork");
        let key = BranchKey::root(it as u64, 0);
        let reqs: Vec<SegmentRequest> = (0..ROWS)
            .map(|i| SegmentRequest {
                node: kids[i],
                key: key.child(i as u32),
                response_offset: 0,
                max_tokens: TOKENS,
            })
            .collect();
        let s0 = e.stats();
        let (r0, c0) = (parallel_regions(), context_switches());
        let t = Instant::now();
        e.decode_segment(&reqs, &params).expect("decode");
        let el = t.elapsed().as_secs_f64();
        let (r1, c1) = (parallel_regions(), context_switches());
        let s1 = e.stats();
        for k in kids {
            e.release(k).expect("release");
        }
        if it == 0 {
            e.reset_op_times();
            continue; // warm-up: first-touch of the workspace and the KV pages
        }
        all_steps += s1.decode_steps - s0.decode_steps;
        let steps = (s1.decode_steps - s0.decode_steps).max(1) as f64;
        let rows = (s1.rows - s0.rows) as f64;
        // Each step runs the LM head over every row of the batch (no stop token here).
        let total = rows * per_row + ROWS as f64 * steps * head;
        secs.push(el / steps);
        flops.push(total / steps);
        regions.push((r1 - r0) as f64 / steps);
        switches.push((c1 - c0) as f64 / steps);
    }
    let mean_us = secs.iter().sum::<f64>() / secs.len().max(1) as f64 * 1e6;
    let seconds = median(&mut secs);
    // The decode calls' forwards only (prefill ran before the times were reset); a step is one
    // forward of the batch's rows.
    let ops = e.op_times().map_or(Vec::new(), |t| {
        let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e6 / all_steps.max(1) as f64;
        Op::ALL.iter().map(|&op| (op.name(), per_step(t.get(op).0))).collect()
    });
    Step {
        seconds,
        gflops: median(&mut flops) / seconds / 1e9,
        regions: median(&mut regions),
        switches: median(&mut switches),
        ops,
        mean_us,
    }
}

fn main() {
    harness::print_load();
    let dev = Device::cpu();
    let threads = rayon::current_num_threads();
    // The peak is taken three times (before, between and after the models) and the best kept:
    // a compile of another user's job during one of them would otherwise lower it.
    let square = |t: Transpose| GemmSpec::new(1024, 1024, 1024, Transpose::N, t);
    let peak_now =
        || gemm_rate(&dev, &square(Transpose::T), 5).max(gemm_rate(&dev, &square(Transpose::N), 5));
    let models = [("demo", ModelConfig::tiny(VOCAB), 0.40, 9), ("big", big(), 0.70, 5)];
    // `engine_step demo` (or `big`) runs one model; `cargo bench` passes only `--bench`.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    // `engine_step demo profile`: only the token steps, 20 times as many (for perf).
    if let Some(name) = only.first().filter(|_| only.iter().any(|a| a == "profile")) {
        for (n, cfg, _, reps) in &models {
            if n == name {
                let model = Model::random(&dev, cfg.clone(), 1).expect("model");
                let s = step(&model, 20 * reps);
                println!("PROFILE engine_step/{n}: {:.3} ms/step", s.seconds * 1e3);
                print_ops(n, &s);
            }
        }
        return;
    }
    let mut peaks = vec![peak_now()];
    let mut results = Vec::new();
    for (name, cfg, target, reps) in models {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            peaks.push(peak_now());
            continue;
        }
        let model = Model::random(&dev, cfg.clone(), 1).expect("model");
        let n2 = 2 * cfg.intermediate_size;
        let shape = |t: Transpose| GemmSpec::new(ROWS, n2, cfg.hidden_size, Transpose::N, t);
        let panels = ops::panels_supported(&dev);
        let (nk, kn) =
            (gemm_rate(&dev, &shape(Transpose::T), 20), gemm_rate(&dev, &shape(Transpose::N), 20));
        let pn =
            if panels { gemm_rate(&dev, &shape(Transpose::N).with_b_panels(), 20) } else { 0.0 };
        // The step's GEMM shapes (n, k) in each weight layout: what the layout rule rests on.
        let (c, i) = (cfg.hidden_size, cfg.intermediate_size);
        for m in [1, 4, 16, ROWS] {
            let mut table = String::new();
            for (what, n, k) in [("q", c, c), ("o", c, c), ("gate", i, c), ("down", c, i)] {
                let sp = |t: Transpose| GemmSpec::new(m, n, k, Transpose::N, t);
                let (a, b) = (
                    gemm_rate(&dev, &sp(Transpose::T), 20),
                    gemm_rate(&dev, &sp(Transpose::N), 20),
                );
                table += &format!(" {what} n={n} k={k}: [n,k] {a:.1} [k,n] {b:.1}");
                if panels {
                    let p = gemm_rate(&dev, &sp(Transpose::N).with_b_panels(), 20);
                    table += &format!(" panels {p:.1}");
                }
                table += ";";
            }
            println!("GEMM m={m} GFLOP/s by layout ({name}):{table}");
            if m == ROWS && panels {
                // The engine's case: the weights stream from memory every step.
                let mut table = String::new();
                for (what, n, k) in [("q", c, c), ("o", c, c), ("gate", i, c), ("down", c, i)] {
                    let sp = GemmSpec::new(m, n, k, Transpose::N, Transpose::N);
                    let (b, p) = (
                        gemm_rate_streamed(&dev, &sp, 3),
                        gemm_rate_streamed(&dev, &sp.with_b_panels(), 3),
                    );
                    table += &format!(" {what} n={n} k={k}: [k,n] {b:.1} panels {p:.1};");
                }
                println!(
                    "GEMM m={m} GFLOP/s, weights streamed (>= 100 MB of copies) ({name}):{table}"
                );
            }
        }
        let s = step(&model, reps);
        peaks.push(peak_now());
        results.push((name, cfg, target, s, nk.max(kn).max(pn), n2, model.params().len()));
    }
    let peak = peaks.iter().cloned().fold(0.0, f64::max);
    println!(
        "GEMM peak ({threads} threads, 1024^3 f32, best layout, best of 5, taken 3 times: \
         {:.1} / {:.1} / {:.1}): {peak:.1} GFLOP/s",
        peaks[0], peaks[1], peaks[2]
    );
    for (name, cfg, target, s, shape_rate, n2, params) in results {
        let pct = 100.0 * s.gflops / peak;
        println!(
            "RESULT engine_step/{name}: C={} layers={} params={:.1}M batch={ROWS}: {:.3} ms/step, \
             {:.1} useful GFLOP/s = {pct:.1}% of the GEMM peak, {:.1}% of the step-shape GEMM \
             (m={ROWS} n={n2} k={}: {shape_rate:.1} GFLOP/s, the fastest layout); {:.1} fork-joins/step \
             (lower bound), {:.1} context switches/step",
            cfg.hidden_size,
            cfg.num_hidden_layers,
            params as f64 / 1e6,
            s.seconds * 1e3,
            s.gflops,
            100.0 * s.gflops / shape_rate,
            cfg.hidden_size,
            s.regions,
            s.switches,
        );
        print_ops(name, &s);
        println!(
            "TARGET {} engine_step/{name}: {pct:.1}% of the GEMM peak (target >= {:.0}%)",
            if pct >= 100.0 * target { "met" } else { "MISSED" },
            100.0 * target
        );
    }
    harness::print_load();
}
