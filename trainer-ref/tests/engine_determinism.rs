//! Generation is deterministic and independent of batch composition: the `i`-th token of a
//! branch uses the branch's own uniform, so a branch decoded in a big batch, in small groups or
//! alone gets the same tokens, and a repeated run is bit-identical.

use crate::engine_common::{TOL, check_row, params, random_model, req, small, tokens};
use treepo_kernels::{Device, per_backend};
use treepo_sampler::{DecodeParams, Engine, SegmentEnd, SegmentOutput, SegmentRequest};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::Model;

const V: usize = 31;

fn config(rows: usize) -> EngineConfig {
    EngineConfig { num_pages: 96, page_size: 8, max_batch_rows: rows, ..EngineConfig::default() }
}

fn prompts() -> [Vec<u32>; 2] {
    [tokens(6, V as u32, 2, 31), tokens(11, V as u32, 2, 32)]
}

/// Both prompts, each forked into 4 leaves, all 8 decoded in one call (12 tokens each).
fn run_batch(model: &Model, rows: usize, p: &DecodeParams) -> Vec<SegmentOutput> {
    run_batch_with(model, config(rows), p)
}

fn run_batch_with(model: &Model, cfg: EngineConfig, p: &DecodeParams) -> Vec<SegmentOutput> {
    run_forks(model, cfg, p, 4)
}

/// Two prompts, `forks` leaves each, one 12-token segment.
fn run_forks(
    model: &Model,
    cfg: EngineConfig,
    p: &DecodeParams,
    forks: usize,
) -> Vec<SegmentOutput> {
    let mut e = ModelEngine::new(model, cfg).unwrap();
    let ps = prompts();
    let roots = e.prefill(&[&ps[0], &ps[1]]).unwrap();
    let mut reqs = Vec::new();
    for (q, &root) in roots.iter().enumerate() {
        for (i, k) in e.fork(root, forks).unwrap().into_iter().enumerate() {
            reqs.push(req(k, q as u64, &[i as u32], 0, 12));
        }
    }
    e.decode_segment(&reqs, p).unwrap()
}

/// One leaf alone in a fresh engine.
fn run_alone(model: &Model, query: usize, ordinal: u32, p: &DecodeParams) -> SegmentOutput {
    let mut e = ModelEngine::new(model, config(256)).unwrap();
    let root = e.prefill(&[&prompts()[query]]).unwrap()[0];
    let leaf = e.fork(root, 1).unwrap()[0];
    let r: SegmentRequest = req(leaf, query as u64, &[ordinal], 0, 12);
    e.decode_segment(&[r], p).unwrap().remove(0)
}

fn batch_composition_does_not_change_tokens(dev: &Device) {
    let model = random_model(dev, small(V), 31, 0.3);
    let p = params(1.0, &[0]);
    let big = run_batch(&model, 256, &p);
    for o in &big {
        assert!(o.end == SegmentEnd::Stop || o.tokens.len() == 12);
        assert!(o.logprobs.iter().all(|&l| l <= 0.0 && l.is_finite()));
        let ent = o.entropies.as_ref().unwrap();
        assert!(ent.len() == o.tokens.len() && ent.iter().all(|&h| h >= 0.0 && h.is_finite()));
    }
    let distinct: std::collections::HashSet<&Vec<u32>> = big.iter().map(|o| &o.tokens).collect();
    assert!(distinct.len() > 4, "temperature 1 should give different branches");
    let small_groups = run_batch(&model, 3, &p);
    let again = run_batch(&model, 256, &p);
    for (j, o) in big.iter().enumerate() {
        let alone = run_alone(&model, j / 4, (j % 4) as u32, &p);
        let what = format!("{} leaf {j}", dev.kind());
        assert_eq!(o.tokens, alone.tokens, "{what}: alone");
        assert_eq!(o.tokens, small_groups[j].tokens, "{what}: groups of 3 rows");
        check_row(&format!("{what} logprobs"), &alone.logprobs, &o.logprobs, TOL);
        assert_eq!(o, &again[j], "{what}: a repeated run is bit-identical");
    }
}

fn greedy_follows_the_argmax(dev: &Device) {
    let model = random_model(dev, small(V), 32, 0.3);
    let mut e = ModelEngine::new(&model, config(256)).unwrap();
    let root = e.prefill(&[&prompts()[1]]).unwrap()[0];
    let kids = e.fork(root, 2).unwrap();
    let mut seqs = [Vec::new(), Vec::new()];
    for step in 0..6u64 {
        let want: Vec<u32> = kids
            .iter()
            .map(|&k| {
                let l = e.node_logits(k).unwrap();
                (0..V).max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a))).unwrap() as u32
            })
            .collect();
        let reqs: Vec<_> =
            kids.iter().enumerate().map(|(i, &k)| req(k, 0, &[i as u32], step, 1)).collect();
        let out = e.decode_segment(&reqs, &params(0.0, &[])).unwrap();
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.tokens, [want[i]], "{} step {step} leaf {i}", dev.kind());
            assert!(o.logprobs[0].abs() < 1e-6, "greedy log-prob is 0");
            seqs[i].push(o.tokens[0]);
        }
    }
    assert_eq!(seqs[0], seqs[1], "greedy ignores the uniforms: both leaves agree");
}

/// The CPU engine's polling workers (`EngineConfig::cpu_spin`) change scheduling only: the same
/// batch with them on and off gives bit-identical outputs — also at 40 rows, where the CPU
/// GEMMs split into row blocks while the workers poll — and when three engines decode at
/// once from three threads (their calls share rayon's pool: a polling worker may run another
/// engine's work, and the engine's own thread must never wait on a poller stacked above it).
#[test]
fn polling_workers_change_nothing_and_share_the_pool() {
    let dev = Device::cpu();
    let model = random_model(&dev, small(V), 33, 0.3);
    let p = params(1.0, &[0]);
    let with = |spin: bool| EngineConfig { cpu_spin: spin, ..config(256) };
    let off = run_batch_with(&model, with(false), &p);
    assert_eq!(run_batch_with(&model, with(true), &p), off, "cpu_spin on vs off");
    // The demo model's width: its o and down projections (40 × 128 × 128 and × 384) split.
    let demo = random_model(&dev, treepo_trainer::model::ModelConfig::tiny(V), 34, 0.3);
    let wide = run_forks(&demo, with(false), &p, 20);
    assert_eq!(run_forks(&demo, with(true), &p, 20), wide, "cpu_spin on vs off, 40 rows");
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| (0..4).map(|_| run_batch_with(&model, with(true), &p)).collect()))
            .collect();
        for r in runs {
            let outs: Vec<Vec<SegmentOutput>> = r.join().expect("an engine thread panicked");
            for o in outs {
                assert_eq!(o, off, "concurrent engines with polling workers");
            }
        }
    });
}

/// `EngineConfig::op_times` times every op of every forward (each counted once per layer, the
/// norms twice plus the final one), changes no output, and is `None` when off.
#[test]
fn op_times_count_every_op_and_change_nothing() {
    use treepo_trainer::engine::Op;
    let dev = Device::cpu();
    let model = random_model(&dev, small(V), 35, 0.3);
    let p = params(1.0, &[0]);
    let timed = EngineConfig { op_times: true, ..config(256) };
    assert_eq!(run_batch_with(&model, timed.clone(), &p), run_batch(&model, 256, &p));
    assert!(ModelEngine::new(&model, config(256)).unwrap().op_times().is_none());
    let mut e = ModelEngine::new(&model, timed).unwrap();
    let root = e.prefill(&[&prompts()[0]]).unwrap()[0];
    let kids = e.fork(root, 3).unwrap();
    let reqs: Vec<SegmentRequest> =
        kids.iter().enumerate().map(|(i, &k)| req(k, 0, &[i as u32], 0, 5)).collect();
    e.decode_segment(&reqs, &p).unwrap();
    let (forwards, layers) = (e.stats().forwards, small(V).num_hidden_layers as u64);
    let t = e.op_times().expect("op_times on");
    assert!(forwards >= 2, "{forwards} forwards");
    for op in Op::ALL {
        let (d, n) = t.get(op);
        let want = match op {
            Op::Plan | Op::Embedding => forwards,
            Op::Norm => (2 * layers + 1) * forwards,
            Op::Rope => 2 * layers * forwards,
            // `small` has q|k|v biases.
            _ => layers * forwards,
        };
        assert_eq!(n, want, "{} calls", op.name());
        assert!(d > std::time::Duration::ZERO, "{} took no time", op.name());
    }
    assert!(t.total() > std::time::Duration::ZERO);
    e.reset_op_times();
    assert_eq!(e.op_times().unwrap().total(), std::time::Duration::ZERO);
}

per_backend!(batch_composition_does_not_change_tokens, greedy_follows_the_argmax);
