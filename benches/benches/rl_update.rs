//! One RL update step of the tiny demo model (`ModelConfig::tiny`: 4 layers, C = 128) on a batch
//! of TreePO-shaped rollout trees, **tree-packed** (`TrainBatch::from_trees`: each shared prefix
//! once, tree mask) against **per-leaf** (`TrainBatch::from_sequences`: every trajectory with its
//! own copy of the prompt and of every shared segment). The step is what the pipeline runs: the
//! old log-probs recomputed by a forward pass, then `Trainer::rl_step` (forward, clipped loss,
//! backward, AdamW).
//!
//! Trees: 4 queries, each a prompt of P tokens, binary branching (b = 2) at every segment
//! boundary until w = 16 paths, then chains to depth d = 8, segments of l = 8 tokens — the shape
//! the TreePO sampler produces without early stops. Shapes: P = 32 (short prompt, the synthetic
//! tasks) and P = 256 (a long shared prompt). Packing removes `1 − packed/flat` of the tokens; the
//! report prints the time ratio against that token ratio (target: time ratio ≥ 0.7 × token
//! ratio) and trained response tokens/s.
//!
//! Run: `cargo bench -p treepo-benches --bench rl_update`.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use treepo_benches::harness;
use treepo_kernels::Device;
use treepo_kernels::testing::Rng;
use treepo_trainer::model::{Model, ModelConfig};
use treepo_trainer::rl::PolicyLossConfig;
use treepo_trainer::train::{AdamW, OptimConfig, TrainBatch, Trainer, TreeNodeSpec, TreeSpec};

const VOCAB: usize = 32;
const QUERIES: usize = 4;
const WIDTH: usize = 16;
const DEPTH: usize = 8;
const SEGMENT: usize = 8;

/// A TreePO-shaped tree: binary splits until `WIDTH` paths, then chains to `DEPTH` segments.
fn tree(rng: &mut Rng, prompt: usize) -> TreeSpec {
    let mut tok = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.below(VOCAB) as u32).collect() };
    let mut nodes = vec![TreeNodeSpec { parent: None, tokens: tok(prompt) }];
    let mut leaves = Vec::new();
    // (parent, segment depth, paths below); nodes are created in pairs, so they are put in
    // DFS pre-order afterwards.
    let mut stack = vec![(0usize, 0usize, WIDTH)];
    while let Some((parent, depth, paths)) = stack.pop() {
        if depth == DEPTH {
            leaves.push(parent);
            continue;
        }
        let kids = if paths > 1 { 2 } else { 1 };
        let mut created = Vec::new();
        for _ in 0..kids {
            created.push(nodes.len());
            nodes.push(TreeNodeSpec { parent: Some(parent), tokens: tok(SEGMENT) });
        }
        for &c in created.iter().rev() {
            stack.push((c, depth + 1, paths / kids));
        }
    }
    pre_order(TreeSpec { nodes, leaves })
}

/// Reorders a tree's nodes into DFS pre-order (children in creation order).
fn pre_order(t: TreeSpec) -> TreeSpec {
    let n = t.nodes.len();
    let mut children = vec![Vec::new(); n];
    for (i, node) in t.nodes.iter().enumerate() {
        if let Some(p) = node.parent {
            children[p].push(i);
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    let mut new_id = vec![0usize; n];
    for (k, &i) in order.iter().enumerate() {
        new_id[i] = k;
    }
    let nodes = order
        .iter()
        .map(|&i| TreeNodeSpec {
            parent: t.nodes[i].parent.map(|p| new_id[p]),
            tokens: t.nodes[i].tokens.clone(),
        })
        .collect();
    let mut leaves: Vec<usize> = t.leaves.iter().map(|&l| new_id[l]).collect();
    leaves.sort_unstable();
    TreeSpec { nodes, leaves }
}

/// Every root→leaf path of `t` as a (prompt, response) pair.
fn paths(t: &TreeSpec) -> Vec<(Vec<u32>, Vec<u32>)> {
    t.leaves
        .iter()
        .map(|&leaf| {
            let mut chain = vec![leaf];
            while let Some(p) = t.nodes[*chain.last().expect("non-empty")].parent {
                chain.push(p);
            }
            chain.reverse();
            let response = chain[1..].iter().flat_map(|&i| t.nodes[i].tokens.clone()).collect();
            (t.nodes[0].tokens.clone(), response)
        })
        .collect()
}

struct Step {
    trainer: Trainer,
    batch: TrainBatch,
    advantages: Vec<Vec<f64>>,
}

impl Step {
    fn new(dev: &Device, batch: TrainBatch, leaf_adv: &[f64]) -> Step {
        let model = Model::random(dev, ModelConfig::tiny(VOCAB), 5).expect("model");
        let optim = AdamW::new(&model, OptimConfig { lr: 1e-5, ..OptimConfig::default() })
            .expect("optimizer");
        let advantages =
            batch.leaf_targets.iter().zip(leaf_adv).map(|(t, &a)| vec![a; t.len()]).collect();
        Step { trainer: Trainer::new(model, optim), batch, advantages }
    }

    /// One update: old log-probs, then the clipped-loss step.
    fn run(&mut self, dev: &Device) -> Duration {
        let cfg = PolicyLossConfig::default();
        dev.synchronize().expect("sync");
        let t = Instant::now();
        let old = self.trainer.logprobs(&self.batch, 1.0).expect("logprobs").logp;
        self.trainer.rl_step(&self.batch, &self.advantages, &old, &cfg, 1.0).expect("rl step");
        dev.synchronize().expect("sync");
        t.elapsed()
    }
}

fn rl_update(c: &mut Criterion) {
    treepo_benches::print_load_once();
    for dev in harness::devices() {
        if harness::is_software(&dev) {
            println!("SKIP rl_update on {}: software adapter", dev.description());
            continue;
        }
        for prompt in [32usize, 256] {
            let mut rng = Rng::new(prompt as u64);
            let trees: Vec<TreeSpec> = (0..QUERIES).map(|_| tree(&mut rng, prompt)).collect();
            let seqs: Vec<(Vec<u32>, Vec<u32>)> = trees.iter().flat_map(paths).collect();
            let refs: Vec<(&[u32], &[u32])> =
                seqs.iter().map(|(p, r)| (p.as_slice(), r.as_slice())).collect();
            let packed = TrainBatch::from_trees(&trees).expect("packed batch");
            let flat = TrainBatch::from_sequences(&refs).expect("per-leaf batch");
            assert_eq!(packed.leaf_tokens(), flat.leaf_tokens(), "same trajectories");
            let leaf_adv: Vec<f64> = (0..seqs.len()).map(|_| rng.normal()).collect();
            let id = format!("{}/P={prompt}", dev.kind());
            let mut best = [f64::INFINITY; 2];
            let mut g = c.benchmark_group(format!("rl_update/{id}"));
            g.sample_size(10).measurement_time(Duration::from_secs(8));
            for (k, (name, batch)) in [("packed", &packed), ("per_leaf", &flat)].iter().enumerate()
            {
                let mut step = Step::new(&dev, (*batch).clone(), &leaf_adv);
                g.bench_function(*name, |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                let el = step.run(&dev);
                                best[k] = best[k].min(el.as_secs_f64());
                                el
                            })
                            .sum()
                    })
                });
            }
            g.finish();
            let token_ratio = flat.len() as f64 / packed.len() as f64;
            let time_ratio = best[1] / best[0];
            let trained = packed.leaf_tokens() as f64;
            println!(
                "RESULT rl_update/{id}: {QUERIES} trees × w={WIDTH}, d={DEPTH}, l={SEGMENT}: tokens \
                 packed {} vs per-leaf {} ({token_ratio:.2}x); step packed {:.1} ms vs per-leaf \
                 {:.1} ms: time ratio {time_ratio:.2}x = {:.2} of the token ratio (target >= 0.7); \
                 trained response tokens/s packed {:.0} vs per-leaf {:.0} ({})",
                packed.len(),
                flat.len(),
                best[0] * 1e3,
                best[1] * 1e3,
                time_ratio / token_ratio,
                trained / best[0],
                trained / best[1],
                dev.description()
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = harness::criterion();
    targets = rl_update
}
criterion_main!(benches);
