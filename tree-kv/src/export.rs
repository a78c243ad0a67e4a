//! [`LayoutExport`]: the per-step layout tree-attn plans from, as plain int32 arrays.

use crate::ids::NodeId;

/// The page tables of one decode step for a set of active leaves, in FlashInfer's CSR vocabulary
/// (`indptr`, `indices`, `last_page_len`; all int32).
///
/// Nodes are the ancestors-or-self of the given leaves, in DFS pre-order: roots in order of first
/// appearance in the leaf list, children in creation order. Leaves are in the same DFS order, so
/// the leaves under node `i` are exactly `node_leaf_begin[i] .. node_leaf_end[i]`. A planner's work
/// list is then one item per node with a non-empty chunk:
/// `{ node: i, pages: node_page_indptr[i] .. node_page_indptr[i+1], leaves: node_leaf_begin[i] ..
/// node_leaf_end[i] }` (split long page ranges as it likes).
///
/// Reuse one `LayoutExport` across steps: [`crate::TreeKvCache::export_into`] refills it, and
/// allocates only while the step is larger than every earlier one. The arrays are read-only
/// outside this crate, so a later export may keep whatever did not change.
#[derive(Clone, Debug, Default)]
pub struct LayoutExport {
    node_ids: Vec<NodeId>,
    node_parent: Vec<i32>,
    node_depth: Vec<i32>,
    node_token_start: Vec<i32>,
    node_token_end: Vec<i32>,
    node_kv_start: Vec<i32>,
    node_kv_end: Vec<i32>,
    node_leaf_begin: Vec<i32>,
    node_leaf_end: Vec<i32>,
    node_page_indptr: Vec<i32>,
    node_page_indices: Vec<i32>,
    node_last_page_len: Vec<i32>,
    leaf_ids: Vec<NodeId>,
    leaf_input: Vec<i32>,
    leaf_node: Vec<i32>,
    leaf_page_indptr: Vec<i32>,
    leaf_page_indices: Vec<i32>,
    leaf_last_page_len: Vec<i32>,
    /// Layout version of the cache at the last successful export (0: none), and its leaves: the
    /// key of the steady-state fast path.
    pub(crate) layout: u64,
    pub(crate) leaves: Vec<NodeId>,
    pub(crate) scratch: Scratch,
}

impl LayoutExport {
    /// Ids of the exported nodes (host-side mapping back to the cache).
    pub fn node_ids(&self) -> &[NodeId] {
        &self.node_ids
    }

    /// Position of each node's parent in these arrays, -1 for a root.
    pub fn node_parent(&self) -> &[i32] {
        &self.node_parent
    }

    /// Depth (number of ancestors).
    pub fn node_depth(&self) -> &[i32] {
        &self.node_depth
    }

    /// Token span start (absolute position of the node's first token).
    pub fn node_token_start(&self) -> &[i32] {
        &self.node_token_start
    }

    /// Token span end.
    pub fn node_token_end(&self) -> &[i32] {
        &self.node_token_end
    }

    /// KV chunk start: `floor(token_start / ps) * ps`.
    pub fn node_kv_start(&self) -> &[i32] {
        &self.node_kv_start
    }

    /// KV chunk end: `floor(token_end / ps) * ps` for an internal node, `token_end` for a leaf.
    pub fn node_kv_end(&self) -> &[i32] {
        &self.node_kv_end
    }

    /// First leaf (position in the leaf arrays) under the node.
    pub fn node_leaf_begin(&self) -> &[i32] {
        &self.node_leaf_begin
    }

    /// One past the last leaf under the node.
    pub fn node_leaf_end(&self) -> &[i32] {
        &self.node_leaf_end
    }

    /// CSR row pointer of the chunk pages, `num_nodes + 1` entries starting at 0.
    pub fn node_page_indptr(&self) -> &[i32] {
        &self.node_page_indptr
    }

    /// Chunk pages of all nodes, concatenated.
    pub fn node_page_indices(&self) -> &[i32] {
        &self.node_page_indices
    }

    /// Rows used in each chunk's last page, in `[1, page_size]`; 0 for an empty chunk.
    pub fn node_last_page_len(&self) -> &[i32] {
        &self.node_last_page_len
    }

    /// Ids of the leaves in DFS order.
    pub fn leaf_ids(&self) -> &[NodeId] {
        &self.leaf_ids
    }

    /// For each DFS-ordered leaf, its index in the slice given to `export_into` (to permute query
    /// rows).
    pub fn leaf_input(&self) -> &[i32] {
        &self.leaf_input
    }

    /// Position of each leaf in the node arrays.
    pub fn leaf_node(&self) -> &[i32] {
        &self.leaf_node
    }

    /// CSR row pointer of the full root-to-leaf page lists, `num_leaves + 1` entries.
    pub fn leaf_page_indptr(&self) -> &[i32] {
        &self.leaf_page_indptr
    }

    /// Root-to-leaf pages of all leaves, concatenated.
    pub fn leaf_page_indices(&self) -> &[i32] {
        &self.leaf_page_indices
    }

    /// Rows used in each leaf's last page, in `[1, page_size]` (0 only for an empty path); the
    /// sequence length `page_size * (pages - 1) + last_page_len` equals the leaf's token end.
    pub fn leaf_last_page_len(&self) -> &[i32] {
        &self.leaf_last_page_len
    }
}

/// Reused working memory: marks of the nodes on active paths, and the DFS state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    /// `stamp[slot] == epoch` marks a node on an active path in the current export.
    pub(crate) stamp: Vec<u32>,
    pub(crate) epoch: u32,
    /// Per leaf slot: the leaf's index in the caller's slice.
    pub(crate) pos: Vec<i32>,
    pub(crate) roots: Vec<u32>,
    /// DFS frames.
    pub(crate) stack: Vec<Frame>,
    /// Pages of the current root-to-node path.
    pub(crate) path: Vec<i32>,
}

impl LayoutExport {
    /// An empty export (buffers grow on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// Exported nodes.
    pub fn num_nodes(&self) -> usize {
        self.node_ids.len()
    }

    /// Exported leaves.
    pub fn num_leaves(&self) -> usize {
        self.leaf_ids.len()
    }

    /// Sizes every array for the coming export. In steady state (same sizes as last step) this
    /// neither allocates nor writes; the export then overwrites every element.
    pub(crate) fn resize(&mut self, sizes: &Sizes, leaves: usize) {
        let none = NodeId { index: 0, generation: 0 };
        self.node_ids.resize(sizes.nodes, none);
        for v in [
            &mut self.node_parent,
            &mut self.node_depth,
            &mut self.node_token_start,
            &mut self.node_token_end,
            &mut self.node_kv_start,
            &mut self.node_kv_end,
            &mut self.node_leaf_begin,
            &mut self.node_leaf_end,
            &mut self.node_last_page_len,
        ] {
            v.resize(sizes.nodes, 0);
        }
        self.node_page_indptr.resize(sizes.nodes + 1, 0);
        self.node_page_indices.resize(sizes.chunk_pages, 0);
        self.leaf_ids.resize(leaves, none);
        for v in [&mut self.leaf_input, &mut self.leaf_node, &mut self.leaf_last_page_len] {
            v.resize(leaves, 0);
        }
        self.leaf_page_indptr.resize(leaves + 1, 0);
        self.leaf_page_indices.resize(sizes.leaf_pages, 0);
    }
}

/// Mutable views of every output array, taken once per export so the hot loop indexes plain
/// slices (whose pointers and lengths the compiler keeps in registers) instead of `Vec` fields.
pub(crate) struct Rows<'a> {
    pub(crate) node_ids: &'a mut [NodeId],
    pub(crate) node_parent: &'a mut [i32],
    pub(crate) node_depth: &'a mut [i32],
    pub(crate) node_token_start: &'a mut [i32],
    pub(crate) node_token_end: &'a mut [i32],
    pub(crate) node_kv_start: &'a mut [i32],
    pub(crate) node_kv_end: &'a mut [i32],
    pub(crate) node_leaf_begin: &'a mut [i32],
    pub(crate) node_leaf_end: &'a mut [i32],
    pub(crate) node_page_indptr: &'a mut [i32],
    pub(crate) node_page_indices: &'a mut [i32],
    pub(crate) node_last_page_len: &'a mut [i32],
    pub(crate) leaf_ids: &'a mut [NodeId],
    pub(crate) leaf_input: &'a mut [i32],
    pub(crate) leaf_node: &'a mut [i32],
    pub(crate) leaf_page_indptr: &'a mut [i32],
    pub(crate) leaf_page_indices: &'a mut [i32],
    pub(crate) leaf_last_page_len: &'a mut [i32],
}

impl LayoutExport {
    pub(crate) fn rows(&mut self) -> Rows<'_> {
        Rows {
            node_ids: &mut self.node_ids,
            node_parent: &mut self.node_parent,
            node_depth: &mut self.node_depth,
            node_token_start: &mut self.node_token_start,
            node_token_end: &mut self.node_token_end,
            node_kv_start: &mut self.node_kv_start,
            node_kv_end: &mut self.node_kv_end,
            node_leaf_begin: &mut self.node_leaf_begin,
            node_leaf_end: &mut self.node_leaf_end,
            node_page_indptr: &mut self.node_page_indptr,
            node_page_indices: &mut self.node_page_indices,
            node_last_page_len: &mut self.node_last_page_len,
            leaf_ids: &mut self.leaf_ids,
            leaf_input: &mut self.leaf_input,
            leaf_node: &mut self.leaf_node,
            leaf_page_indptr: &mut self.leaf_page_indptr,
            leaf_page_indices: &mut self.leaf_page_indices,
            leaf_last_page_len: &mut self.leaf_last_page_len,
        }
    }
}

/// Element counts of one export, computed while marking.
#[derive(Default)]
pub(crate) struct Sizes {
    pub(crate) nodes: usize,
    pub(crate) chunk_pages: usize,
    pub(crate) leaf_pages: usize,
}

/// Write positions during the DFS.
#[derive(Default)]
pub(crate) struct Cursor {
    pub(crate) node: usize,
    pub(crate) leaf: usize,
    pub(crate) chunk_page: usize,
    pub(crate) leaf_page: usize,
}

/// One DFS stack entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    /// Node slot.
    pub(crate) slot: u32,
    /// Next child (index into its children) to look at.
    pub(crate) next: u32,
    /// Length of the scratch path before this node's chunk.
    pub(crate) path_len: u32,
    /// The node's export position.
    pub(crate) k: i32,
}
