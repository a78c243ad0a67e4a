//! [`RolloutTree`]: what a sampling run returns — per query the tree of segments, the leaves
//! (trajectories) with their node paths and finish reasons, a per-step trace — plus cost
//! accounting and DOT/SVG renderings.
//!
//! Node 0 of every query is the prompt node (depth 0, no response tokens). Every other node is
//! one segment; a leaf's response is the concatenation of the segments on its path, and its
//! depth-`k` subgroup (for tree advantages) is every leaf under its depth-`k` ancestor.

mod cost;
mod dot;
mod svg;

use std::ops::Range;

pub use cost::{Cost, PhaseTimes};

use crate::FinishReason;
use crate::config_check::ConfigWarning;

/// Index of a node within its query's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The prompt node.
    pub const ROOT: Self = Self(0);

    /// As a `usize` index.
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// One segment (or the prompt node).
#[derive(Clone, Debug, PartialEq)]
pub struct TreeNode {
    pub(crate) parent: Option<NodeId>,
    pub(crate) ordinal: u32,
    pub(crate) depth: u32,
    pub(crate) start: usize,
    pub(crate) tokens: Vec<u32>,
    pub(crate) logprobs: Vec<f32>,
    pub(crate) entropies: Option<Vec<f32>>,
    pub(crate) step: u32,
    pub(crate) children: Vec<NodeId>,
}

impl TreeNode {
    pub(crate) fn new(parent: Option<NodeId>, ordinal: u32, depth: u32, start: usize) -> Self {
        Self {
            parent,
            ordinal,
            depth,
            start,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            entropies: None,
            step: 0,
            children: Vec::new(),
        }
    }

    /// The parent (`None` for the prompt node).
    #[must_use]
    pub fn parent(&self) -> Option<NodeId> {
        self.parent
    }

    /// Index among the parent's children in creation order (fallback children continue it).
    #[must_use]
    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// Depth in segments (the prompt node is 0).
    #[must_use]
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Response-token span `[start, end)` of this segment.
    #[must_use]
    pub fn span(&self) -> Range<usize> {
        self.start..self.start + self.tokens.len()
    }

    /// The segment's tokens.
    #[must_use]
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Sampled-token log-probs, one per token.
    #[must_use]
    pub fn logprobs(&self) -> &[f32] {
        &self.logprobs
    }

    /// Entropies, one per token, when the run asked for them.
    #[must_use]
    pub fn entropies(&self) -> Option<&[f32]> {
        self.entropies.as_deref()
    }

    /// The sampler step whose engine call decoded this segment's first tokens (0: not decoded).
    #[must_use]
    pub fn step(&self) -> u32 {
        self.step
    }

    /// Children in creation order.
    #[must_use]
    pub fn children(&self) -> &[NodeId] {
        &self.children
    }
}

/// One trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub(crate) node: NodeId,
    pub(crate) reason: FinishReason,
    pub(crate) response_len: usize,
    pub(crate) step: u32,
}

impl Leaf {
    /// Its last segment's node.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Why it finished.
    #[must_use]
    pub fn reason(&self) -> FinishReason {
        self.reason
    }

    /// Response length in tokens.
    #[must_use]
    pub fn response_len(&self) -> usize {
        self.response_len
    }

    /// The step at which it finished.
    #[must_use]
    pub fn step(&self) -> u32 {
        self.step
    }
}

/// How a query ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryStatus {
    /// Its budget was filled: `w` leaves (token mode: the bound reached), or no fallback possible
    /// under `no_fallback`.
    Complete,
    /// The KV pool ran out and nothing could progress: its open paths were finished with
    /// [`FinishReason::KvExhausted`] and it may have fewer than `w` leaves.
    KvLimited,
}

/// One fallback re-opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FallbackEvent {
    /// Step at whose end it was planned.
    pub step: u32,
    /// Re-opened leaf (index into [`QueryTree::leaves`]), `None` for the bare query.
    pub leaf: Option<usize>,
    /// Drawn cut point in response tokens.
    pub cut: usize,
    /// The existing node the new branches hang from (depth `cut / l`).
    pub node: NodeId,
    /// New sibling branches opened there.
    pub k: usize,
}

/// What the scheduler saw and decided for one query in one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepTrace {
    /// The step (1-based; one engine decode call per step).
    pub step: u32,
    /// Segments decoded for this query.
    pub decoded: usize,
    /// f: paths that finished this step.
    pub finished: usize,
    /// F: leaves after this step.
    pub leaves: usize,
    /// |A|: active paths after classification.
    pub active: usize,
    /// Branching budget `total` (`|A|` under KV pressure).
    pub total: usize,
    /// Children per active path, in path order.
    pub split: Vec<usize>,
    /// Whether KV pressure suppressed branching.
    pub kv_pressure: bool,
}

/// The rollout tree of one query.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryTree {
    pub(crate) id: u64,
    pub(crate) prompt: Vec<u32>,
    pub(crate) nodes: Vec<TreeNode>,
    pub(crate) leaves: Vec<Leaf>,
    pub(crate) status: QueryStatus,
    pub(crate) steps: Vec<StepTrace>,
    pub(crate) fallbacks: Vec<FallbackEvent>,
    pub(crate) initial_fanout: usize,
}

impl QueryTree {
    pub(crate) fn new(id: u64, prompt: &[u32]) -> Self {
        Self {
            id,
            prompt: prompt.to_vec(),
            nodes: vec![TreeNode::new(None, 0, 0, 0)],
            leaves: Vec::new(),
            status: QueryStatus::Complete,
            steps: Vec::new(),
            fallbacks: Vec::new(),
            initial_fanout: 0,
        }
    }

    /// Adds a child of `parent` (next ordinal) and returns it.
    pub(crate) fn add_child(&mut self, parent: NodeId) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        let p = &mut self.nodes[parent.index()];
        let node = TreeNode::new(
            Some(parent),
            p.children.len() as u32,
            p.depth + 1,
            p.start + p.tokens.len(),
        );
        p.children.push(id);
        self.nodes.push(node);
        id
    }

    /// The query's id.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The prompt tokens.
    #[must_use]
    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    /// Every node; index with [`NodeId::index`].
    #[must_use]
    pub fn nodes(&self) -> &[TreeNode] {
        &self.nodes
    }

    /// One node.
    #[must_use]
    pub fn node(&self, id: NodeId) -> Option<&TreeNode> {
        self.nodes.get(id.index())
    }

    /// The leaves in the order they finished.
    #[must_use]
    pub fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }

    /// How the query ended.
    #[must_use]
    pub fn status(&self) -> QueryStatus {
        self.status
    }

    /// Per-step scheduler trace.
    #[must_use]
    pub fn steps(&self) -> &[StepTrace] {
        &self.steps
    }

    /// Fallback re-openings in order.
    #[must_use]
    pub fn fallbacks(&self) -> &[FallbackEvent] {
        &self.fallbacks
    }

    /// Number of branches the prompt node was forked into initially.
    #[must_use]
    pub fn initial_fanout(&self) -> usize {
        self.initial_fanout
    }

    /// Path of node ids from the prompt node (included) down to `node`.
    #[must_use]
    pub fn node_path(&self, node: NodeId) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut cur = Some(node);
        while let Some(id) = cur {
            let Some(n) = self.node(id) else { break };
            path.push(id);
            cur = n.parent;
        }
        path.reverse();
        path
    }

    /// Path of node ids from the prompt node down to leaf `leaf`'s node (empty if out of range).
    #[must_use]
    pub fn leaf_path(&self, leaf: usize) -> Vec<NodeId> {
        self.leaves.get(leaf).map_or_else(Vec::new, |l| self.node_path(l.node))
    }

    fn collect<T: Copy>(&self, leaf: usize, field: impl Fn(&TreeNode) -> &[T]) -> Vec<T> {
        self.leaf_path(leaf)
            .iter()
            .flat_map(|&id| field(&self.nodes[id.index()]).iter().copied())
            .collect()
    }

    /// Leaf `leaf`'s response: the concatenation of its path's segments.
    #[must_use]
    pub fn response_tokens(&self, leaf: usize) -> Vec<u32> {
        self.collect(leaf, TreeNode::tokens)
    }

    /// Leaf `leaf`'s sampled-token log-probs, aligned with [`QueryTree::response_tokens`].
    #[must_use]
    pub fn response_logprobs(&self, leaf: usize) -> Vec<f32> {
        self.collect(leaf, TreeNode::logprobs)
    }

    /// Leaf `leaf`'s ancestor at depth `k` (0 = the prompt node); `None` past the leaf's depth.
    #[must_use]
    pub fn ancestor_at_depth(&self, leaf: usize, k: usize) -> Option<NodeId> {
        self.leaf_path(leaf).get(k).copied()
    }

    /// Indices of the leaves whose path passes through `node`.
    #[must_use]
    pub fn leaves_under(&self, node: NodeId) -> Vec<usize> {
        (0..self.leaves.len()).filter(|&i| self.leaf_path(i).contains(&node)).collect()
    }

    /// Leaf `leaf`'s depth-`k` subgroup: every leaf under its depth-`k` ancestor (k = 0: all
    /// leaves of the query). Empty past the leaf's depth.
    #[must_use]
    pub fn subgroup(&self, leaf: usize, k: usize) -> Vec<usize> {
        self.ancestor_at_depth(leaf, k).map_or_else(Vec::new, |a| self.leaves_under(a))
    }

    /// Response tokens stored in the tree (each shared segment once).
    #[must_use]
    pub fn tree_tokens(&self) -> usize {
        self.nodes.iter().map(|n| n.tokens.len()).sum()
    }
}

/// Which sampler produced a [`RolloutTree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplingMode {
    /// TreePO segment sampling.
    Tree,
    /// Independent samples (each chunk of `l` tokens is one node of a chain).
    Sequential,
}

/// The result of a sampling run.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutTree {
    pub(crate) mode: SamplingMode,
    pub(crate) queries: Vec<QueryTree>,
    pub(crate) cost: Cost,
    pub(crate) warnings: Vec<ConfigWarning>,
}

impl RolloutTree {
    /// Which sampler produced it.
    #[must_use]
    pub fn mode(&self) -> SamplingMode {
        self.mode
    }

    /// One tree per query, in input order.
    #[must_use]
    pub fn queries(&self) -> &[QueryTree] {
        &self.queries
    }

    /// Cost accounting of the whole run.
    #[must_use]
    pub fn cost(&self) -> &Cost {
        &self.cost
    }

    /// Configuration warnings in force during the run.
    #[must_use]
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// Total number of trajectories.
    #[must_use]
    pub fn total_leaves(&self) -> usize {
        self.queries.iter().map(|q| q.leaves.len()).sum()
    }

    /// Response tokens summed over all trajectories (a token shared by k leaves counts k times):
    /// what sequential sampling would have decoded for the same trajectories.
    #[must_use]
    pub fn total_response_tokens(&self) -> usize {
        self.queries.iter().flat_map(|q| q.leaves()).map(|l| l.response_len()).sum()
    }

    /// Graphviz DOT text (one cluster per query).
    #[must_use]
    pub fn to_dot(&self) -> String {
        dot::render(self)
    }

    /// A self-contained SVG picture (layered layout, no Graphviz needed).
    #[must_use]
    pub fn to_svg(&self) -> String {
        svg::render(self)
    }
}
