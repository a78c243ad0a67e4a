//! `release`: the caller gives a node up; nodes nobody needs any more are collected bottom-up.

use crate::cache::TreeKvCache;
use crate::error::Result;
use crate::ids::NodeId;
use crate::list::NIL;

impl TreeKvCache {
    /// Releases `node`. A released node with children stays alive (its pages are part of their
    /// paths) but refuses fork/append/release; it is collected when its last child is. Collection
    /// then walks up: a released parent left without children is collected too.
    ///
    /// Collecting a node drops its hold on each of its pages, deepest first: a page nobody else
    /// holds becomes cached (LRU tail) if it is in the radix index, else free (free-list tail).
    /// If the node had claimed its parent's tail page, the claim returns to the parent: the page's
    /// rows from the node's start on become free again, unless the page is full and indexed
    /// (then it is kept as it is, for prefix reuse).
    ///
    /// Errors: `UnknownNode` (never created, or collected), `NodeReleased` (released twice).
    pub fn release(&mut self, node: NodeId) -> Result<()> {
        let s = self.nodes.live_slot(node)?;
        self.nodes.slots[s].released = true;
        self.layout_changed();
        let mut cur = s;
        loop {
            let n = &self.nodes.slots[cur];
            if !n.released || !n.children.is_empty() {
                return Ok(());
            }
            let parent = n.parent;
            self.collect(cur);
            if parent == NIL {
                return Ok(());
            }
            let siblings = &mut self.nodes.slots[parent as usize].children;
            if let Some(i) = siblings.iter().position(|c| c.index as usize == cur) {
                siblings.remove(i);
            }
            cur = parent as usize;
        }
    }

    /// Drops every page hold of the childless slot `s` and frees the slot.
    fn collect(&mut self, s: usize) {
        let ps = self.pool.page_size;
        let pages = std::mem::take(&mut self.nodes.slots[s].pages);
        let t = self.nodes.slots[s].start & (ps - 1);
        for (i, page) in pages.iter().enumerate().rev() {
            let p = page.0;
            let m = &mut self.pool.meta[p as usize];
            if m.writer == s as u32 {
                m.writer = NIL;
            }
            // Rows `[t, ps)` of a shared first page were this node's (or its collected
            // descendants'); unless the page is indexed (then others may read them), they are
            // nobody's now and the parent may hand them to its next child.
            if i == 0 && t != 0 && m.refcount > 1 && !m.indexed {
                m.fill = t;
                m.frozen = t;
            }
            self.pool.drop_ref(p);
        }
        self.nodes.remove(s);
    }
}
