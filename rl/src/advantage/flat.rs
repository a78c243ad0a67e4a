//! Flat (tree-ignoring) baselines over each query's group of leaves (docs/treepo.md §2.2). All
//! return one value per leaf in input order.
//!
//! Decision for groups of size 1: every estimator gives 0 before any batch whitening (GRPO: the
//! rule of docs/treepo.md §2.2; Dr.GRPO and REINFORCE++: `R − R`; RLOO: no other sample to
//! compare with). verl uses mean 0 / std 1 for a size-1 group, which would give `R`.

use super::whiten::whiten_token_weighted;
use crate::error::RlError;
use crate::tree_input::{LeafRecord, group_by_query};

/// GRPO's epsilon in `(R − mean)/(std + ε)` (verl's value).
pub const GRPO_EPS: f64 = 1e-6;

/// GRPO: `(R_i − mean_g)/(std_g + 1e-6)` with the unbiased (Bessel) std of the group.
pub fn grpo(leaves: &[LeafRecord]) -> Result<Vec<f64>, RlError> {
    per_group(leaves, |rewards, r| {
        let n = rewards.len();
        if n < 2 {
            return 0.0;
        }
        let mean = mean(rewards);
        let var = rewards.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (r - mean) / (var.sqrt() + GRPO_EPS)
    })
}

/// Dr.GRPO: `R_i − mean_g` (no std division).
pub fn dr_grpo(leaves: &[LeafRecord]) -> Result<Vec<f64>, RlError> {
    per_group(leaves, |rewards, r| r - mean(rewards))
}

/// RLOO: `R_i − mean of the other n−1 rewards of the group`.
pub fn rloo(leaves: &[LeafRecord]) -> Result<Vec<f64>, RlError> {
    per_group(leaves, |rewards, r| {
        let n = rewards.len();
        if n < 2 {
            return 0.0;
        }
        let others = rewards.iter().sum::<f64>() - r;
        r - others / (n - 1) as f64
    })
}

/// REINFORCE++ baseline: `R_i − mean_g`, then global token whitening over the batch.
pub fn reinforce_pp_baseline(leaves: &[LeafRecord]) -> Result<Vec<f64>, RlError> {
    let centered = dr_grpo(leaves)?;
    let num_tokens: Vec<usize> = leaves.iter().map(|l| l.num_tokens).collect();
    whiten_token_weighted(&centered, &num_tokens)
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Applies `f(group rewards, own reward)` to each leaf, groups by query.
fn per_group(leaves: &[LeafRecord], f: impl Fn(&[f64], f64) -> f64) -> Result<Vec<f64>, RlError> {
    let groups = group_by_query(leaves)?;
    let mut out = vec![0.0; leaves.len()];
    for group in &groups {
        let rewards: Vec<f64> = group.iter().map(|&i| leaves[i].reward).collect();
        for (&i, &r) in group.iter().zip(&rewards) {
            out[i] = f(&rewards, r);
        }
    }
    Ok(out)
}
