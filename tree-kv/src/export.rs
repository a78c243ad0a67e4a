//! `export_into`: the per-step layout tree-attn plans from, as plain int32 arrays.

use crate::cache::TreeKvCache;
use crate::error::{KvError, Result};
use crate::ids::NodeId;
use crate::list::NIL;
use crate::paths::{chunk_of, last_page_len};

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
/// Reuse one `LayoutExport` across steps: [`TreeKvCache::export_into`] clears and refills it, and
/// allocates only while the step is larger than every earlier one.
#[derive(Clone, Debug, Default)]
pub struct LayoutExport {
    /// Ids of the exported nodes (host-side mapping back to the cache).
    pub node_ids: Vec<NodeId>,
    /// Position of each node's parent in these arrays, -1 for a root.
    pub node_parent: Vec<i32>,
    /// Depth (number of ancestors).
    pub node_depth: Vec<i32>,
    /// Token span start (absolute position of the node's first token).
    pub node_token_start: Vec<i32>,
    /// Token span end.
    pub node_token_end: Vec<i32>,
    /// KV chunk start: `floor(token_start / ps) * ps`.
    pub node_kv_start: Vec<i32>,
    /// KV chunk end: `floor(token_end / ps) * ps` for an internal node, `token_end` for a leaf.
    pub node_kv_end: Vec<i32>,
    /// First leaf (position in the leaf arrays) under the node.
    pub node_leaf_begin: Vec<i32>,
    /// One past the last leaf under the node.
    pub node_leaf_end: Vec<i32>,
    /// CSR row pointer of the chunk pages, `num_nodes + 1` entries starting at 0.
    pub node_page_indptr: Vec<i32>,
    /// Chunk pages of all nodes, concatenated.
    pub node_page_indices: Vec<i32>,
    /// Rows used in each chunk's last page, in `[1, page_size]`; 0 for an empty chunk.
    pub node_last_page_len: Vec<i32>,
    /// Ids of the leaves in DFS order.
    pub leaf_ids: Vec<NodeId>,
    /// For each DFS-ordered leaf, its index in the slice given to `export_into` (to permute query
    /// rows).
    pub leaf_input: Vec<i32>,
    /// Position of each leaf in the node arrays.
    pub leaf_node: Vec<i32>,
    /// CSR row pointer of the full root-to-leaf page lists, `num_leaves + 1` entries.
    pub leaf_page_indptr: Vec<i32>,
    /// Root-to-leaf pages of all leaves, concatenated.
    pub leaf_page_indices: Vec<i32>,
    /// Rows used in each leaf's last page, in `[1, page_size]` (0 only for an empty path); the
    /// sequence length `page_size * (pages - 1) + last_page_len` equals the leaf's token end.
    pub leaf_last_page_len: Vec<i32>,
    scratch: Scratch,
}

/// Reused working memory: marks of the nodes on active paths, and the DFS state.
#[derive(Clone, Debug, Default)]
struct Scratch {
    /// `stamp[slot] == epoch` marks a node on an active path in the current export.
    stamp: Vec<u32>,
    epoch: u32,
    /// Per slot: the leaf's input index while marking, then the node's export position.
    pos: Vec<i32>,
    roots: Vec<u32>,
    /// DFS frames: (slot, next child to visit, path length before the node's chunk).
    stack: Vec<(u32, u32, u32)>,
    /// Pages of the current root-to-node path.
    path: Vec<i32>,
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

    fn clear(&mut self) {
        self.node_ids.clear();
        for v in [
            &mut self.node_parent,
            &mut self.node_depth,
            &mut self.node_token_start,
            &mut self.node_token_end,
            &mut self.node_kv_start,
            &mut self.node_kv_end,
            &mut self.node_leaf_begin,
            &mut self.node_leaf_end,
            &mut self.node_page_indptr,
            &mut self.node_page_indices,
            &mut self.node_last_page_len,
            &mut self.leaf_input,
            &mut self.leaf_node,
            &mut self.leaf_page_indptr,
            &mut self.leaf_page_indices,
            &mut self.leaf_last_page_len,
        ] {
            v.clear();
        }
        self.leaf_ids.clear();
        self.node_page_indptr.push(0);
        self.leaf_page_indptr.push(0);
    }
}

impl TreeKvCache {
    /// Fills `out` with the layout of the paths ending at `leaves` (see [`LayoutExport`]).
    ///
    /// Errors: `UnknownNode`, `NotALeaf` (a node with children), `DuplicateLeaf`, and
    /// `ExportTooLarge` if the concatenated page lists overflow int32. On error `out` holds
    /// unspecified partial data; the cache is never changed.
    pub fn export_into(&self, leaves: &[NodeId], out: &mut LayoutExport) -> Result<()> {
        out.clear();
        self.mark_paths(leaves, &mut out.scratch)?;
        let roots = std::mem::take(&mut out.scratch.roots);
        let result = roots.iter().try_for_each(|&r| self.export_tree(r, out));
        out.scratch.roots = roots;
        result
    }

    /// Stamps every node on a path to one of `leaves` and records the roots in first-seen order.
    fn mark_paths(&self, leaves: &[NodeId], sc: &mut Scratch) -> Result<()> {
        let n = self.nodes.slots.len();
        if sc.epoch == u32::MAX {
            sc.stamp.iter_mut().for_each(|s| *s = 0);
            sc.epoch = 0;
        }
        sc.epoch += 1;
        sc.stamp.resize(n, 0);
        sc.pos.resize(n, 0);
        sc.roots.clear();
        for (i, &leaf) in leaves.iter().enumerate() {
            let s = self.nodes.slot(leaf)?;
            let node = &self.nodes.slots[s];
            if !node.children.is_empty() {
                return Err(KvError::NotALeaf { node: leaf });
            }
            if sc.stamp[s] == sc.epoch {
                return Err(KvError::DuplicateLeaf { node: leaf });
            }
            sc.stamp[s] = sc.epoch;
            sc.pos[s] = i as i32;
            let mut cur = s as u32;
            loop {
                let parent = self.nodes.slots[cur as usize].parent;
                if parent == NIL {
                    sc.roots.push(cur);
                    break;
                }
                if sc.stamp[parent as usize] == sc.epoch {
                    break;
                }
                sc.stamp[parent as usize] = sc.epoch;
                cur = parent;
            }
        }
        Ok(())
    }

    /// Depth-first export of the marked part of one tree.
    fn export_tree(&self, root: u32, out: &mut LayoutExport) -> Result<()> {
        let mut stack = std::mem::take(&mut out.scratch.stack);
        stack.clear();
        self.enter(root, out, &mut stack)?;
        while let Some(frame) = stack.last_mut() {
            let (s, next, path_len) = *frame;
            let children = &self.nodes.slots[s as usize].children;
            let marked = children[next as usize..]
                .iter()
                .position(|c| out.scratch.stamp[c.index as usize] == out.scratch.epoch);
            match marked {
                Some(k) => {
                    frame.1 = next + k as u32 + 1;
                    let child = children[next as usize + k].index;
                    self.enter(child, out, &mut stack)?;
                }
                None => {
                    let k = out.scratch.pos[s as usize] as usize;
                    out.node_leaf_end[k] = out.leaf_ids.len() as i32;
                    out.scratch.path.truncate(path_len as usize);
                    stack.pop();
                }
            }
        }
        out.scratch.stack = stack;
        Ok(())
    }

    /// Emits node `s` (and its leaf entry when it is a leaf) and pushes its DFS frame.
    fn enter(
        &self,
        s: u32,
        out: &mut LayoutExport,
        stack: &mut Vec<(u32, u32, u32)>,
    ) -> Result<()> {
        let ps = self.pool.page_size;
        let n = &self.nodes.slots[s as usize];
        let k = out.node_ids.len() as i32;
        let input = out.scratch.pos[s as usize];
        out.scratch.pos[s as usize] = k;
        let (kv_start, kv_end, pages) = chunk_of(n, ps);
        let chunk = &n.pages[..pages];

        out.node_ids.push(self.nodes.id(s as usize));
        out.node_parent.push(if n.parent == NIL { -1 } else { out.scratch.pos[n.parent as usize] });
        out.node_depth.push(n.depth as i32);
        out.node_token_start.push(n.start as i32);
        out.node_token_end.push(n.end as i32);
        out.node_kv_start.push(kv_start as i32);
        out.node_kv_end.push(kv_end as i32);
        out.node_leaf_begin.push(out.leaf_ids.len() as i32);
        out.node_leaf_end.push(out.leaf_ids.len() as i32);
        out.node_page_indices.extend(chunk.iter().map(|p| p.0 as i32));
        out.node_page_indptr.push(checked_len(out.node_page_indices.len())?);
        out.node_last_page_len.push(last_page_len(kv_end - kv_start, ps) as i32);

        let path_len = out.scratch.path.len() as u32;
        out.scratch.path.extend(chunk.iter().map(|p| p.0 as i32));
        if n.children.is_empty() {
            out.leaf_ids.push(self.nodes.id(s as usize));
            out.leaf_input.push(input);
            out.leaf_node.push(k);
            out.leaf_page_indices.extend_from_slice(&out.scratch.path);
            out.leaf_page_indptr.push(checked_len(out.leaf_page_indices.len())?);
            out.leaf_last_page_len.push(last_page_len(n.end, ps) as i32);
        }
        stack.push((s, 0, path_len));
        Ok(())
    }
}

/// A CSR offset as int32, or `ExportTooLarge` when the table outgrows int32.
fn checked_len(len: usize) -> Result<i32> {
    i32::try_from(len).map_err(|_| KvError::ExportTooLarge { entries: len as u64 })
}
