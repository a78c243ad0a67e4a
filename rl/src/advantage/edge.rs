//! Edge-level tree estimators (docs/treepo.md §2.3): each edge (segment) of the tree is trained
//! once, with one advantage per edge. Results are [`EdgeAdvantages`] indexed by node id, the edge
//! into node `n` being identified with `n`; roots have no edge.
//!
//! - **TreeGRPO** backup: leaf `z = (R − μ_q)/(σ_q + ε)` with `ε > 0` (`ε = 0` is an
//!   [`RlError::InvalidConfig`]: verl's GRPO z-score always has `ε = 1e-6`), and `z = 0` exactly
//!   for a query whose leaves all have the same reward (one leaf included); post-order, an internal node's advantage
//!   is `Σ_c w_c A_c` over its children; the edge into a node takes the node's advantage; only
//!   edges inside the branching window are trained (the others still feed the backup).
//! - **TreeRL**: `V(s)` = mean reward of the leaves under `s`;
//!   `A(edge into s) = (V(s) − V(root) + V(s) − V(parent)) / sqrt(|L(s)|)`.
//! - **SPO-tree**: `V(leaf) = R`, `V(node)` = mean of its children's values;
//!   `A(p → c) = V(c) − V(p)`; edges whose advantage is exactly zero are dropped.
//!
//! No estimator here whitens; rewards are used as given (no per-query normalisation except
//! TreeGRPO's z-score).

use serde::{Deserialize, Serialize};

use crate::error::RlError;
use crate::tree_input::{BranchingWindow, RolloutTopology};

/// Which standard deviation TreeGRPO's leaf z-score divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdKind {
    /// `sqrt(Σ (R − μ)² / n)`.
    #[default]
    Population,
    /// `sqrt(Σ (R − μ)² / (n − 1))`; taken as 0 for a query with one leaf.
    Sample,
}

/// How a child's old log-prob is reduced before the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogProbReduce {
    /// The edge's summed log-prob.
    #[default]
    Sum,
    /// The summed log-prob divided by the edge's token count (a zero-token edge is an error).
    Mean,
}

/// Child weights of the TreeGRPO backup.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackupWeights {
    /// `w_c = 1/|children|`.
    #[default]
    Uniform,
    /// `w = softmax(x_c / temperature)` with `x_c` the child edge's reduced old log-prob.
    Softmax {
        /// Sum or mean of the edge's log-probs.
        reduce: LogProbReduce,
        /// Softmax temperature (> 0).
        temperature: f64,
    },
}

/// Options of the TreeGRPO backup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TreeGrpoOptions {
    /// Population or sample σ.
    pub std: StdKind,
    /// Child weights.
    pub weights: BackupWeights,
    /// ε in `(R − μ)/(σ + ε)`; must be finite and > 0 (default 1e-6, verl's GRPO value).
    pub eps: f64,
}

impl Default for TreeGrpoOptions {
    fn default() -> Self {
        Self { std: StdKind::Population, weights: BackupWeights::Uniform, eps: 1e-6 }
    }
}

/// Per-edge advantages, indexed by the node the edge leads into. `None`: not trained (a root,
/// an edge outside TreeGRPO's window, or an SPO edge with zero advantage).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeAdvantages {
    values: Vec<Option<f64>>,
}

impl EdgeAdvantages {
    /// Advantage of the edge into `node`, if it is trained.
    pub fn get(&self, node: usize) -> Option<f64> {
        self.values.get(node).copied().flatten()
    }

    /// All entries, indexed by node id.
    pub fn as_slice(&self) -> &[Option<f64>] {
        &self.values
    }

    /// `(node, advantage)` of every trained edge, ascending node id.
    pub fn trained(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.values.iter().enumerate().filter_map(|(n, v)| v.map(|a| (n, a)))
    }
}

/// TreeGRPO's advantage backup.
pub fn tree_grpo(
    topo: &RolloutTopology,
    options: &TreeGrpoOptions,
) -> Result<EdgeAdvantages, RlError> {
    if !(options.eps.is_finite() && options.eps > 0.0) {
        return Err(RlError::InvalidConfig(format!(
            "tree_grpo.eps = {} must be finite and > 0 (verl's GRPO uses 1e-6): it is what keeps \
             (R − μ)/(σ + ε) defined for a query whose leaves all have the same reward",
            options.eps
        )));
    }
    if let BackupWeights::Softmax { temperature, .. } = options.weights
        && !(temperature.is_finite() && temperature > 0.0)
    {
        return Err(RlError::InvalidConfig(format!(
            "tree_grpo softmax temperature = {temperature} must be > 0"
        )));
    }
    let n = topo.num_nodes();
    // Leaf z-scores, per query.
    let mut adv = vec![0.0; n];
    let mut per_query: Vec<Vec<usize>> = vec![Vec::new(); topo.roots().len()];
    for &leaf in topo.leaves() {
        if let Some(q) = topo.query_of(leaf) {
            per_query[q].push(leaf);
        }
    }
    for leaves in &per_query {
        let rewards: Vec<f64> = leaves.iter().filter_map(|&l| topo.reward(l)).collect();
        let count = rewards.len() as f64;
        let mu = rewards.iter().sum::<f64>() / count;
        let ss: f64 = rewards.iter().map(|r| (r - mu).powi(2)).sum();
        let sigma = match options.std {
            StdKind::Population => (ss / count).sqrt(),
            StdKind::Sample if rewards.len() > 1 => (ss / (count - 1.0)).sqrt(),
            StdKind::Sample => 0.0,
        };
        // Equal rewards (one leaf included): σ = 0 and z = 0 exactly, not the rounding error
        // of μ divided by ε.
        let all_equal = rewards.iter().all(|&r| r == rewards[0]);
        for (&leaf, &r) in leaves.iter().zip(&rewards) {
            adv[leaf] = if all_equal { 0.0 } else { (r - mu) / (sigma + options.eps) };
        }
    }
    // Post-order backup: descending ids visit children before parents.
    for node in (0..n).rev() {
        let children = topo.children(node);
        if children.is_empty() {
            continue;
        }
        let weights = child_weights(topo, children, &options.weights)?;
        adv[node] = children.iter().zip(&weights).map(|(&c, w)| w * adv[c]).sum();
    }
    let values = (0..n)
        .map(|node| {
            let trained = topo.parent(node).is_some()
                && topo.edge(node).is_some_and(|e| e.window == BranchingWindow::Inside);
            trained.then_some(adv[node])
        })
        .collect();
    Ok(EdgeAdvantages { values })
}

/// Backup weights of `children` (they sum to 1).
fn child_weights(
    topo: &RolloutTopology,
    children: &[usize],
    weights: &BackupWeights,
) -> Result<Vec<f64>, RlError> {
    match *weights {
        BackupWeights::Uniform => Ok(vec![1.0 / children.len() as f64; children.len()]),
        BackupWeights::Softmax { reduce, temperature } => {
            let mut logits = Vec::with_capacity(children.len());
            for &c in children {
                let e = topo.edge(c).ok_or_else(|| {
                    RlError::InvalidTree(format!("child {c} is not a node of the topology"))
                })?;
                let x = match reduce {
                    LogProbReduce::Sum => e.old_logprob_sum,
                    LogProbReduce::Mean if e.num_tokens > 0 => {
                        e.old_logprob_sum / e.num_tokens as f64
                    }
                    LogProbReduce::Mean => {
                        return Err(RlError::InvalidTree(format!(
                            "edge into node {c} has no tokens; its mean log-prob is undefined"
                        )));
                    }
                };
                let logit = x / temperature;
                if !logit.is_finite() {
                    return Err(RlError::InvalidConfig(format!(
                        "tree_grpo softmax: the edge into node {c} has log-prob {x:e}, which over \
                         temperature = {temperature:e} overflows f64; raise the temperature"
                    )));
                }
                logits.push(logit);
            }
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = logits.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = exps.iter().sum();
            Ok(exps.iter().map(|e| e / z).collect())
        }
    }
}

/// Mean reward of the leaves under each node (leaf count in the second vector).
fn leaf_means(topo: &RolloutTopology) -> (Vec<f64>, Vec<usize>) {
    let n = topo.num_nodes();
    let mut sum = vec![0.0; n];
    let mut count = vec![0usize; n];
    for node in (0..n).rev() {
        if let Some(r) = topo.reward(node) {
            sum[node] = r;
            count[node] = 1;
        }
        if let Some(p) = topo.parent(node) {
            sum[p] += sum[node];
            count[p] += count[node];
        }
    }
    let means = sum.iter().zip(&count).map(|(s, &c)| s / c as f64).collect();
    (means, count)
}

/// TreeRL's edge advantages (every non-root edge is trained).
pub fn tree_rl(topo: &RolloutTopology) -> EdgeAdvantages {
    let (v, count) = leaf_means(topo);
    let values = (0..topo.num_nodes())
        .map(|s| {
            let p = topo.parent(s)?;
            let root = topo.root_of(s);
            Some((v[s] - v[root] + v[s] - v[p]) / (count[s] as f64).sqrt())
        })
        .collect();
    EdgeAdvantages { values }
}

/// SPO-tree's edge advantages (zero-advantage edges dropped).
pub fn spo_tree(topo: &RolloutTopology) -> EdgeAdvantages {
    let n = topo.num_nodes();
    let mut v = vec![0.0; n];
    for node in (0..n).rev() {
        v[node] = match topo.reward(node) {
            Some(r) => r,
            None => mean_exact(topo.children(node).iter().map(|&c| v[c])),
        };
    }
    let values = (0..n)
        .map(|c| {
            let a = v[c] - v[topo.parent(c)?];
            (a != 0.0).then_some(a)
        })
        .collect();
    EdgeAdvantages { values }
}

/// Mean computed as `x_0 + Σ (x_i − x_0)/n`, which is exactly `x_0` when all values are equal, so
/// an SPO edge between equal values is exactly zero and is dropped.
fn mean_exact(xs: impl Iterator<Item = f64>) -> f64 {
    let xs: Vec<f64> = xs.collect();
    let Some(&first) = xs.first() else { return 0.0 };
    first + xs.iter().map(|x| x - first).sum::<f64>() / xs.len() as f64
}
