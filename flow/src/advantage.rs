//! From leaf rewards to one advantage per trained transition (docs/flow.md §4).
//!
//! - Each reward model's scores are z-scored over the leaves of a prompt, then summed: the leaf
//!   reward `r` (TreeGRPO's and DanceGRPO's multi-reward rule).
//! - **Tree**: the window transitions form a [`RolloutTopology`](treepo_rl::RolloutTopology) per prompt (root = the state at
//!   the window start, one edge per SDE transition, leaves carry `r`), and the rl crate's
//!   TreeGRPO estimator backs the advantages up: leaf `A = (r − μ)/(σ + ε)` over the prompt's
//!   leaves, `A(u) = Σ_children softmax(log π_old)·A(child)`, each edge gets the advantage of the
//!   node it leads into. Every window edge is trained once.
//! - **Flat**: GRPO's `(r − μ)/(σ + ε)` over the prompt's `G` trajectories, given to each of the
//!   trajectory's `T` transitions.
//!
//! Both use the Bessel σ and `ε = 1e-6` (the rl crate's GRPO), so the two layouts z-score their
//! leaves identically and differ only in the backup.

use treepo_rl::advantage::{
    BackupWeights, LogProbReduce, StdKind, TreeGrpoOptions, grpo, tree_grpo,
};
use treepo_rl::{BranchingWindow, EdgeStats, LeafRecord, TopologyBuilder};

use crate::rollout::Rollouts;
use crate::{FlowError, Result};

/// ε of the z-scores.
const EPS: f64 = 1e-6;

/// Leaf rewards: each reward's scores z-scored over each prompt's leaves (Bessel σ; 0 for a
/// prompt whose leaves all score the same), weighted by `weights[j]` and summed over rewards.
/// `scores[j][leaf]`.
pub fn combine_rewards(r: &Rollouts, scores: &[Vec<f64>], weights: &[f64]) -> Result<Vec<f64>> {
    let n = r.leaves.len();
    if weights.len() != scores.len() {
        return Err(FlowError::Shape(format!(
            "{} weights for {} rewards",
            weights.len(),
            scores.len()
        )));
    }
    if let Some(l) = r.leaves.iter().position(|l| l.prompt >= r.classes.len()) {
        return Err(FlowError::Shape(format!(
            "leaf {l} belongs to prompt {} of {}",
            r.leaves[l].prompt,
            r.classes.len()
        )));
    }
    if let Some(j) = weights.iter().position(|w| !w.is_finite()) {
        return Err(FlowError::NonFinite(format!("weight {j} of the rewards is {}", weights[j])));
    }
    let mut total = vec![0.0; n];
    for (j, (s, &w)) in scores.iter().zip(weights).enumerate() {
        if s.len() != n {
            return Err(FlowError::Shape(format!("reward {j} scored {} of {n} leaves", s.len())));
        }
        if let Some(i) = s.iter().position(|v| !v.is_finite()) {
            return Err(FlowError::NonFinite(format!("reward {j} of leaf {i} is {}", s[i])));
        }
        for p in 0..r.classes.len() {
            let idx: Vec<usize> = (0..n).filter(|&i| r.leaves[i].prompt == p).collect();
            let z = zscore(&idx.iter().map(|&i| s[i]).collect::<Vec<_>>());
            for (&i, z) in idx.iter().zip(z) {
                total[i] += w * z;
            }
        }
    }
    Ok(total)
}

/// `(x − μ)/(σ + ε)` with the Bessel σ; all zeros when every value is equal (or there is one).
fn zscore(xs: &[f64]) -> Vec<f64> {
    let n = xs.len();
    if n < 2 || xs.iter().all(|&x| x == xs[0]) {
        return vec![0.0; n];
    }
    let mu = xs.iter().sum::<f64>() / n as f64;
    let sd = (xs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    xs.iter().map(|x| (x - mu) / (sd + EPS)).collect()
}

/// TreeGRPO's options here: Bessel σ (as GRPO), softmax of the summed (one-step) log π_old at
/// temperature 1.
pub fn tree_options() -> TreeGrpoOptions {
    TreeGrpoOptions {
        std: StdKind::Sample,
        weights: BackupWeights::Softmax { reduce: LogProbReduce::Sum, temperature: 1.0 },
        eps: EPS,
    }
}

/// Per transition, the advantage it trains with, from tree rollouts and their leaf rewards.
pub fn tree_advantages(
    r: &Rollouts,
    leaf_rewards: &[f64],
    opts: &TreeGrpoOptions,
) -> Result<Vec<f64>> {
    check_rewards(r, leaf_rewards)?;
    let mut last_of_leaf = vec![None; r.transitions.len()];
    for (li, leaf) in r.leaves.iter().enumerate() {
        let Some(&last) = leaf.path.last() else {
            return Err(FlowError::Shape(format!("leaf {li} has no SDE transition")));
        };
        let slot = last_of_leaf.get_mut(last).ok_or_else(|| {
            FlowError::Shape(format!("leaf {li} ends in transition {last}, which does not exist"))
        })?;
        *slot = Some(li);
    }
    let mut b = TopologyBuilder::new();
    let roots: Vec<usize> = (0..r.classes.len()).map(|_| b.add_root()).collect();
    let mut node_of = Vec::with_capacity(r.transitions.len());
    for (ti, t) in r.transitions.iter().enumerate() {
        let parent = match t.parent {
            None => roots.get(t.prompt).copied(),
            Some(p) => node_of.get(p).copied(),
        }
        .ok_or_else(|| {
            FlowError::Shape(format!(
                "transition {ti} (prompt {}, parent {:?}) has no earlier parent among {} prompts \
                 and {ti} transitions",
                t.prompt,
                t.parent,
                roots.len()
            ))
        })?;
        let edge = EdgeStats {
            old_logprob_sum: t.logp_old,
            num_tokens: 1,
            window: BranchingWindow::Inside,
        };
        node_of.push(match last_of_leaf[ti] {
            Some(li) => b.add_leaf(parent, edge, leaf_rewards[li]),
            None => b.add_node(parent, edge),
        });
    }
    let adv = tree_grpo(&b.build()?, opts)?;
    node_of
        .iter()
        .enumerate()
        .map(|(ti, &node)| {
            adv.get(node).ok_or_else(|| {
                FlowError::Shape(format!("transition {ti} got no edge advantage (node {node})"))
            })
        })
        .collect()
}

/// Per transition, GRPO's advantage of its trajectory (flat rollouts: each leaf's path is its
/// own trajectory).
pub fn flat_advantages(r: &Rollouts, leaf_rewards: &[f64]) -> Result<Vec<f64>> {
    check_rewards(r, leaf_rewards)?;
    let records: Vec<LeafRecord> = r
        .leaves
        .iter()
        .zip(leaf_rewards)
        .map(|(l, &reward)| LeafRecord {
            query: l.prompt,
            path: Vec::new(),
            reward,
            num_tokens: l.path.len(),
        })
        .collect();
    let leaf_adv = grpo(&records)?;
    let mut out = vec![f64::NAN; r.transitions.len()];
    for (leaf, a) in r.leaves.iter().zip(leaf_adv) {
        for &t in &leaf.path {
            *out.get_mut(t).ok_or_else(|| {
                FlowError::Shape(format!(
                    "a leaf's path names transition {t}, which does not exist"
                ))
            })? = a;
        }
    }
    if let Some(t) = out.iter().position(|a| a.is_nan()) {
        return Err(FlowError::Shape(format!("transition {t} belongs to no trajectory")));
    }
    Ok(out)
}

fn check_rewards(r: &Rollouts, rewards: &[f64]) -> Result<()> {
    if rewards.len() != r.leaves.len() {
        return Err(FlowError::Shape(format!(
            "{} rewards for {} leaves",
            rewards.len(),
            r.leaves.len()
        )));
    }
    if let Some(i) = rewards.iter().position(|v| !v.is_finite()) {
        return Err(FlowError::NonFinite(format!("reward of leaf {i} is {}", rewards[i])));
    }
    Ok(())
}
