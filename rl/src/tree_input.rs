//! The two views of a rollout tree that the advantage estimators read.
//!
//! - [`LeafRecord`]: one trajectory with its query, its path of node ids and its reward. Enough for
//!   TreePO (subgroups are path prefixes) and for the flat baselines (which ignore the path).
//! - [`RolloutTopology`]: the tree itself (parents, children, per-edge statistics, leaf rewards),
//!   for the edge-level estimators (TreeGRPO, TreeRL, SPO-tree). It also derives the leaf records,
//!   so one structure built from the sampler's tree serves every estimator.

use std::collections::BTreeMap;

use super::error::{MAX_ABS_REWARD, RlError, check_finite, check_reward_range};

/// One trajectory (leaf) of a rollout tree.
///
/// The TreePO subgroup of leaf `i` at depth `k` is the set of leaves of the same `query` whose
/// `path` starts with the first `k` ids of leaf `i`'s path (`k = 0`: the whole query group).
#[derive(Debug, Clone, PartialEq)]
pub struct LeafRecord {
    /// Query (prompt) the leaf belongs to; any id, leaves of one query share it.
    pub query: usize,
    /// Node ids from the query root's child down to the leaf's own node (root excluded). Two
    /// leaves of one query must not have the same path, and (TreePO) no leaf's path may be a
    /// prefix of another's: a leaf is a node without children.
    pub path: Vec<u32>,
    /// Scalar outcome reward (overlong penalty already added); finite, `|R| ≤`
    /// [`MAX_ABS_REWARD`](crate::MAX_ABS_REWARD).
    pub reward: f64,
    /// Response tokens of the trajectory: the weight of this leaf in the token whitening.
    pub num_tokens: usize,
}

/// Validates leaf records and groups their indices by query, queries in ascending id order and
/// leaves in input order inside a group (the deterministic order every estimator iterates in).
pub(crate) fn group_by_query(leaves: &[LeafRecord]) -> Result<Vec<Vec<usize>>, RlError> {
    if leaves.is_empty() {
        return Err(RlError::Empty { what: "leaves" });
    }
    let rewards: Vec<f64> = leaves.iter().map(|l| l.reward).collect();
    check_reward_range("leaf reward", &rewards)?;
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, leaf) in leaves.iter().enumerate() {
        groups.entry(leaf.query).or_default().push(i);
    }
    Ok(groups.into_values().collect())
}

/// Whether an edge belongs to TreeGRPO's branching window (only those edges are trained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BranchingWindow {
    /// The edge is inside the window and gets an advantage.
    #[default]
    Inside,
    /// The edge is outside; it still takes part in the backup but is not trained.
    Outside,
}

/// Statistics of the edge (segment) that leads into a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeStats {
    /// Sum of the old policy's log-probs of the segment's tokens (TreeGRPO softmax weights).
    pub old_logprob_sum: f64,
    /// Number of tokens of the segment.
    pub num_tokens: usize,
    /// Whether TreeGRPO trains this edge.
    pub window: BranchingWindow,
}

impl Default for EdgeStats {
    /// One token with log-prob 0, inside the window: what tests that only care about the shape use.
    fn default() -> Self {
        Self { old_logprob_sum: 0.0, num_tokens: 1, window: BranchingWindow::Inside }
    }
}

/// A forest of rollout trees, one root per query, nodes numbered so that a parent precedes its
/// children (`parent[n] < n`). Node `n != root` stands for the segment (edge) leading into it.
///
/// Invariants checked by [`RolloutTopology::new`]: every root has at least one child; a node
/// without children (a leaf) has a finite reward of magnitude at most
/// [`MAX_ABS_REWARD`](crate::MAX_ABS_REWARD) and no other node has one; edge log-prob sums
/// are finite. Because parents precede children, visiting nodes in descending id order is a
/// post-order (children before parents), which the backups use.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutTopology {
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    edges: Vec<EdgeStats>,
    rewards: Vec<Option<f64>>,
    roots: Vec<usize>,
    leaves: Vec<usize>,
    query_of: Vec<usize>,
}

impl RolloutTopology {
    /// Builds a topology from per-node parents (`None` = a query root), the statistics of the edge
    /// into each node (ignored for roots) and per-node rewards (`Some` exactly on leaves).
    pub fn new(
        parents: Vec<Option<usize>>,
        edges: Vec<EdgeStats>,
        rewards: Vec<Option<f64>>,
    ) -> Result<Self, RlError> {
        let n = parents.len();
        if n == 0 {
            return Err(RlError::Empty { what: "topology nodes" });
        }
        super::error::check_len("edge stats", n, edges.len())?;
        super::error::check_len("node rewards", n, rewards.len())?;
        let mut children = vec![Vec::new(); n];
        let mut roots = Vec::new();
        let mut query_of = vec![0; n];
        for (node, parent) in parents.iter().enumerate() {
            match *parent {
                None => {
                    query_of[node] = roots.len();
                    roots.push(node);
                }
                Some(p) if p < node => {
                    children[p].push(node);
                    query_of[node] = query_of[p];
                }
                Some(p) => {
                    return Err(RlError::InvalidTree(format!(
                        "node {node} has parent {p}; parents must precede their children"
                    )));
                }
            }
        }
        let mut leaves = Vec::new();
        for node in 0..n {
            let is_root = parents[node].is_none();
            let is_leaf = children[node].is_empty();
            if is_root && is_leaf {
                return Err(RlError::InvalidTree(format!("query root {node} has no children")));
            }
            match (is_leaf, rewards[node]) {
                (true, Some(r)) if r.is_finite() && r.abs() <= MAX_ABS_REWARD => leaves.push(node),
                (true, Some(r)) if r.is_finite() => {
                    return Err(RlError::TooLarge {
                        what: "leaf reward",
                        index: node,
                        value: r,
                        limit: MAX_ABS_REWARD,
                    });
                }
                (true, Some(r)) => {
                    return Err(RlError::NonFinite { what: "leaf reward", index: node, value: r });
                }
                (true, None) => {
                    return Err(RlError::InvalidTree(format!("leaf {node} has no reward")));
                }
                (false, Some(_)) => {
                    return Err(RlError::InvalidTree(format!(
                        "node {node} has children and a reward; rewards belong to leaves"
                    )));
                }
                (false, None) => {}
            }
        }
        let logprobs: Vec<f64> = edges.iter().map(|e| e.old_logprob_sum).collect();
        check_finite("edge old_logprob_sum", &logprobs)?;
        Ok(Self { parent: parents, children, edges, rewards, roots, leaves, query_of })
    }

    /// Builds a topology from parents and rewards alone, every edge with [`EdgeStats::default`].
    pub fn from_parents(
        parents: &[Option<usize>],
        rewards: &[Option<f64>],
    ) -> Result<Self, RlError> {
        Self::new(parents.to_vec(), vec![EdgeStats::default(); parents.len()], rewards.to_vec())
    }

    /// Number of nodes (roots included).
    pub fn num_nodes(&self) -> usize {
        self.parent.len()
    }

    /// Parent of `node` (`None` for a root or an id out of range).
    pub fn parent(&self, node: usize) -> Option<usize> {
        self.parent.get(node).copied().flatten()
    }

    /// Children of `node` in ascending id order (empty for a leaf or an id out of range).
    pub fn children(&self, node: usize) -> &[usize] {
        self.children.get(node).map_or(&[], Vec::as_slice)
    }

    /// Statistics of the edge into `node`.
    pub fn edge(&self, node: usize) -> Option<&EdgeStats> {
        self.edges.get(node)
    }

    /// Reward of `node` (`Some` exactly for leaves).
    pub fn reward(&self, node: usize) -> Option<f64> {
        self.rewards.get(node).copied().flatten()
    }

    /// Query roots in ascending id order; the query index of a root is its position here.
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// Leaves in ascending id order: the order of every per-leaf output.
    pub fn leaves(&self) -> &[usize] {
        &self.leaves
    }

    /// Query index (position of the root in [`Self::roots`]) of `node`.
    pub fn query_of(&self, node: usize) -> Option<usize> {
        self.query_of.get(node).copied()
    }

    /// The root of `node`'s tree.
    pub(crate) fn root_of(&self, node: usize) -> usize {
        self.roots[self.query_of[node]]
    }

    /// One [`LeafRecord`] per leaf, in [`Self::leaves`] order: `query` is the query index, `path`
    /// the node ids below the root, `num_tokens` the sum of the path's edge token counts.
    pub fn leaf_records(&self) -> Result<Vec<LeafRecord>, RlError> {
        let mut records = Vec::with_capacity(self.leaves.len());
        for &leaf in &self.leaves {
            let mut path = Vec::new();
            let mut num_tokens = 0;
            let mut node = leaf;
            while let Some(p) = self.parent[node] {
                let id = u32::try_from(node).map_err(|_| {
                    RlError::InvalidTree(format!("node id {node} does not fit a u32 path id"))
                })?;
                path.push(id);
                num_tokens = usize::checked_add(num_tokens, self.edges[node].num_tokens)
                    .ok_or_else(|| {
                        RlError::InvalidTree(format!(
                            "leaf {leaf}: the token counts of its path's edges overflow usize"
                        ))
                    })?;
                node = p;
            }
            path.reverse();
            let Some(reward) = self.rewards[leaf] else {
                return Err(RlError::InvalidTree(format!("leaf {leaf} has no reward")));
            };
            records.push(LeafRecord { query: self.query_of[leaf], path, reward, num_tokens });
        }
        Ok(records)
    }
}

/// Incremental construction of a [`RolloutTopology`], node ids handed out in creation order
/// (so parents always precede children).
#[derive(Debug, Clone, Default)]
pub struct TopologyBuilder {
    parents: Vec<Option<usize>>,
    edges: Vec<EdgeStats>,
    rewards: Vec<Option<f64>>,
}

impl TopologyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a query root and returns its id.
    pub fn add_root(&mut self) -> usize {
        self.push(None, EdgeStats::default(), None)
    }

    /// Adds an internal node under `parent` (reached by the edge `edge`) and returns its id.
    pub fn add_node(&mut self, parent: usize, edge: EdgeStats) -> usize {
        self.push(Some(parent), edge, None)
    }

    /// Adds a leaf with its reward under `parent` and returns its id.
    pub fn add_leaf(&mut self, parent: usize, edge: EdgeStats, reward: f64) -> usize {
        self.push(Some(parent), edge, Some(reward))
    }

    /// Validates and returns the topology (an unknown parent id is reported here).
    pub fn build(self) -> Result<RolloutTopology, RlError> {
        RolloutTopology::new(self.parents, self.edges, self.rewards)
    }

    fn push(&mut self, parent: Option<usize>, edge: EdgeStats, reward: Option<f64>) -> usize {
        self.parents.push(parent);
        self.edges.push(edge);
        self.rewards.push(reward);
        self.parents.len() - 1
    }
}
