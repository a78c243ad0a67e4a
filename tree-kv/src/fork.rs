//! `fork`: new children of a node, sharing every full page; copy-on-write of a partial tail.

use crate::cache::TreeKvCache;
use crate::error::{KvError, Result};
use crate::ids::{NodeId, PageCopy, PageId};
use crate::list::NIL;
use crate::node::Node;

/// The result of [`TreeKvCache::fork`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fork {
    /// The new children, in order; each starts (empty) at the parent's `end`.
    pub children: Vec<NodeId>,
    /// Tail copies the device must run before the children are attended, one per child that got
    /// a private copy of the parent's tail page, in child order.
    pub copies: Vec<PageCopy>,
}

impl TreeKvCache {
    /// Creates `n` children of `node` and freezes `node` (it can be forked again, never appended).
    ///
    /// Let `t = end % page_size`. If `t == 0` the children start on fresh pages: no copy. Otherwise
    /// the parent's tail page `P` holds `t` rows that stay frozen from now on, and:
    /// - if `P`'s free rows `[t, page_size)` are unclaimed, the **first** child claims them: it
    ///   shares `P` (refcount +1) and appends from row `t`, which the parent never reads;
    /// - every other child gets a fresh page and a `PageCopy { src: P, dst, rows: t }`.
    ///
    /// So a fork of a non-aligned node costs `n - 1` copies while the claim is free (one at
    /// `n = 2`), `n` while an earlier child still holds it, and 0 for an aligned node. The claim
    /// returns when its child is collected, unless that child filled `P` and `P` entered the radix
    /// index: indexed pages are immutable (others may reuse them), so later forks copy for every
    /// child.
    ///
    /// Errors (`UnknownNode`, `NodeReleased`, `ZeroFork`, `TooManyNodes` past
    /// [`crate::MAX_FORK`], `PoolExhausted` when the copies do not fit) leave the cache unchanged.
    pub fn fork(&mut self, node: NodeId, n: u32) -> Result<Fork> {
        let s = self.nodes.live_slot(node)?;
        if n == 0 {
            return Err(KvError::ZeroFork { node });
        }
        self.nodes.check_room(u64::from(n))?;
        let ps = self.pool.page_size;
        let parent = &self.nodes.slots[s];
        let (end, depth) = (parent.end, parent.depth);
        let t = end & (ps - 1);
        // `tail`: the parent's partial page; `prev_page`: the page before the children's first.
        let (tail, prev_page) = match (t, parent.pages.last()) {
            (0, last) => (NIL, last.map_or(parent.prev_page, |p| p.0)),
            (_, Some(last)) => (last.0, parent.key_parent_of(parent.pages.len() - 1)),
            // Unreachable: a non-aligned end always has a tail page.
            (_, None) => (NIL, parent.prev_page),
        };
        let claimable = tail != NIL && {
            let m = &self.pool.meta[tail as usize];
            (m.writer == s as u32 || m.writer == NIL) && m.fill == t
        };
        let copies = if tail == NIL { 0 } else { n - u32::from(claimable) };
        if copies > self.pool.available() {
            return Err(self.pool.exhausted(copies));
        }

        self.nodes.slots[s].forked = true;
        self.layout_changed();
        if tail != NIL {
            let m = &mut self.pool.meta[tail as usize];
            m.frozen = m.frozen.max(t);
            if m.writer == s as u32 {
                m.writer = NIL;
            }
        }
        let mut out = Fork { children: Vec::with_capacity(n as usize), copies: Vec::new() };
        for i in 0..n {
            let first = if tail == NIL {
                None
            } else if i == 0 && claimable {
                self.pool.add_ref(tail);
                Some(tail)
            } else {
                let q = self.pool.alloc().ok_or_else(|| self.pool.exhausted(1))?;
                self.pool.copy_rows(tail, q, t);
                out.copies.push(PageCopy { src: PageId(tail), dst: PageId(q), rows: t });
                Some(q)
            };
            let child = self.nodes.insert(Node {
                parent: s as u32,
                depth: depth + 1,
                start: end,
                end,
                pages: first.map(PageId).into_iter().collect(),
                prev_page,
                ..Node::default()
            });
            if let Some(p) = first {
                self.pool.meta[p as usize].writer = child.index;
            }
            out.children.push(child);
        }
        self.nodes.slots[s].children.extend_from_slice(&out.children);
        Ok(out)
    }
}
