//! Edge-level estimators in training (TreeGRPO, TreeRL, SPO-tree): every edge is trained once
//! with its own advantage. The per-target gradient on a hand-made tree equals a hand calculation;
//! the packed layout gives the per-edge layout's parameter gradient; `rl_iteration` runs each
//! algorithm end to end and trains exactly the edges with an advantage; misuse is a typed error.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::cli::{text, tiny, tmpdir, treepo, with};
use crate::common::{random_tree, tiny_config, trainer};
use treepo_kernels::Device;
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_sampler::{FinishReason, RolloutTree, TreeConfig, TreeSampler};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::{CharTokenizer, Model, ModelConfig, ModelType, Tokenizer};
use treepo_trainer::pipeline::{self, Algo, RlSettings, SamplingMode, edge_parts};
use treepo_trainer::rl::{
    AdvantageConfig, AdvantageEstimator, Advantages, ClipConfig, LossAggregation, PolicyLossConfig,
    RlError, compute_advantages,
};
use treepo_trainer::rollout::{Rollouts, ScoredLeaf};
use treepo_trainer::tasks::{
    Hooks, ParityConfig, Problem, Score, Split, Task, TaskConfig, TaskError, TaskKind, TaskRng,
    TokenText, problems,
};
use treepo_trainer::train::{EdgeRef, OptimConfig, TrainBatch, TrainError, TreeNodeSpec, TreeSpec};

fn loss_config(aggregation: LossAggregation) -> PolicyLossConfig {
    PolicyLossConfig { clip: ClipConfig::default(), aggregation, kl: None, entropy_coef: 0.0 }
}

fn estimator_config(estimator: AdvantageEstimator) -> AdvantageConfig {
    AdvantageConfig { estimator, ..AdvantageConfig::default() }
}

fn node(parent: Option<usize>, tokens: &[u32]) -> TreeNodeSpec {
    TreeNodeSpec { parent, tokens: tokens.to_vec() }
}

/// A scored leaf of query `query` ending at `leaf` (its path read off `tree`).
fn scored(query: usize, tree: &TreeSpec, leaf: usize, reward: f64) -> ScoredLeaf {
    let mut path = vec![leaf as u32];
    while let Some(p) = tree.nodes[*path.last().unwrap() as usize].parent.filter(|&p| p != 0) {
        path.push(p as u32);
    }
    path.reverse();
    let response = path.iter().flat_map(|&n| tree.nodes[n as usize].tokens.clone()).collect();
    let score = if reward > 0.0 {
        Score::correct("1".into())
    } else {
        Score::wrong(Some("0".into()), true, reward)
    };
    ScoredLeaf {
        query,
        path,
        response,
        text: String::new(),
        reason: FinishReason::Finished,
        score,
        reward,
    }
}

/// Rollouts of `trees` with the given leaf rewards (per tree, in its leaf order).
fn rollouts(trees: Vec<TreeSpec>, rewards: &[&[f64]]) -> Rollouts {
    let mut leaves = Vec::new();
    for (q, (t, rs)) in trees.iter().zip(rewards).enumerate() {
        for (&leaf, &r) in t.leaves.iter().zip(*rs) {
            leaves.push(scored(q, t, leaf, r));
        }
    }
    Rollouts { trees, leaves }
}

/// Two queries. Query 0 (rewards 1/0 in brackets, edge token counts in parentheses):
/// `P → 1(2) → {2(2) → {3(1)[1], 4(2)[0]}, 5(3)[1]}`, `P → 6(1) → {7(2)[0], 8(1)[0]}`.
/// Query 1: `P → {1(1)[1], 2(2)[0]}`.
fn hand_rollouts() -> Rollouts {
    let q0 = TreeSpec {
        nodes: vec![
            node(None, &[1, 2]),
            node(Some(0), &[3, 4]),
            node(Some(1), &[5, 6]),
            node(Some(2), &[7]),
            node(Some(2), &[8, 9]),
            node(Some(1), &[10, 1, 2]),
            node(Some(0), &[3]),
            node(Some(6), &[4, 5]),
            node(Some(6), &[6]),
        ],
        leaves: vec![3, 4, 5, 7, 8],
    };
    let q1 = TreeSpec {
        nodes: vec![node(None, &[2, 3]), node(Some(0), &[4]), node(Some(0), &[5, 6])],
        leaves: vec![1, 2],
    };
    rollouts(vec![q0, q1], &[&[1.0, 0.0, 1.0, 0.0, 0.0], &[1.0, 0.0]])
}

/// The hand-computed advantage of every edge `(query, node)` of [`hand_rollouts`] (`None`: not
/// trained).
fn hand_advantages(algo: Algo) -> BTreeMap<(usize, usize), Option<f64>> {
    let s0 = 0.24f64.sqrt() + 1e-6; // query 0: μ = 0.4, population σ² = 1.2 / 5
    let s1 = 0.5 + 1e-6; // query 1: μ = 0.5, σ = 0.5
    let (r2, r3) = (2f64.sqrt(), 3f64.sqrt());
    let third = 1.0 / 3.0;
    let v: [Option<f64>; 10] = match algo {
        // Leaf z = (R − μ)/(σ + ε); a node takes its children's mean.
        Algo::TreeGrpo => [
            Some(0.35 / s0),
            Some(0.1 / s0),
            Some(0.6 / s0),
            Some(-0.4 / s0),
            Some(0.6 / s0),
            Some(-0.4 / s0),
            Some(-0.4 / s0),
            Some(-0.4 / s0),
            Some(0.5 / s1),
            Some(-0.5 / s1),
        ],
        // (V(s) − V(root) + V(s) − V(parent)) / sqrt(|L(s)|), V = mean leaf reward below.
        // Query 0: V(0) = 0.4, V(1) = 2/3, V(2) = 0.5, V(6) = 0.
        Algo::TreeRl => [
            Some(2.0 * (2.0 * third - 0.4) / r3),
            Some((0.5 - 0.4 + 0.5 - 2.0 * third) / r2),
            Some(0.6 + 0.5),
            Some(-0.4 - 0.5),
            Some(0.6 + third),
            Some(-0.8 / r2),
            Some(-0.4),
            Some(-0.4),
            Some(1.0),
            Some(-1.0),
        ],
        // V(leaf) = R, V(node) = mean of its children's V; A = V(c) − V(p), zeros dropped.
        // Query 0: V(2) = 0.5, V(1) = 0.75, V(6) = 0, V(0) = 0.375.
        Algo::SpoTree => [
            Some(0.375),
            Some(-0.25),
            Some(0.5),
            Some(-0.5),
            Some(0.25),
            Some(-0.375),
            None,
            None,
            Some(0.5),
            Some(-0.5),
        ],
        other => panic!("{other:?} is not edge-level"),
    };
    let keys = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7), (0, 8), (1, 1), (1, 2)];
    keys.into_iter().zip(v).collect()
}

const EDGE_ALGOS: [Algo; 3] = [Algo::TreeGrpo, Algo::TreeRl, Algo::SpoTree];

/// Per target of the packed batch of `r`, the edge `(query, node)` its token belongs to, read
/// off the leaves' targets of `TrainBatch::from_trees` (independently of the edge grouping).
fn target_edges(r: &Rollouts) -> Vec<(usize, usize)> {
    let batch = TrainBatch::from_trees(&r.trees).unwrap();
    let mut edge = vec![(usize::MAX, 0); batch.num_targets()];
    for (leaf, targets) in r.leaves.iter().zip(&batch.leaf_targets) {
        let mut at = 0;
        for &n in &leaf.path {
            for _ in 0..r.trees[leaf.query].nodes[n as usize].tokens.len() {
                edge[targets[at]] = (leaf.query, n as usize);
                at += 1;
            }
        }
        assert_eq!(at, targets.len());
    }
    edge
}

/// `dL/dlogπ` of every target at ratio 1 equals the hand value: `−A_e·w_e` with `w = 1/N`
/// (token-mean, `N` = trained edge tokens) or `1/(G·|e|)` (seq-mean-token-mean, `G` = trained
/// edges), 0 on the tokens of untrained edges; packed and per-edge layouts alike.
#[test]
fn edge_gradients_match_hand_calculation() {
    let dev = Device::cpu();
    let r = hand_rollouts();
    let edge_of_target = target_edges(&r);
    let mut tr = trainer(&dev, tiny_config(false, ModelType::Qwen2), 5, OptimConfig::default());
    let mut worst = 0f64;
    for algo in EDGE_ALGOS {
        let want_adv = hand_advantages(algo);
        let trained: Vec<(usize, usize)> =
            want_adv.iter().filter(|(_, a)| a.is_some()).map(|(&e, _)| e).collect();
        let len = |(q, n): (usize, usize)| r.trees[q].nodes[n].tokens.len();
        let n_tokens: usize = trained.iter().map(|&e| len(e)).sum();
        let g_edges = trained.len() as f64;
        for agg in [LossAggregation::TokenMean, LossAggregation::SeqMeanTokenMean] {
            let weight = |e: (usize, usize)| match agg {
                LossAggregation::TokenMean => 1.0 / n_tokens as f64,
                _ => 1.0 / (g_edges * len(e) as f64),
            };
            for packed in [true, false] {
                let what = format!("{} {agg:?} packed={packed}", algo.name());
                let (_, estimator) = algo.parts();
                let parts = edge_parts(
                    &mut tr,
                    &r,
                    std::slice::from_ref(&(0..2)),
                    &estimator_config(estimator),
                    packed,
                    1.0,
                )
                .unwrap();
                assert_eq!(parts.len(), 1, "{what}");
                let p = &parts[0];
                let got_edges: Vec<(usize, usize)> =
                    p.edges.iter().map(|e| (e.tree, e.node)).collect();
                assert_eq!(got_edges, trained, "{what}: trained edges");
                let (g, _, stats, _) = tr
                    .rl_gradient(&p.batch, &p.advantages, &p.logp_old, &loss_config(agg), 1.0)
                    .unwrap();
                assert_eq!(stats.num_tokens, n_tokens, "{what}: every trained token once");
                assert_eq!(stats.clipped_low + stats.clipped_high + stats.dual_clipped, 0);
                let want: Vec<f64> = if packed {
                    // Per packed target, through the edge its token lies on.
                    edge_of_target
                        .iter()
                        .map(|&e| want_adv[&e].map_or(0.0, |a| -a * weight(e)))
                        .collect()
                } else {
                    let mut want = vec![f64::NAN; p.batch.num_targets()];
                    for (e, group) in got_edges.iter().zip(&p.batch.leaf_targets) {
                        assert_eq!(group.len(), len(*e), "{what}: edge {e:?} targets");
                        for &k in group {
                            want[k] = -want_adv[e].unwrap() * weight(*e);
                        }
                    }
                    want
                };
                let err = assert_close(&what, &g, &want, Tol { atol: 1e-7, rtol: 1e-6 });
                worst = worst.max(err);
            }
        }
    }
    eprintln!("edge gradients vs hand values: max abs error {worst:e}");
}

/// Random rewards on random trees: the packed edge layout's loss statistics and parameter
/// gradients equal the per-edge layout's, with old log-probs off the current ones so that some
/// tokens clip, for every aggregation; and `edge_parts` gives the same gradient in both layouts
/// for every estimator.
#[test]
fn packed_edge_gradients_equal_per_edge_gradients() {
    let dev = Device::cpu();
    for (seed, agg) in [
        (11u64, LossAggregation::TokenMean),
        (12, LossAggregation::SeqMeanTokenMean),
        (13, LossAggregation::SeqMeanTokenSumNorm { constant: 16.0 }),
    ] {
        let mut rng = Rng::new(seed);
        let trees = vec![random_tree(&mut rng, 11, 3, 4), random_tree(&mut rng, 11, 4, 3)];
        let rewards: Vec<Vec<f64>> = trees
            .iter()
            .map(|t| t.leaves.iter().map(|_| rng.below(3) as f64 - 1.0).collect())
            .collect();
        let refs: Vec<&[f64]> = rewards.iter().map(Vec::as_slice).collect();
        let r = rollouts(trees, &refs);
        let edges = r.edges().unwrap();
        // Random advantages on about two thirds of the edges.
        let trained: Vec<EdgeRef> = edges.iter().copied().filter(|_| rng.below(3) > 0).collect();
        let packed = TrainBatch::from_tree_edges(&r.trees, &trained).unwrap();
        let flat = TrainBatch::from_edges(&r.trees, &trained).unwrap();
        assert!(packed.len() < flat.len(), "{} vs {}", packed.len(), flat.len());
        assert_eq!(packed.leaf_tokens(), flat.leaf_tokens());
        let adv: Vec<Vec<f64>> =
            packed.leaf_targets.iter().map(|t| vec![rng.normal(); t.len()]).collect();
        let mut tr = trainer(&dev, tiny_config(false, ModelType::Qwen2), 9, OptimConfig::default());
        let lp = tr.logprobs(&packed, 1.0).unwrap().logp;
        let old_packed: Vec<f32> = lp.iter().map(|&l| l + (rng.normal() * 0.4) as f32).collect();
        let mut old_flat = vec![0f32; flat.num_targets()];
        for (gp, gf) in packed.leaf_targets.iter().zip(&flat.leaf_targets) {
            for (&kp, &kf) in gp.iter().zip(gf) {
                old_flat[kf] = old_packed[kp];
            }
        }
        let cfg = loss_config(agg);
        let (gp, _, sp, _) = tr.rl_gradient(&packed, &adv, &old_packed, &cfg, 1.0).unwrap();
        let (gf, _, sf, _) = tr.rl_gradient(&flat, &adv, &old_flat, &cfg, 1.0).unwrap();
        assert!(sp.clipped_low + sp.clipped_high + sp.dual_clipped > 0, "no clipping: {sp:?}");
        assert_eq!(
            (sp.num_tokens, sp.clipped_low, sp.clipped_high, sp.dual_clipped),
            (sf.num_tokens, sf.clipped_low, sf.clipped_high, sf.dual_clipped)
        );
        assert!(
            (sp.pg_loss - sf.pg_loss).abs() <= 1e-5 * sf.pg_loss.abs().max(1.0),
            "{} vs {}",
            sp.pg_loss,
            sf.pg_loss
        );
        let err =
            param_grads_agree(&dev, &mut tr, [(&packed, &gp), (&flat, &gf)], &format!("{agg:?}"));
        eprintln!(
            "{agg:?}: {} packed vs {} per-edge tokens, max grad error {err:e}",
            packed.len(),
            flat.len()
        );
        // Through edge_parts (ratio 1), every estimator.
        for algo in EDGE_ALGOS {
            let adv_cfg = estimator_config(algo.parts().1);
            let mut grads = Vec::new();
            for layout in [true, false] {
                let parts =
                    edge_parts(&mut tr, &r, std::slice::from_ref(&(0..2)), &adv_cfg, layout, 1.0)
                        .unwrap();
                let p = &parts[0];
                let (g, _, _, _) =
                    tr.rl_gradient(&p.batch, &p.advantages, &p.logp_old, &cfg, 1.0).unwrap();
                grads.push((p.batch.clone(), g));
            }
            let err = param_grads_agree(
                &dev,
                &mut tr,
                [(&grads[0].0, &grads[0].1), (&grads[1].0, &grads[1].1)],
                &format!("edge_parts {} {agg:?}", algo.name()),
            );
            eprintln!("edge_parts {} {agg:?}: max grad error {err:e}", algo.name());
        }
    }
}

/// The parameter gradients of two (batch, dL/dlogπ) pairs agree; returns the max error.
fn param_grads_agree(
    dev: &Device,
    tr: &mut treepo_trainer::train::Trainer,
    pairs: [(&TrainBatch, &Vec<f32>); 2],
    what: &str,
) -> f64 {
    let mut grads = Vec::new();
    for (batch, g) in pairs {
        tr.optim.zero_grad(dev).unwrap();
        tr.accumulate(batch, g, None, 1.0).unwrap();
        grads.push(dev.download(&tr.optim.grads).unwrap());
    }
    let want: Vec<f64> = grads[1].iter().map(|&g| g as f64).collect();
    let scale = want.iter().fold(0f64, |m, g| m.max(g.abs()));
    assert!(scale > 0.0, "{what}: zero gradient");
    assert_close(
        &format!("packed vs per-edge gradients ({what})"),
        &grads[0],
        &want,
        Tol { atol: 2e-5 * scale, rtol: 1e-4 },
    )
}

/// Parity prompts, rewarded by the parity of the response's character codes (+1 even, −1 odd),
/// so that a random model's trees have mixed rewards.
#[derive(Debug)]
struct LengthParity(Box<dyn Task>);

impl Task for LengthParity {
    fn kind(&self) -> TaskKind {
        self.0.kind()
    }
    fn vocabulary(&self) -> Option<&str> {
        self.0.vocabulary()
    }
    fn stop_symbol(&self) -> Option<char> {
        self.0.stop_symbol()
    }
    fn generate(&self, split: Split, index: u64) -> Result<Problem, TaskError> {
        self.0.generate(split, index)
    }
    fn sft_response(&self, problem: &Problem, rng: &mut TaskRng) -> Result<String, TaskError> {
        self.0.sft_response(problem, rng)
    }
    fn score(&self, _: &Problem, response: &str) -> Result<Score, TaskError> {
        Ok(if response.chars().map(u32::from).sum::<u32>() % 2 == 0 {
            Score::correct("even".into())
        } else {
            Score::wrong(Some("odd".into()), true, -1.0)
        })
    }
    fn hooks(&self, tokens: Arc<dyn TokenText>) -> Result<Hooks, TaskError> {
        self.0.hooks(tokens)
    }
}

/// Each edge-level algorithm runs an RL iteration on a tiny model (packed and per-edge): the
/// update happens, the stats are finite, and the trained edges and tokens are exactly the edges
/// with an advantage (recomputed from the sampled trees).
#[test]
fn rl_iteration_trains_each_edge_once() {
    let dev = Device::cpu();
    let inner =
        TaskConfig::ParityCot(ParityConfig { min_bits: 4, max_bits: 4, ..Default::default() })
            .build()
            .unwrap();
    let task = LengthParity(inner);
    let tok = Tokenizer::Char(CharTokenizer::new(task.vocabulary().unwrap()).unwrap());
    let hooks: Hooks = task.hooks(Arc::new(tok.clone())).unwrap();
    let mut mc: ModelConfig = tiny_config(false, ModelType::Qwen2);
    mc.vocab_size = tok.vocab_size();
    let mut sampler = TreeConfig::with_shape(3, 3, 2, 4);
    sampler.temperature = 1.0;
    sampler.stop_token_ids.insert(tok.token_id(&task.stop_symbol().unwrap().to_string()).unwrap());
    for (i, algo) in EDGE_ALGOS.into_iter().enumerate() {
        for packed in [true, false] {
            let what = format!("{} packed={packed}", algo.name());
            let mut tr = trainer(&dev, mc.clone(), 20 + i as u64, OptimConfig::default());
            let (mode, estimator) = algo.parts();
            assert_eq!(mode, SamplingMode::Tree);
            let mut cfg = sampler.clone();
            cfg.seed = 7 + i as u64;
            let settings = RlSettings {
                sampling: mode,
                advantage: estimator_config(estimator),
                loss: loss_config(LossAggregation::TokenMean),
                sampler: cfg,
                mini_batches: 2,
                packed,
                dynamic_sampling: None,
                overlong: None,
            };
            let sampled: RefCell<Vec<(RolloutTree, Vec<Problem>)>> = RefCell::new(Vec::new());
            let mut sample = |model: &Model, c: &TreeConfig, m: SamplingMode, ps: &[Problem]| {
                let mut engine = ModelEngine::new(model, EngineConfig::with_pages(256))
                    .map_err(|e| TrainError::Batch(e.to_string()))?;
                let s = TreeSampler::new(c.clone(), hooks.clone())
                    .map_err(|e| TrainError::Config(e.to_string()))?;
                let tree = pipeline::sample(&mut engine, &s, m, &tok, ps)?;
                sampled.borrow_mut().push((tree.clone(), ps.to_vec()));
                Ok(tree)
            };
            let before = tr.model.params_host().unwrap();
            let stats =
                pipeline::rl_iteration(&mut tr, &mut sample, &task, &tok, &settings, || {
                    problems(&task, Split::Train, 0..4)
                        .map_err(|e| TrainError::Batch(e.to_string()))
                })
                .unwrap();
            // What should have been trained, recomputed from the sampled trees.
            let (tree, ps) = sampled.borrow()[0].clone();
            let r = Rollouts::collect(&tree, &ps, &task, &tok, None).unwrap();
            let sums: BTreeMap<EdgeRef, f64> =
                r.edges().unwrap().into_iter().map(|e| (e, 0.0)).collect();
            let topo = r.edge_topology(&sums).unwrap();
            let Advantages::PerEdge(adv) =
                compute_advantages(&settings.advantage, &topo.topology).unwrap()
            else {
                panic!("{what}: not edge-level")
            };
            let trained: Vec<EdgeRef> = adv
                .trained()
                .filter_map(|(n, _)| topo.edges[n])
                .filter(|e| !r.trees[e.tree].nodes[e.node].tokens.is_empty())
                .collect();
            let tokens: usize =
                trained.iter().map(|e| r.trees[e.tree].nodes[e.node].tokens.len()).sum();
            eprintln!("{what}: {stats:?}");
            assert!(stats.updated, "{what}: no update");
            assert_eq!(stats.trained_edges, trained.len(), "{what}");
            assert_eq!(stats.trained_tokens, tokens, "{what}");
            assert!(stats.trained_tokens <= stats.leaf_tokens, "{what}");
            if algo != Algo::SpoTree {
                // TreeGRPO and TreeRL train every edge with tokens.
                let all = r.edges().unwrap();
                let with_tokens =
                    all.iter().filter(|e| !r.trees[e.tree].nodes[e.node].tokens.is_empty());
                assert_eq!(stats.trained_edges, with_tokens.count(), "{what}");
            }
            for (name, v) in [
                ("reward", stats.reward),
                ("adv_mean", stats.adv_mean),
                ("adv_std", stats.adv_std),
                ("clip_frac", stats.clip_frac),
                ("ppo_kl", stats.ppo_kl),
                ("entropy", stats.entropy),
                ("pg_loss", stats.pg_loss),
                ("grad_norm", stats.grad_norm),
            ] {
                assert!(v.is_finite(), "{what}: {name} = {v}");
            }
            assert!(stats.grad_norm > 0.0, "{what}: zero gradient");
            let after = tr.model.params_host().unwrap();
            assert!(after != before, "{what}: the weights did not change");
        }
    }
}

/// Misuse answers with typed errors, never a panic: an edge-level estimator with sequential
/// sampling, a leaf-level estimator given to `edge_parts`, malformed edge lists, a topology
/// whose leaf has children.
#[test]
fn edge_level_misuse_is_a_typed_error() {
    let dev = Device::cpu();
    let mut tr = trainer(&dev, tiny_config(false, ModelType::Qwen2), 3, OptimConfig::default());
    // Sequential sampling with an edge-level estimator: refused before sampling.
    let task = TaskConfig::from_name("parity-cot").unwrap().build().unwrap();
    let tok = Tokenizer::Char(CharTokenizer::new(task.vocabulary().unwrap()).unwrap());
    for algo in EDGE_ALGOS {
        let settings = RlSettings {
            sampling: SamplingMode::Sequential,
            advantage: estimator_config(algo.parts().1),
            loss: PolicyLossConfig::default(),
            sampler: TreeConfig::with_shape(2, 2, 2, 2),
            mini_batches: 1,
            packed: false,
            dynamic_sampling: None,
            overlong: None,
        };
        let mut sample = |_: &Model, _: &TreeConfig, _: SamplingMode, _: &[Problem]| {
            panic!("sampled despite the config error")
        };
        let err =
            pipeline::rl_iteration(&mut tr, &mut sample, task.as_ref(), &tok, &settings, || {
                panic!("asked for problems despite the config error")
            })
            .unwrap_err();
        assert!(
            matches!(&err, TrainError::Config(m) if m.contains("needs tree sampling")),
            "{}: {err}",
            algo.name()
        );
    }
    // A leaf-level estimator has no edge advantages.
    let r = hand_rollouts();
    let err = edge_parts(
        &mut tr,
        &r,
        std::slice::from_ref(&(0..2)),
        &estimator_config(AdvantageEstimator::Grpo),
        true,
        1.0,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Rl(RlError::WrongLevel { .. })), "{err}");
    // Chunks past the rollouts.
    let err = edge_parts(
        &mut tr,
        &r,
        std::slice::from_ref(&(0..3)),
        &estimator_config(AdvantageEstimator::TreeRl),
        true,
        1.0,
    )
    .unwrap_err();
    assert!(err.to_string().contains("there are 2 queries"), "{err}");
    // Malformed edge lists, both layouts.
    let e = |tree, node| EdgeRef { tree, node };
    for (edges, needle) in [
        (vec![], "no edges"),
        (vec![e(0, 0)], "is the prompt"),
        (vec![e(2, 1)], "there are 2 trees"),
        (vec![e(0, 9)], "has 9 nodes"),
        (vec![e(0, 1), e(0, 1)], "listed twice"),
    ] {
        for build in [TrainBatch::from_tree_edges, TrainBatch::from_edges] {
            let err = build(&r.trees, &edges).unwrap_err();
            assert!(matches!(&err, TrainError::Batch(m) if m.contains(needle)), "{edges:?}: {err}");
        }
    }
    let mut empty = r.trees.clone();
    empty[0].nodes[3].tokens.clear();
    let err = TrainBatch::from_edges(&empty, &[e(0, 3)]).unwrap_err();
    assert!(err.to_string().contains("no tokens"), "{err}");
    // An edge off every leaf path has no targets in the packed layout.
    let mut dangling = r.trees.clone();
    dangling[1].nodes.push(node(Some(0), &[7]));
    let err = TrainBatch::from_tree_edges(&dangling, &[e(1, 3)]).unwrap_err();
    assert!(err.to_string().contains("no leaf's path"), "{err}");
    let zeros: BTreeMap<EdgeRef, f64> = r.edges().unwrap().into_iter().map(|e| (e, 0.0)).collect();
    // A leaf with children: the topology rejects it.
    let mut bad = hand_rollouts();
    bad.trees[0].leaves[0] = 2; // node 2 has children 3 and 4
    let err = bad.edge_topology(&zeros).unwrap_err();
    assert!(matches!(err, TrainError::Rl(RlError::InvalidTree(_))), "{err}");
    // Leaf counts that disagree with the tree.
    let mut short = hand_rollouts();
    short.leaves.pop();
    let err = short.edge_topology(&zeros).unwrap_err();
    assert!(err.to_string().contains("query 1: 2 leaves in the tree, 1 scored"), "{err}");
    // Two leaves on one node.
    let mut twice = hand_rollouts();
    twice.trees[1].leaves[1] = 1;
    let err = twice.edge_topology(&zeros).unwrap_err();
    assert!(err.to_string().contains("two leaves end at node 1"), "{err}");
}

/// The topology of [`hand_rollouts`]: parents, token counts, old log-prob sums and rewards as
/// laid out by `Rollouts::edge_topology`, every edge inside the window.
#[test]
fn edge_topology_of_rollouts() {
    let r = hand_rollouts();
    let edges = r.edges().unwrap();
    assert_eq!(edges.len(), 10);
    let sums: BTreeMap<EdgeRef, f64> =
        edges.iter().enumerate().map(|(i, &e)| (e, -(i as f64) - 0.5)).collect();
    let t = r.edge_topology(&sums).unwrap();
    let topo = &t.topology;
    assert_eq!(topo.num_nodes(), 12);
    assert_eq!(topo.roots(), &[0, 9]);
    assert_eq!(t.edges[0], None);
    assert_eq!(t.edges[9], None);
    for (id, e) in t.edges.iter().enumerate() {
        let Some(e) = e else { continue };
        let spec = &r.trees[e.tree].nodes[e.node];
        let stats = topo.edge(id).unwrap();
        assert_eq!(stats.num_tokens, spec.tokens.len());
        assert_eq!(stats.old_logprob_sum, sums[e]);
        assert_eq!(stats.window, treepo_trainer::rl::BranchingWindow::Inside);
        let parent = topo.parent(id).unwrap();
        let want_parent = spec.parent.unwrap();
        match t.edges[parent] {
            None => assert_eq!(want_parent, 0),
            Some(p) => assert_eq!((p.tree, p.node), (e.tree, want_parent)),
        }
    }
    let rewards: Vec<f64> = topo.leaves().iter().map(|&l| topo.reward(l).unwrap()).collect();
    assert_eq!(rewards, vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    // A missing sum for an edge with tokens is an error.
    let mut missing = sums.clone();
    missing.remove(&edges[0]);
    assert!(r.edge_topology(&missing).unwrap_err().to_string().contains("no old log-prob sum"));
}

/// The binary trains with the edge-level algorithms: `--algo treegrpo` on the command line,
/// `rl.algo = "spo-tree"` (per-edge layout) in the config file; an unknown name lists them.
#[test]
fn cli_trains_with_edge_algos() {
    let dir = tmpdir("edge-algos");
    let out = dir.join("runs");
    let path = dir.join("run.toml");
    let cases = [
        ("flag", tiny(&out), vec!["--algo", "treegrpo"], "treegrpo"),
        (
            "toml",
            with(&with(&tiny(&out), "rl", "algo = \"spo-tree\""), "rl", "packed = false"),
            vec![],
            "spo-tree",
        ),
    ];
    for (name, cfg, extra, algo) in cases {
        std::fs::write(&path, cfg).unwrap();
        let mut args = vec!["train", "--config", path.to_str().unwrap(), "--name", name];
        args.extend(extra);
        let o = treepo(&args);
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        let metrics = std::fs::read_to_string(out.join(name).join("metrics.jsonl")).unwrap();
        assert!(metrics.contains(&format!("\"algo\":\"{algo}\"")), "{name}: {metrics}");
    }
    let o = treepo(&["train", "--config", path.to_str().unwrap(), "--algo", "tree-sgd"]);
    let e = text(&o.stderr);
    assert!(!o.status.success() && e.contains("treegrpo, treerl, spo-tree"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
