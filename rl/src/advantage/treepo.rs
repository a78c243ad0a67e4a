//! TreePO's advantage, `tree_reinforce_plus_plus_baseline` (docs/treepo.md §2.1).
//!
//! For each leaf `i` with path `p_i` and each depth `k = 0 ..= |p_i|`, the subgroup `g` is every
//! leaf of the query whose path starts with `p_i[..k]`. The term `a_k = R_i − mean(R over g)` is
//! kept when `k == 0` (the root term, always) or `|g| > 1` (a size-1 subgroup — normally the
//! leaf's own node — is skipped), and with [`SubgroupRejection::RejectZeroStd`] a deeper subgroup
//! whose rewards are all equal is skipped too. The terms are averaged ([`SubgroupAggregation`]),
//! broadcast to the leaf's tokens and whitened over the whole batch ([`super::whiten`]).
//!
//! Paths are validated per query: two leaves with the same path, or a leaf whose path is a prefix
//! of another's (a "leaf" with descendants), are an [`RlError::InvalidTree`] naming both leaves.
//!
//! Depths run to `|p_i|` inclusive, which is what the released TreePO code's batch-wide
//! `for d in 0..max_depth` amounts to: the depth-`|p_i|` subgroup (leaf `i`'s own node) has
//! size 1 (no other leaf can continue below a leaf's node). A node with a single child yields the same
//! subgroup at two depths; it is counted twice, as in the released code.
//!
//! Decision: a query with a single leaf gets root term `R − R = 0` (docs/treepo.md §2.1's
//! formula). The released code uses mean 0 for a size-1 group, which would give `R`; such a query
//! only exists when `w = 1`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::whiten::whiten_token_weighted_with;
use crate::error::RlError;
use crate::tree_input::{LeafRecord, group_by_query};

/// How a leaf's subgroup terms are combined (`adv_weight_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubgroupAggregation {
    /// Plain mean of the terms: the paper's choice.
    #[default]
    Average,
    /// `Σ |g_k| a_k / Σ |g_k|`: subgroup-size weighting (paper Eq. 6, worse; for ablation).
    GroupSize,
}

/// Whether deeper subgroups with identical rewards contribute a term (`subtree_std_ds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubgroupRejection {
    /// Keep every subgroup of size > 1: the paper's choice.
    #[default]
    KeepAll,
    /// Skip subgroups (depth ≥ 1) whose rewards are all equal (paper Eq. 7, worse).
    RejectZeroStd,
}

/// How the batch whitening treats the mean: centred (verl's `masked_whiten`) or scale-only
/// (`x/σ`, which is *not* verl's `shift_mean=False`: verl adds the mean back, `(x − μ)/σ + μ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Whitening {
    /// `(x − μ) / σ`: docs/treepo.md §2.1 and the released TreePO code.
    #[default]
    Center,
    /// `x / σ` with the same token-weighted σ: a leaf whose raw advantage is 0 stays 0. Differs
    /// from verl's `masked_whiten(shift_mean=False)`, `(x − μ)/σ + μ`, unless `μ = 0` (see
    /// [`super::whiten::whiten_token_weighted_with`] for when this matters).
    ScaleOnly,
}

/// Options of the TreePO estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TreepoOptions {
    /// How terms are combined.
    pub aggregation: SubgroupAggregation,
    /// Whether zero-variance subgroups are skipped.
    pub rejection: SubgroupRejection,
    /// Whether whitening subtracts the token mean.
    pub whitening: Whitening,
}

/// One subgroup term of a leaf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubgroupTerm {
    /// Depth `k` of the subgroup (0 = the whole query group).
    pub depth: usize,
    /// `R_i − mean(R over the subgroup)`.
    pub value: f64,
    /// Number of leaves in the subgroup.
    pub size: usize,
}

/// Reward statistics of one subgroup.
#[derive(Clone, Copy)]
struct Stats {
    sum: f64,
    count: usize,
    min: f64,
    max: f64,
}

/// The kept subgroup terms of every leaf, in input order (each leaf's terms by ascending depth).
pub fn treepo_subgroup_terms(
    leaves: &[LeafRecord],
    options: &TreepoOptions,
) -> Result<Vec<Vec<SubgroupTerm>>, RlError> {
    let groups = group_by_query(leaves)?;
    let mut terms = vec![Vec::new(); leaves.len()];
    for group in &groups {
        check_paths(leaves, group)?;
        let max_len = group.iter().map(|&i| leaves[i].path.len()).max().unwrap_or(0);
        for depth in 0..=max_len {
            // Reward statistics of every depth-`depth` prefix present in the query.
            let mut stats: HashMap<&[u32], Stats> = HashMap::new();
            for &i in group {
                let Some(prefix) = leaves[i].path.get(..depth) else { continue };
                let r = leaves[i].reward;
                stats
                    .entry(prefix)
                    .and_modify(|s| {
                        s.sum += r;
                        s.count += 1;
                        s.min = s.min.min(r);
                        s.max = s.max.max(r);
                    })
                    .or_insert(Stats { sum: r, count: 1, min: r, max: r });
            }
            for &i in group {
                let Some(prefix) = leaves[i].path.get(..depth) else { continue };
                let Some(s) = stats.get(prefix) else { continue };
                let keep = depth == 0
                    || (s.count > 1
                        && !(options.rejection == SubgroupRejection::RejectZeroStd
                            && s.min == s.max));
                if keep {
                    let value = leaves[i].reward - s.sum / s.count as f64;
                    terms[i].push(SubgroupTerm { depth, value, size: s.count });
                }
            }
        }
    }
    Ok(terms)
}

/// Rejects two leaves of one query with the same path, or a leaf whose path is a prefix of
/// another's (its node would have descendants, so it is not a leaf). In lexicographic order a
/// path that is a prefix of another is a prefix of its successor, so adjacent pairs suffice.
fn check_paths(leaves: &[LeafRecord], group: &[usize]) -> Result<(), RlError> {
    let mut order = group.to_vec();
    order.sort_by(|&a, &b| leaves[a].path.cmp(&leaves[b].path));
    for pair in order.windows(2) {
        let (i, j) = (pair[0], pair[1]);
        let (pi, pj) = (&leaves[i].path, &leaves[j].path);
        if pi == pj {
            let (first, second) = (i.min(j), i.max(j));
            return Err(RlError::InvalidTree(format!(
                "leaf {second} of query {} repeats another leaf's path {pi:?} (leaf {first})",
                leaves[i].query
            )));
        }
        if pj.starts_with(pi) {
            return Err(RlError::InvalidTree(format!(
                "leaf {i} of query {} has path {pi:?}, a prefix of leaf {j}'s path {pj:?}: a \
                 leaf's node cannot have descendants (the tree's leaves are its childless nodes)",
                leaves[i].query
            )));
        }
    }
    Ok(())
}

/// Per-leaf TreePO advantages before whitening (the "average" column of the worked example).
pub fn treepo_raw_advantages(
    leaves: &[LeafRecord],
    options: &TreepoOptions,
) -> Result<Vec<f64>, RlError> {
    let terms = treepo_subgroup_terms(leaves, options)?;
    Ok(terms.iter().map(|t| aggregate(t, options.aggregation)).collect())
}

/// TreePO advantages: [`treepo_raw_advantages`] whitened over all response tokens of the batch.
/// One value per leaf, in input order; every token of the leaf carries it.
pub fn tree_reinforce_plus_plus_baseline(
    leaves: &[LeafRecord],
    options: &TreepoOptions,
) -> Result<Vec<f64>, RlError> {
    let raw = treepo_raw_advantages(leaves, options)?;
    let num_tokens: Vec<usize> = leaves.iter().map(|l| l.num_tokens).collect();
    whiten_token_weighted_with(&raw, &num_tokens, options.whitening == Whitening::Center)
}

/// Combines one leaf's terms; the root term is always present, so `terms` is never empty.
fn aggregate(terms: &[SubgroupTerm], aggregation: SubgroupAggregation) -> f64 {
    match aggregation {
        SubgroupAggregation::Average => {
            terms.iter().map(|t| t.value).sum::<f64>() / terms.len() as f64
        }
        SubgroupAggregation::GroupSize => {
            let num: f64 = terms.iter().map(|t| t.size as f64 * t.value).sum();
            let den: f64 = terms.iter().map(|t| t.size as f64).sum();
            num / den
        }
    }
}
