//! Training inputs of one RL iteration, mini-batch by mini-batch: leaf-level (one advantage
//! per leaf over its response tokens) and edge-level.
//!
//! ## Edge-level estimators in training
//!
//! TreeGRPO, TreeRL and SPO-tree ([`Algo::TreeGrpo`](super::Algo::TreeGrpo), [`Algo::TreeRl`](super::Algo::TreeRl),
//! [`Algo::SpoTree`](super::Algo::SpoTree)) give
//! one advantage per edge (segment). [`edge_parts`] builds the
//! [`RolloutTopology`](crate::rl::RolloutTopology) of the rollouts ([`Rollouts::edge_topology`]:
//! per edge its token count and the sum of its tokens' old log-probs, recomputed by the trainer's
//! forward; every edge inside the branching window, as the LM sampler has none), runs the
//! estimator, and trains **each edge's tokens exactly once, with that edge's advantage**. The
//! batch's target groups ([`TrainBatch::leaf_targets`]) are the trained edges instead of the
//! leaves, so the loss aggregation treats every trained edge as one sequence:
//!
//! - `token-mean`: `w = 1/N`, `N` = the tokens of the mini-batch's trained edges (each once);
//! - `seq-mean-token-mean`: `w_e = 1/(G·|e|)`, `G` = the trained edges of the mini-batch;
//! - `seq-mean-token-sum-norm`: `w = 1/constant`.
//!
//! Edges without an advantage (roots, SPO-tree's exactly-zero edges) and edges without tokens
//! are not trained at all: no surrogate, KL or entropy term, and they count in no denominator.
//! A mini-batch with no trained edge takes no optimizer step. Packed (`packed = true`: whole
//! trees, [`TrainBatch::from_tree_edges`]) and per-edge (`packed = false`: every trained edge
//! alone with its prompt and ancestors as context, [`TrainBatch::from_edges`]) layouts give the
//! same gradient. Edge-level estimators need tree sampling
//! ([`rl_iteration`](super::rl_iteration) rejects
//! [`SamplingMode::Sequential`](super::SamplingMode::Sequential)); dynamic sampling drops queries
//! before the topology is built, and as every edge-level estimator is per query, the kept
//! queries' advantages do not depend on the dropped ones.

use std::collections::BTreeMap;
use std::ops::Range;

use super::RlSettings;
use crate::rl::{
    AdvantageConfig, AdvantageLevel, Advantages, RlError, compute_advantages,
    compute_leaf_advantages,
};
use crate::rollout::Rollouts;
use crate::train::{EdgeRef, TrainBatch, TrainError, Trainer};

/// One mini-batch ready for [`Trainer::rl_step`]: the batch, per target group the advantage at
/// each of its targets, and the old log-probs of every target.
type Part = (TrainBatch, Vec<Vec<f64>>, Vec<f32>);

/// Leaf-level training inputs: one advantage per leaf, broadcast over the leaf's response tokens,
/// the leaves of `chunks` (query ranges) as mini-batches; with the advantages of every leaf.
pub(super) fn leaf_parts(
    trainer: &mut Trainer,
    rollouts: &Rollouts,
    chunks: &[Range<usize>],
    settings: &RlSettings,
) -> Result<(Vec<Part>, Vec<f64>), TrainError> {
    let adv = compute_leaf_advantages(&settings.advantage, &rollouts.leaf_records())?;
    let mut parts = Vec::with_capacity(chunks.len());
    for qs in chunks {
        let mut part = rollouts.clone();
        part.retain_queries(|q| qs.contains(&q));
        let leaf_idx: Vec<usize> = (0..rollouts.leaves.len())
            .filter(|&i| qs.contains(&rollouts.leaves[i].query))
            .collect();
        let batch = part.batch(settings.packed)?;
        let advantages: Vec<Vec<f64>> =
            leaf_idx.iter().zip(&batch.leaf_targets).map(|(&i, t)| vec![adv[i]; t.len()]).collect();
        let old = trainer.logprobs(&batch, settings.sampler.temperature)?.logp;
        parts.push((batch, advantages, old));
    }
    Ok((parts, adv))
}

/// One mini-batch of edge-level training ([`edge_parts`]).
#[derive(Clone, Debug)]
pub struct EdgePart {
    /// The batch; its target groups ([`TrainBatch::leaf_targets`]) are the trained edges, in
    /// `edges` order.
    pub batch: TrainBatch,
    /// The trained edges ([`EdgeRef::tree`] = the query's index in the rollouts).
    pub edges: Vec<EdgeRef>,
    /// Per trained edge, its advantage repeated on each of its targets (what
    /// [`Trainer::rl_step`] takes).
    pub advantages: Vec<Vec<f64>>,
    /// Old log-probs of every target of `batch` (the trainer's forward before any update).
    pub logp_old: Vec<f32>,
}

/// Edge-level training inputs of `rollouts`, one [`EdgePart`] per mini-batch of `chunks` (query
/// ranges) that has an edge to train (see the module doc, "Edge-level estimators in training").
///
/// 1. Per chunk, every edge with tokens on some leaf's path is laid out (`packed`: whole trees;
///    else each edge alone) and the old log-probs of its tokens are computed by the trainer's
///    forward at `temperature`, before any update.
/// 2. The [`RolloutTopology`](crate::rl::RolloutTopology) of all of `rollouts` gets each edge's
///    token count and old log-prob sum ([`Rollouts::edge_topology`]); `advantage` (an
///    edge-level estimator, else [`RlError::WrongLevel`]) gives the edge advantages.
/// 3. Per chunk, the edges with an advantage are the target groups of the batch, each with its
///    advantage on every one of its targets; the others are not trained.
pub fn edge_parts(
    trainer: &mut Trainer,
    rollouts: &Rollouts,
    chunks: &[Range<usize>],
    advantage: &AdvantageConfig,
    packed: bool,
    temperature: f32,
) -> Result<Vec<EdgePart>, TrainError> {
    let estimator = advantage.estimator;
    if estimator.level() != AdvantageLevel::PerEdge {
        return Err(
            RlError::WrongLevel { estimator: estimator.name(), produces: "per-leaf" }.into()
        );
    }
    let layout = |trees: &[crate::train::TreeSpec], edges: &[EdgeRef]| {
        if packed {
            TrainBatch::from_tree_edges(trees, edges)
        } else {
            TrainBatch::from_edges(trees, edges)
        }
    };
    let all_edges = rollouts.edges()?;
    // 1. Every edge with tokens, laid out per chunk (tree ids local to the chunk), old log-probs.
    let mut sums = BTreeMap::new();
    let mut staged = Vec::with_capacity(chunks.len());
    for qs in chunks {
        if qs.end > rollouts.trees.len() {
            return Err(TrainError::Batch(format!(
                "mini-batch of queries {qs:?}: there are {} queries",
                rollouts.trees.len()
            )));
        }
        let trees = &rollouts.trees[qs.clone()];
        let local: Vec<EdgeRef> = all_edges
            .iter()
            .filter(|e| {
                qs.contains(&e.tree) && !rollouts.trees[e.tree].nodes[e.node].tokens.is_empty()
            })
            .map(|e| EdgeRef { tree: e.tree - qs.start, node: e.node })
            .collect();
        if local.is_empty() {
            continue;
        }
        let batch = layout(trees, &local)?;
        let old = trainer.logprobs(&batch, temperature)?.logp;
        for (e, group) in local.iter().zip(&batch.leaf_targets) {
            let sum = group.iter().map(|&k| old[k] as f64).sum::<f64>();
            sums.insert(EdgeRef { tree: e.tree + qs.start, node: e.node }, sum);
        }
        staged.push((qs.clone(), local, batch, old));
    }
    // 2. Advantages over the whole topology.
    let topo = rollouts.edge_topology(&sums)?;
    let Advantages::PerEdge(values) = compute_advantages(advantage, &topo.topology)? else {
        return Err(
            RlError::WrongLevel { estimator: estimator.name(), produces: "per-leaf" }.into()
        );
    };
    let adv_of: BTreeMap<EdgeRef, f64> = values
        .trained()
        .filter_map(|(node, a)| topo.edges.get(node).copied().flatten().map(|e| (e, a)))
        .collect();
    // 3. The trained edges of each chunk.
    let mut parts = Vec::with_capacity(staged.len());
    for (qs, local, full, old_full) in staged {
        let global = |e: &EdgeRef| EdgeRef { tree: e.tree + qs.start, node: e.node };
        let keep: Vec<usize> =
            (0..local.len()).filter(|&i| adv_of.contains_key(&global(&local[i]))).collect();
        if keep.is_empty() {
            continue;
        }
        let edges: Vec<EdgeRef> = keep.iter().map(|&i| global(&local[i])).collect();
        let advantages: Vec<Vec<f64>> = keep
            .iter()
            .zip(&edges)
            .map(|(&i, e)| vec![adv_of[e]; full.leaf_targets[i].len()])
            .collect();
        let (batch, logp_old) = if packed {
            // Same tokens and targets: only the groups change.
            let mut batch = full;
            batch.leaf_targets = keep.iter().map(|&i| batch.leaf_targets[i].clone()).collect();
            (batch, old_full)
        } else {
            // Only the trained edges' sequences; their old log-probs carried over group by group.
            let trained: Vec<EdgeRef> = keep.iter().map(|&i| local[i]).collect();
            let batch = layout(&rollouts.trees[qs.clone()], &trained)?;
            let mut old = vec![f32::NAN; batch.num_targets()];
            for (group, &i) in batch.leaf_targets.iter().zip(&keep) {
                for (&k, &kf) in group.iter().zip(&full.leaf_targets[i]) {
                    old[k] = old_full[kf];
                }
            }
            if old.iter().any(|x| x.is_nan()) {
                return Err(TrainError::Batch(
                    "a target of the per-edge batch belongs to no trained edge".into(),
                ));
            }
            (batch, old)
        };
        parts.push(EdgePart { batch, edges, advantages, logp_old });
    }
    Ok(parts)
}
