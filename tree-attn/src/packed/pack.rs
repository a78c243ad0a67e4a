//! Packing a forest of rollout trees into one token sequence (host side, pure).
//!
//! Nodes arrive in DFS pre-order, each with its parent and its token count; trees follow one
//! another (a node without a parent starts a new tree). The packed order is the node order, each
//! node's tokens contiguous, so:
//!
//! - `kv_row_end[t] = subtree_end(node(t))`: the exclusive end, in packed tokens, of the
//!   subtree of the token's node — the tree mask (see `treepo_kernels::ops::TreeMask`);
//! - `position_ids[t]` = the token's depth in tokens (its position in every root→leaf sequence
//!   through it), for RoPE;
//! - `leaves_under_token[t]` = how many leaves' sequences contain the token (Tree Training's
//!   weight numerator: averaging a loss over leaves weights token `t` by
//!   `leaves_under_token[t] / leaves_in_its_tree`, see [`PackedTree::token_weights`]);
//! - each leaf's sequence as packed token indices, root first, to gather its tokens, labels and
//!   loss positions.

use std::ops::Range;

use treepo_kernels::ops::TreeMask;
use treepo_kernels::{Device, KernelError};

/// One node of a rollout tree, in DFS pre-order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackNode {
    /// Index of the parent node (earlier in the list), or `None` for the root of a new tree.
    pub parent: Option<u32>,
    /// Tokens of this node's segment (may be 0 for a non-root node, e.g. a leaf that ended at a
    /// branch point).
    pub num_tokens: u32,
}

impl PackNode {
    /// The root of a new tree with `num_tokens` tokens (the prompt).
    pub fn root(num_tokens: u32) -> Self {
        PackNode { parent: None, num_tokens }
    }
    /// A node below `parent` with `num_tokens` tokens.
    pub fn child(parent: u32, num_tokens: u32) -> Self {
        PackNode { parent: Some(parent), num_tokens }
    }
}

/// Why a forest cannot be packed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// No node was given.
    #[error("no nodes: a packed batch needs at least one tree")]
    Empty,
    /// A node names itself or a later node as its parent.
    #[error(
        "node {node} names node {parent} as its parent, which is not before it in DFS pre-order"
    )]
    ParentAfterChild {
        /// The node.
        node: usize,
        /// Its parent.
        parent: u32,
    },
    /// A node's parent is earlier but not on the current root→node path: its subtree was already
    /// closed, so the list is not a DFS pre-order.
    #[error(
        "node {node}: parent {parent} is not on the current DFS path (the nodes are not in pre-order)"
    )]
    NotPreOrder {
        /// The node.
        node: usize,
        /// Its parent.
        parent: u32,
    },
    /// A tree holds no token at all.
    #[error("the tree rooted at node {root} has no tokens")]
    EmptyTree {
        /// Its root.
        root: usize,
    },
    /// A leaf's root→leaf sequence holds no token.
    #[error("leaf node {leaf} has an empty root-to-leaf sequence")]
    EmptyLeaf {
        /// The leaf.
        leaf: usize,
    },
    /// More tokens than the kernels' `int32` indices can address.
    #[error("{total} packed tokens exceed the int32 index range")]
    TooManyTokens {
        /// The total.
        total: u64,
    },
    /// Token ids were given for a different number of nodes than were packed.
    #[error("token ids were given for {got} nodes but the tree has {expected}")]
    NodeCountMismatch {
        /// Nodes packed.
        expected: usize,
        /// Id lists given.
        got: usize,
    },
    /// Token ids given per node do not match the node's token count.
    #[error("node {node} declares {expected} tokens but {got} token ids were given")]
    TokenCountMismatch {
        /// The node.
        node: usize,
        /// Its `num_tokens`.
        expected: u32,
        /// Ids given.
        got: usize,
    },
}

/// A forest packed in DFS pre-order with everything training needs per token and per leaf.
/// Built only by [`PackedTree::pack`], so its invariants hold (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedTree {
    kv_row_end: Vec<i32>,
    position_ids: Vec<u32>,
    token_node: Vec<u32>,
    leaves_under_token: Vec<u32>,
    node_indptr: Vec<u32>,
    leaf_nodes: Vec<u32>,
    leaf_indptr: Vec<u32>,
    leaf_tokens: Vec<u32>,
    tree_roots: Vec<u32>,
    tree_indptr: Vec<u32>,
    tree_leaves: Vec<u32>,
}

impl PackedTree {
    /// Validates `nodes` (DFS pre-order, parents before children, no empty tree or leaf) and
    /// packs them. `O(nodes + tokens + Σ leaf lengths)`.
    pub fn pack(nodes: &[PackNode]) -> Result<PackedTree, PackError> {
        if nodes.is_empty() {
            return Err(PackError::Empty);
        }
        let m = nodes.len();
        let total: u64 = nodes.iter().map(|n| n.num_tokens as u64).sum();
        if total > i32::MAX as u64 || m > i32::MAX as usize {
            return Err(PackError::TooManyTokens { total });
        }
        // Pre-order check with the open root→node path.
        let mut path: Vec<usize> = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            match node.parent {
                None => path.clear(),
                Some(p) if p as usize >= i => {
                    return Err(PackError::ParentAfterChild { node: i, parent: p });
                }
                Some(p) => {
                    while path.last().is_some_and(|&top| top != p as usize) {
                        path.pop();
                    }
                    if path.is_empty() {
                        return Err(PackError::NotPreOrder { node: i, parent: p });
                    }
                }
            }
            path.push(i);
        }
        let mut node_indptr = vec![0u32; m + 1];
        for (i, n) in nodes.iter().enumerate() {
            node_indptr[i + 1] = node_indptr[i] + n.num_tokens;
        }
        // Last descendant and leaf count of every node (children follow their parent).
        let mut last = (0..m).collect::<Vec<_>>();
        let mut has_child = vec![false; m];
        let mut leaves = vec![0u32; m];
        for i in (0..m).rev() {
            if !has_child[i] {
                leaves[i] = 1;
            }
            if let Some(p) = nodes[i].parent {
                let p = p as usize;
                has_child[p] = true;
                last[p] = last[p].max(last[i]);
                leaves[p] += leaves[i];
            }
        }
        let mut depth = vec![0u32; m];
        for i in 0..m {
            if let Some(p) = nodes[i].parent {
                depth[i] = depth[p as usize] + nodes[p as usize].num_tokens;
            }
        }
        let n = total as usize;
        let (mut kv_row_end, mut position_ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut token_node, mut leaves_under_token) =
            (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..m {
            let end = node_indptr[last[i] + 1] as i32;
            for t in 0..nodes[i].num_tokens {
                kv_row_end.push(end);
                position_ids.push(depth[i] + t);
                token_node.push(i as u32);
                leaves_under_token.push(leaves[i]);
            }
        }
        // Trees and leaf sequences (the current path's token ranges, root first).
        let (mut tree_roots, mut tree_indptr, mut tree_leaves) =
            (Vec::new(), vec![0u32], Vec::new());
        let (mut leaf_nodes, mut leaf_indptr, mut leaf_tokens) =
            (Vec::new(), vec![0u32], Vec::new());
        path.clear();
        for (i, node) in nodes.iter().enumerate() {
            match node.parent {
                None => {
                    let size = node_indptr[last[i] + 1] - node_indptr[i];
                    if size == 0 {
                        return Err(PackError::EmptyTree { root: i });
                    }
                    tree_roots.push(i as u32);
                    tree_indptr.push(node_indptr[last[i] + 1]);
                    tree_leaves.push(leaves[i]);
                    path.clear();
                }
                Some(p) => {
                    while path.last().is_some_and(|&top| top != p as usize) {
                        path.pop();
                    }
                }
            }
            path.push(i);
            if !has_child[i] {
                let start = leaf_tokens.len();
                for &a in &path {
                    leaf_tokens.extend(node_indptr[a]..node_indptr[a + 1]);
                }
                if leaf_tokens.len() == start {
                    return Err(PackError::EmptyLeaf { leaf: i });
                }
                leaf_nodes.push(i as u32);
                leaf_indptr.push(leaf_tokens.len() as u32);
            }
        }
        Ok(PackedTree {
            kv_row_end,
            position_ids,
            token_node,
            leaves_under_token,
            node_indptr,
            leaf_nodes,
            leaf_indptr,
            leaf_tokens,
            tree_roots,
            tree_indptr,
            tree_leaves,
        })
    }

    /// Packed tokens `N`.
    pub fn num_tokens(&self) -> usize {
        self.kv_row_end.len()
    }
    /// Nodes.
    pub fn num_nodes(&self) -> usize {
        self.node_indptr.len() - 1
    }
    /// Trees.
    pub fn num_trees(&self) -> usize {
        self.tree_roots.len()
    }
    /// Leaves (all trees), in pre-order.
    pub fn num_leaves(&self) -> usize {
        self.leaf_nodes.len()
    }
    /// `kv_row_end [N]`: key `t` is visible to query rows `[t, kv_row_end[t])`.
    pub fn kv_row_end(&self) -> &[i32] {
        &self.kv_row_end
    }
    /// `position_ids [N]`: each token's depth in tokens (RoPE position).
    pub fn position_ids(&self) -> &[u32] {
        &self.position_ids
    }
    /// `token_node [N]`: the node of each token.
    pub fn token_node(&self) -> &[u32] {
        &self.token_node
    }
    /// `leaves_under_token [N]`: how many leaf sequences contain each token.
    pub fn leaves_under_token(&self) -> &[u32] {
        &self.leaves_under_token
    }
    /// Packed token range of `node` (panics if `node >= num_nodes()`).
    pub fn node_range(&self, node: usize) -> Range<usize> {
        self.node_indptr[node] as usize..self.node_indptr[node + 1] as usize
    }
    /// `node_indptr [num_nodes + 1]` (`cu_node_lens`).
    pub fn node_indptr(&self) -> &[u32] {
        &self.node_indptr
    }
    /// Node of leaf `leaf`.
    pub fn leaf_node(&self, leaf: usize) -> usize {
        self.leaf_nodes[leaf] as usize
    }
    /// Packed token indices of leaf `leaf`'s root→leaf sequence, in order.
    pub fn leaf_tokens(&self, leaf: usize) -> &[u32] {
        &self.leaf_tokens[self.leaf_indptr[leaf] as usize..self.leaf_indptr[leaf + 1] as usize]
    }
    /// Packed token range of tree `tree` (`cu_tree_lens`).
    pub fn tree_range(&self, tree: usize) -> Range<usize> {
        self.tree_indptr[tree] as usize..self.tree_indptr[tree + 1] as usize
    }
    /// Leaves of tree `tree`.
    pub fn tree_leaves(&self, tree: usize) -> usize {
        self.tree_leaves[tree] as usize
    }
    /// Tree Training's per-token weight `leaves_under_token[t] / leaves of t's tree`: averaging
    /// a per-token loss over a tree's leaves equals the packed loss weighted by this.
    pub fn token_weights(&self) -> Vec<f32> {
        let mut w = Vec::with_capacity(self.num_tokens());
        for t in 0..self.num_trees() {
            let leaves = self.tree_leaves[t] as f32;
            w.extend(self.tree_range(t).map(|i| self.leaves_under_token[i] as f32 / leaves));
        }
        w
    }
    /// Tokens of every leaf sequence laid end to end (what per-leaf training processes).
    pub fn flat_tokens(&self) -> usize {
        self.leaf_tokens.len()
    }
    /// `flat_tokens / num_tokens`: how many times fewer tokens the packed tree holds.
    pub fn token_reduction(&self) -> f64 {
        self.flat_tokens() as f64 / self.num_tokens() as f64
    }
    /// Concatenates per-node token ids in packed order (`ids[i]` for node `i`).
    pub fn gather_ids(&self, ids: &[&[u32]]) -> Result<Vec<u32>, PackError> {
        if ids.len() != self.num_nodes() {
            return Err(PackError::NodeCountMismatch {
                expected: self.num_nodes(),
                got: ids.len(),
            });
        }
        let mut out = Vec::with_capacity(self.num_tokens());
        for (node, node_ids) in ids.iter().enumerate() {
            let expected = self.node_range(node).len() as u32;
            let got = node_ids.len();
            if got != expected as usize {
                return Err(PackError::TokenCountMismatch { node, expected, got });
            }
            out.extend_from_slice(node_ids);
        }
        Ok(out)
    }
    /// Validates and uploads the tree mask (`kv_row_end` plus tile bounds) to `dev`: once per
    /// batch, then shared by every layer's forward and backward.
    pub fn upload_mask(&self, dev: &Device) -> Result<TreeMask, KernelError> {
        TreeMask::upload(dev, &self.kv_row_end)
    }
}
