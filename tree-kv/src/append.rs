//! `append`: reserve K/V slots for new tokens at the end of a leaf.

use crate::cache::{MAX_TOKENS, TreeKvCache, next_layout};
use crate::error::{KvError, Result};
use crate::ids::{NodeId, PageId, Slot};
use crate::list::NIL;
use crate::paths::pages_for;

/// Pages a span growing from `end` to `new_end` tokens must allocate.
pub(crate) fn new_pages(end: u32, new_end: u32, page_size: u32) -> u32 {
    pages_for(new_end, page_size) - pages_for(end, page_size)
}

/// `end + add`, or `SequenceTooLong` past [`MAX_TOKENS`].
pub(crate) fn grown_end(node: Option<NodeId>, end: u32, add: usize) -> Result<u32> {
    let requested = u64::from(end).saturating_add(add as u64);
    if requested > u64::from(MAX_TOKENS) {
        return Err(KvError::SequenceTooLong { node, requested, max: MAX_TOKENS });
    }
    Ok(requested as u32)
}

impl TreeKvCache {
    /// Appends `tokens` to the leaf `node` and returns, per token, the slot its K/V row must be
    /// written to. Token ids are stored so full pages can be found again by prefix.
    ///
    /// Rows go to the node's partial tail page first (which the node owns the free rows of), then
    /// to fresh pages. Errors (`UnknownNode`, `NodeReleased`, `NodeFrozen` for a forked node,
    /// `SequenceTooLong`, `PoolExhausted`) leave the cache unchanged.
    pub fn append(&mut self, node: NodeId, tokens: &[u32]) -> Result<Vec<Slot>> {
        let mut out = Vec::with_capacity(tokens.len());
        self.append_into(node, tokens, &mut out)?;
        Ok(out)
    }

    /// [`Self::append`] that pushes the slots onto `out` (no allocation once `out` has room).
    pub fn append_into(&mut self, node: NodeId, tokens: &[u32], out: &mut Vec<Slot>) -> Result<()> {
        let s = self.appendable(node)?;
        let end = self.nodes.slots[s].end;
        let new_end = grown_end(Some(node), end, tokens.len())?;
        let need = new_pages(end, new_end, self.pool.page_size);
        if need > self.pool.available() {
            return Err(self.pool.exhausted(need));
        }
        self.write(s, tokens, out)
    }

    /// The slot of a node that may be appended to: live and never forked.
    pub(crate) fn appendable(&self, node: NodeId) -> Result<usize> {
        let s = self.nodes.live_slot(node)?;
        if self.nodes.slots[s].forked {
            return Err(KvError::NodeFrozen { node });
        }
        Ok(s)
    }

    /// Writes `tokens` after the end of leaf slot `s`. The caller has checked the length and that
    /// the pool can supply the pages, so the error below is unreachable.
    pub(crate) fn write(&mut self, s: usize, tokens: &[u32], out: &mut Vec<Slot>) -> Result<()> {
        let ps = self.pool.page_size;
        let node = &mut self.nodes.slots[s];
        let mut rest = tokens;
        while !rest.is_empty() {
            let row = node.end & (ps - 1);
            if row == 0 {
                let p = self.pool.alloc().ok_or(KvError::PoolExhausted {
                    requested: 1,
                    free: 0,
                    evictable: 0,
                })?;
                self.pool.meta[p as usize].writer = s as u32;
                node.pages.push(PageId(p));
                self.layout = next_layout();
            }
            let i = node.pages.len() - 1;
            let p = node.pages[i].0;
            let take = rest.len().min((ps - row) as usize);
            let meta = &mut self.pool.meta[p as usize];
            // A never-forked leaf owns the free rows of its tail page: it is the writer, the page
            // holds exactly its rows so far, and no frozen (shared) row is ever written.
            debug_assert!(meta.writer == s as u32 && meta.fill == row && row >= meta.frozen);
            let base = p as usize * ps as usize + row as usize;
            self.pool.tokens[base..base + take].copy_from_slice(&rest[..take]);
            out.extend((row..row + take as u32).map(|offset| Slot { page: PageId(p), offset }));
            meta.fill = row + take as u32;
            node.end += take as u32;
            if meta.fill == ps {
                // A full page has no free rows left: nobody writes it again.
                meta.writer = NIL;
                self.pool.try_index(p, node.key_parent_of(i));
            }
            rest = &rest[take..];
        }
        Ok(())
    }
}
