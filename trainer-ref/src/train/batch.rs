//! Training batches: trajectories laid out as packed token sequences with a tree mask, and the
//! **targets** the loss is computed on.
//!
//! A target is one response token `j` with the row that predicts it, `pred(j)` = the previous
//! token on `j`'s root→leaf sequence. In a tree the last token of a branching node predicts the
//! first token of every child, so a row can carry several targets; targets are stored grouped by
//! row (CSR, as `ops::target_logprob` wants). Each leaf lists its targets in order, so per-leaf
//! losses, advantages and aggregation weights map onto them.
//!
//! Two layouts of the same trajectories give the same loss and gradient (a test):
//! - [`TrainBatch::from_trees`] packs whole rollout trees — shared prefixes once;
//! - [`TrainBatch::from_sequences`] packs each trajectory alone (prompt + response) — the
//!   per-leaf baseline and what GRPO trains on.
//!
//! Edge-level estimators (TreeGRPO, TreeRL, SPO-tree) train each edge (segment) once with its
//! own advantage. Their batches group targets by **edge** instead of by leaf: every entry of
//! [`TrainBatch::leaf_targets`] is then one trained edge's targets, the "sequence" the loss
//! aggregation sees. Again two layouts with the same loss and gradient (a test):
//! - [`TrainBatch::from_tree_edges`] packs whole trees (every token once) and groups the targets
//!   of the given edges;
//! - [`TrainBatch::from_edges`] packs each edge alone: the prompt and the ancestors' segments as
//!   context, the edge's tokens as targets (the per-edge layout).

use tree_attn::packed::{PackNode, PackedTree};

use super::TrainError;

/// One node of a rollout tree given to [`TrainBatch::from_trees`]: `parent` earlier in the
/// list (DFS pre-order), `None` only for the prompt node (the first node of a tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeNodeSpec {
    /// Parent index within the same tree, `None` for the prompt.
    pub parent: Option<usize>,
    /// The node's tokens (the prompt for the root, a segment otherwise).
    pub tokens: Vec<u32>,
}

/// One rollout tree: nodes in DFS pre-order (node 0 is the prompt) and its leaves (node indices,
/// in the order their advantages are given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeSpec {
    /// Nodes in DFS pre-order.
    pub nodes: Vec<TreeNodeSpec>,
    /// The trajectories: leaf node indices.
    pub leaves: Vec<usize>,
}

/// A packed batch plus its targets.
#[derive(Clone, Debug)]
pub struct TrainBatch {
    /// Packed token ids `[N]`.
    pub tokens: Vec<u32>,
    /// RoPE position (depth in tokens) `[N]`.
    pub positions: Vec<u32>,
    /// Tree mask `[N]`.
    pub kv_row_end: Vec<i32>,
    /// CSR of targets over rows: targets of row `r` are `row_ptr[r]..row_ptr[r+1]`.
    pub row_ptr: Vec<i32>,
    /// Target token ids, grouped by row.
    pub target_tokens: Vec<i32>,
    /// Target groups, each in token order: per leaf its targets (indices into `target_tokens`)
    /// for [`TrainBatch::from_trees`] / [`TrainBatch::from_sequences`]; per trained edge its
    /// targets for [`TrainBatch::from_tree_edges`] / [`TrainBatch::from_edges`]. Each group is one
    /// sequence of the loss (advantages and aggregation weights are given per group).
    pub leaf_targets: Vec<Vec<usize>>,
}

/// One edge (segment) of a rollout tree: the segment leading into node `node` of tree `tree`
/// (an index into the [`TreeSpec`] list it is used with). Node 0 (the prompt) has no edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeRef {
    /// The tree (query).
    pub tree: usize,
    /// The node the edge leads into (its index in the tree's DFS pre-order node list).
    pub node: usize,
}

/// A packed batch with, per tree node, its packed token range and the target index of each
/// packed token (`usize::MAX`: not a target).
struct Packed {
    batch: TrainBatch,
    node_base: Vec<usize>,
    indptr: Vec<u32>,
    target_of: Vec<usize>,
}

impl TrainBatch {
    /// Number of packed tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True for an empty batch (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of targets (distinct response tokens).
    pub fn num_targets(&self) -> usize {
        self.target_tokens.len()
    }

    /// The predictor row of every target.
    pub fn target_rows(&self) -> Vec<usize> {
        let mut rows = Vec::with_capacity(self.num_targets());
        for (r, w) in self.row_ptr.windows(2).enumerate() {
            rows.extend(std::iter::repeat_n(r, (w[1] - w[0]) as usize));
        }
        rows
    }

    /// Targets summed over the groups: response tokens summed over leaves (a shared token counts
    /// once per leaf through it), or for an edge batch the tokens of its edges (each once).
    pub fn leaf_tokens(&self) -> usize {
        self.leaf_targets.iter().map(Vec::len).sum()
    }

    /// Each trajectory alone: `(prompt, response)` pairs, one chain per pair.
    pub fn from_sequences(seqs: &[(&[u32], &[u32])]) -> Result<Self, TrainError> {
        let trees: Vec<TreeSpec> = seqs
            .iter()
            .map(|(p, r)| TreeSpec {
                nodes: vec![
                    TreeNodeSpec { parent: None, tokens: p.to_vec() },
                    TreeNodeSpec { parent: Some(0), tokens: r.to_vec() },
                ],
                leaves: vec![1],
            })
            .collect();
        Self::from_trees(&trees)
    }

    /// Whole trees, packed in DFS pre-order one after another.
    pub fn from_trees(trees: &[TreeSpec]) -> Result<Self, TrainError> {
        Ok(Self::pack(trees)?.batch)
    }

    /// Whole trees packed as [`TrainBatch::from_trees`] does (every token once, the same
    /// targets: the response tokens on the trees' leaf paths), with one target group per edge of
    /// `edges`, in that order: [`TrainBatch::leaf_targets`]`[i]` holds the targets of
    /// `edges[i]`'s tokens. Targets of edges not listed belong to no group (they get no loss
    /// term). Errors: an edge that names no tree or node, the prompt node, has no tokens, is
    /// listed twice, or lies on no leaf's path (its tokens are no targets).
    pub fn from_tree_edges(trees: &[TreeSpec], edges: &[EdgeRef]) -> Result<Self, TrainError> {
        let Packed { mut batch, node_base, indptr, target_of } = Self::pack(trees)?;
        check_edges(trees, edges)?;
        let mut groups = Vec::with_capacity(edges.len());
        for e in edges {
            let g = node_base[e.tree] + e.node;
            let range = indptr[g] as usize..indptr[g + 1] as usize;
            let group: Vec<usize> = range.map(|j| target_of[j]).collect();
            if group.contains(&usize::MAX) {
                return Err(TrainError::Batch(format!(
                    "tree {}: edge into node {} lies on no leaf's path, so its tokens are no targets",
                    e.tree, e.node
                )));
            }
            groups.push(group);
        }
        batch.leaf_targets = groups;
        Ok(batch)
    }

    /// The per-edge layout: each edge of `edges` as its own sequence, the tree's prompt and the
    /// segments of the edge's ancestors as context and the edge's tokens as targets (positions
    /// are depths in tokens, as in the packed tree). [`TrainBatch::leaf_targets`]`[i]` holds the
    /// targets of `edges[i]`. The same errors as [`TrainBatch::from_tree_edges`], except that an
    /// edge off every leaf path is accepted (nothing here reads the leaves).
    pub fn from_edges(trees: &[TreeSpec], edges: &[EdgeRef]) -> Result<Self, TrainError> {
        check_edges(trees, edges)?;
        let mut seqs = Vec::with_capacity(edges.len());
        for e in edges {
            let tree = &trees[e.tree];
            let mut chain = Vec::new();
            let mut node = e.node;
            while let Some(p) = tree.nodes[node].parent {
                if p >= node {
                    return Err(TrainError::Batch(format!(
                        "tree {}: node {node} names later node {p} as parent",
                        e.tree
                    )));
                }
                chain.push(p);
                node = p;
            }
            if node != 0 {
                return Err(TrainError::Batch(format!(
                    "tree {}: node {node} has no parent but is not the prompt",
                    e.tree
                )));
            }
            let context: Vec<u32> =
                chain.iter().rev().flat_map(|&n| tree.nodes[n].tokens.iter().copied()).collect();
            seqs.push((context, tree.nodes[e.node].tokens.as_slice()));
        }
        let refs: Vec<(&[u32], &[u32])> = seqs.iter().map(|(c, t)| (c.as_slice(), *t)).collect();
        Self::from_sequences(&refs)
    }

    /// The packing behind [`TrainBatch::from_trees`].
    fn pack(trees: &[TreeSpec]) -> Result<Packed, TrainError> {
        if trees.is_empty() {
            return Err(TrainError::Batch("no trajectories".into()));
        }
        let mut nodes = Vec::new();
        let mut ids: Vec<&[u32]> = Vec::new();
        let mut node_base = Vec::with_capacity(trees.len());
        for (t, tree) in trees.iter().enumerate() {
            node_base.push(nodes.len());
            if tree.nodes.is_empty() || tree.nodes[0].parent.is_some() {
                return Err(TrainError::Batch(format!(
                    "tree {t}: node 0 must be the prompt (no parent)"
                )));
            }
            if tree.nodes[0].tokens.is_empty() {
                return Err(TrainError::Batch(format!("tree {t}: the prompt is empty")));
            }
            for (i, n) in tree.nodes.iter().enumerate() {
                let parent = match n.parent {
                    None if i == 0 => None,
                    None => {
                        return Err(TrainError::Batch(format!("tree {t}: node {i} has no parent")));
                    }
                    Some(p) if p < i => Some((node_base[t] + p) as u32),
                    Some(p) => {
                        return Err(TrainError::Batch(format!(
                            "tree {t}: node {i} names later node {p} as parent"
                        )));
                    }
                };
                nodes.push(PackNode { parent, num_tokens: n.tokens.len() as u32 });
                ids.push(&n.tokens);
            }
        }
        let packed = PackedTree::pack(&nodes).map_err(|e| TrainError::Batch(e.to_string()))?;
        let tokens = packed.gather_ids(&ids).map_err(|e| TrainError::Batch(e.to_string()))?;
        let n = tokens.len();
        // Packed range of every node (pack keeps the given order).
        let indptr = packed.node_indptr();
        // target index per packed response token (usize::MAX: not a target yet).
        let mut pred = vec![usize::MAX; n];
        let mut leaf_seqs: Vec<Vec<usize>> = Vec::new();
        for (t, tree) in trees.iter().enumerate() {
            let prompt_len = tree.nodes[0].tokens.len();
            for &leaf in &tree.leaves {
                if leaf >= tree.nodes.len() {
                    return Err(TrainError::Batch(format!("tree {t}: leaf {leaf} is not a node")));
                }
                // Root→leaf sequence of packed indices.
                let mut chain = vec![leaf];
                while let Some(p) = tree.nodes[*chain.last().unwrap_or(&0)].parent {
                    chain.push(p);
                }
                let mut seq = Vec::new();
                for &node in chain.iter().rev() {
                    let g = node_base[t] + node;
                    seq.extend(indptr[g] as usize..indptr[g + 1] as usize);
                }
                if seq.len() <= prompt_len {
                    return Err(TrainError::Batch(format!(
                        "tree {t}: leaf {leaf} has an empty response"
                    )));
                }
                for i in prompt_len..seq.len() {
                    let (j, prev) = (seq[i], seq[i - 1]);
                    if pred[j] != usize::MAX && pred[j] != prev {
                        return Err(TrainError::Batch(format!(
                            "tree {t}: token {j} has two predictors"
                        )));
                    }
                    pred[j] = prev;
                }
                leaf_seqs.push(seq[prompt_len..].to_vec());
            }
        }
        // Targets grouped by predictor row (stable in token order within a row).
        let mut order: Vec<usize> = (0..n).filter(|&j| pred[j] != usize::MAX).collect();
        order.sort_by_key(|&j| (pred[j], j));
        let mut target_of = vec![usize::MAX; n];
        let mut row_ptr = vec![0i32; n + 1];
        let mut target_tokens = Vec::with_capacity(order.len());
        for (k, &j) in order.iter().enumerate() {
            target_of[j] = k;
            target_tokens.push(tokens[j] as i32);
            row_ptr[pred[j] + 1] += 1;
        }
        for r in 0..n {
            row_ptr[r + 1] += row_ptr[r];
        }
        let leaf_targets =
            leaf_seqs.iter().map(|s| s.iter().map(|&j| target_of[j]).collect()).collect();
        let batch = TrainBatch {
            tokens,
            positions: packed.position_ids().to_vec(),
            kv_row_end: packed.kv_row_end().to_vec(),
            row_ptr,
            target_tokens,
            leaf_targets,
        };
        Ok(Packed { batch, node_base, indptr: indptr.to_vec(), target_of })
    }
}

/// Checks that every edge names a non-prompt node with tokens of one of `trees`, once.
fn check_edges(trees: &[TreeSpec], edges: &[EdgeRef]) -> Result<(), TrainError> {
    if edges.is_empty() {
        return Err(TrainError::Batch("no edges to train".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in edges {
        let Some(tree) = trees.get(e.tree) else {
            return Err(TrainError::Batch(format!("edge {e:?}: there are {} trees", trees.len())));
        };
        let Some(node) = tree.nodes.get(e.node) else {
            return Err(TrainError::Batch(format!(
                "edge {e:?}: tree {} has {} nodes",
                e.tree,
                tree.nodes.len()
            )));
        };
        if e.node == 0 || node.parent.is_none() {
            return Err(TrainError::Batch(format!(
                "edge {e:?}: node {} is the prompt, which is no edge",
                e.node
            )));
        }
        if node.tokens.is_empty() {
            return Err(TrainError::Batch(format!(
                "edge {e:?}: the segment has no tokens; there is nothing to train"
            )));
        }
        if !seen.insert(*e) {
            return Err(TrainError::Batch(format!("edge {e:?} is listed twice")));
        }
    }
    Ok(())
}
