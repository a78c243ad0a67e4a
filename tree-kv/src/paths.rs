//! Per-node KV chunks and per-leaf page paths (the single-node forms of the exports).

use crate::cache::TreeKvCache;
use crate::error::Result;
use crate::ids::{NodeId, PageId};
use crate::list::NIL;
use crate::node::Node;

/// The part of a path's KV that tree attention attributes to one node.
///
/// An internal node (one with children) contributes only the page-aligned part of its span: its
/// tail rows live in each child's first page (the claimed page or the child's copy), so they are
/// attributed to the children. Hence `kv_start = floor(parent.end / ps) * ps` (0 for a root) and
/// `kv_end = floor(end / ps) * ps` for an internal node, `end` for a leaf. `pages` covers exactly
/// `[kv_start, kv_end)`; the chunk may be empty (a 3-token internal node inside one page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvChunk<'a> {
    /// First position covered (page-aligned).
    pub kv_start: u32,
    /// One past the last position covered.
    pub kv_end: u32,
    /// The pages, `ceil(kv_end/ps) - kv_start/ps` of them.
    pub pages: &'a [PageId],
}

impl KvChunk<'_> {
    /// FlashInfer's `last_page_len` of the chunk: in `[1, page_size]`, or 0 for an empty chunk.
    pub fn last_page_len(&self, page_size: u32) -> u32 {
        last_page_len(self.kv_end - self.kv_start, page_size)
    }
}

/// `last_page_len` of a `len`-token page list: `len - ps * (pages - 1)`, 0 when `len == 0`.
pub(crate) fn last_page_len(len: u32, page_size: u32) -> u32 {
    if len == 0 { 0 } else { ((len - 1) & (page_size - 1)) + 1 }
}

/// `ceil(tokens / page_size)` with a shift: page sizes are powers of two and positions stay
/// below `2^31`, so this neither divides (hot in exports) nor overflows.
#[inline]
pub(crate) fn pages_for(tokens: u32, page_size: u32) -> u32 {
    (tokens + (page_size - 1)) >> page_size.trailing_zeros()
}

/// `(kv_start, kv_end, number of pages)` of a node's chunk.
#[inline]
pub(crate) fn chunk_of(n: &Node, page_size: u32) -> (u32, u32, usize) {
    let mask = !(page_size - 1);
    let kv_start = n.start & mask;
    let kv_end = if n.children.is_empty() { n.end } else { n.end & mask };
    let pages = pages_for(kv_end - kv_start, page_size) as usize;
    (kv_start, kv_end, pages)
}

impl TreeKvCache {
    /// The KV chunk of a node (see [`KvChunk`]).
    pub fn kv_chunk(&self, id: NodeId) -> Result<KvChunk<'_>> {
        let n = &self.nodes.slots[self.nodes.slot(id)?];
        let (kv_start, kv_end, pages) = chunk_of(n, self.pool.page_size);
        Ok(KvChunk { kv_start, kv_end, pages: &n.pages[..pages] })
    }

    /// Pushes the full page list of the path from the root to `id`'s end onto `out` (the chunks of
    /// its ancestors, then all of `id`'s pages) and returns FlashInfer's `last_page_len`, so that
    /// `page_size * (pages - 1) + last_page_len == end` (0 and no pages for an empty path).
    pub fn leaf_path_into(&self, id: NodeId, out: &mut Vec<PageId>) -> Result<u32> {
        let s = self.nodes.slot(id)?;
        let before = out.len();
        let n = &self.nodes.slots[s];
        out.extend(n.pages.iter().rev());
        let mut p = n.parent;
        while p != NIL {
            let a = &self.nodes.slots[p as usize];
            let (_, _, pages) = chunk_of(a, self.pool.page_size);
            out.extend(a.pages[..pages].iter().rev());
            p = a.parent;
        }
        out[before..].reverse();
        Ok(last_page_len(n.end, self.pool.page_size))
    }

    /// Pushes the leaves (childless nodes) of `id`'s subtree onto `out` in DFS order (children in
    /// creation order); `id` itself when it is a leaf.
    pub fn leaves_under(&self, id: NodeId, out: &mut Vec<NodeId>) -> Result<()> {
        self.nodes.slot(id)?;
        let mut stack = vec![id];
        while let Some(cur) = stack.pop() {
            let n = &self.nodes.slots[cur.index as usize];
            if n.children.is_empty() {
                out.push(cur);
            }
            stack.extend(n.children.iter().rev());
        }
        Ok(())
    }
}
