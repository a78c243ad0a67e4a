//! Prefix reuse: `match_prefix` (a pure lookup), `create_root` and `prefill` (take the matched
//! pages, then append the rest).

use crate::append::{grown_end, new_pages};
use crate::cache::TreeKvCache;
use crate::error::{KvError, Result};
use crate::ids::{NodeId, PageId, Slot};
use crate::list::NIL;
use crate::node::Node;
use crate::pool::PageState;

/// Full pages found in the radix index for a token prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixMatch {
    /// The pages, in path order.
    pub pages: Vec<PageId>,
    /// Tokens they hold: `pages.len() * page_size`.
    pub tokens: u32,
}

/// The result of [`TreeKvCache::create_root`] and [`TreeKvCache::prefill`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefill {
    /// The node that now ends with the given tokens.
    pub node: NodeId,
    /// Leading tokens whose K/V was found in the cache (a multiple of `page_size`); the engine
    /// computes K/V only for the rest.
    pub cached_tokens: u32,
    /// Slots of the tokens after `cached_tokens`, in order.
    pub slots: Vec<Slot>,
}

impl TreeKvCache {
    /// The longest page-aligned prefix of `tokens` whose pages are in the radix index (referenced
    /// or cached), starting from a path's first page. Changes nothing (no LRU touch).
    pub fn match_prefix(&self, tokens: &[u32]) -> PrefixMatch {
        let pages = self.matched(NIL, tokens, u32::MAX);
        PrefixMatch { tokens: pages.len() as u32 * self.pool.page_size, pages: map_pages(&pages) }
    }

    /// Indexed pages continuing the path whose last page is `prev` (`NIL`: from the start), at
    /// most `max_pages` of them.
    fn matched(&self, prev: u32, tokens: &[u32], max_pages: u32) -> Vec<u32> {
        let ps = self.pool.page_size as usize;
        let mut out = Vec::new();
        let mut prev = prev;
        for chunk in tokens.chunks_exact(ps).take(max_pages as usize) {
            let Some(p) = self.pool.lookup(prev, chunk) else { break };
            out.push(p);
            prev = p;
        }
        out
    }

    /// Creates a root for `prompt`: reuses the longest cached page-aligned prefix of at most
    /// `prompt.len() - 1` tokens (so the engine always computes the last prompt token and gets its
    /// logits, as vLLM does) and appends the rest. An empty prompt makes an empty root.
    ///
    /// Errors: `SequenceTooLong`, `TooManyNodes`, `PoolExhausted` — with the cache unchanged.
    pub fn create_root(&mut self, prompt: &[u32]) -> Result<Prefill> {
        let end = grown_end(None, 0, prompt.len())?;
        self.nodes.check_room(1)?;
        let hits = self.matched(NIL, prompt, reuse_limit(end, self.pool.page_size));
        self.check_room_after_hits(&hits, 0, end)?;
        let node = self.nodes.insert(Node { parent: NIL, prev_page: NIL, ..Node::default() });
        self.layout_changed();
        self.take_hits_and_write(node.index as usize, &hits, prompt)
    }

    /// Appends `tokens` to the leaf `node` like [`Self::append`], but first reuses cached full
    /// pages that continue the node's path when the node ends on a page boundary (at most
    /// `tokens.len() - 1` tokens, as in [`Self::create_root`]). Use it to re-create a re-opened
    /// path or to continue a child from a known token sequence.
    pub fn prefill(&mut self, node: NodeId, tokens: &[u32]) -> Result<Prefill> {
        let s = self.appendable(node)?;
        let n = &self.nodes.slots[s];
        let ps = self.pool.page_size;
        let new_end = grown_end(Some(node), n.end, tokens.len())?;
        let hits = if n.end & (ps - 1) == 0 {
            let prev = n.pages.last().map_or(n.prev_page, |p| p.0);
            // A node with no page and no previous page is an empty root: match from the start.
            self.matched(prev, tokens, reuse_limit(new_end - n.end, ps))
        } else {
            Vec::new()
        };
        self.check_room_after_hits(&hits, n.end, new_end)?;
        self.take_hits_and_write(s, &hits, tokens)
    }

    /// Fails with `PoolExhausted` unless the pages for growing from `end` to `new_end`, minus the
    /// hits, fit. Hits that are cached stop
    /// being evictable once taken, so they count neither as available nor in the error's
    /// `evictable`.
    fn check_room_after_hits(&self, hits: &[u32], end: u32, new_end: u32) -> Result<()> {
        let ps = self.pool.page_size;
        let need = new_pages(end, new_end, ps) - hits.len() as u32;
        let cached_hits =
            hits.iter().filter(|&&p| self.pool.state(p) == PageState::Cached).count() as u32;
        if need > self.pool.available() - cached_hits {
            return Err(KvError::PoolExhausted {
                requested: need,
                free: self.pool.free.len(),
                evictable: self.pool.lru.len() - cached_hits,
            });
        }
        Ok(())
    }

    /// Takes the hit pages into slot `s` (which ends on a page boundary), then writes the tokens
    /// after them.
    fn take_hits_and_write(&mut self, s: usize, hits: &[u32], tokens: &[u32]) -> Result<Prefill> {
        let ps = self.pool.page_size;
        for &p in hits {
            self.pool.add_ref(p);
            let n = &mut self.nodes.slots[s];
            n.pages.push(PageId(p));
            n.end += ps;
        }
        if !hits.is_empty() {
            self.layout_changed();
        }
        let cached = hits.len() * ps as usize;
        let mut slots = Vec::with_capacity(tokens.len() - cached);
        self.write(s, &tokens[cached..], &mut slots)?;
        Ok(Prefill { node: self.nodes.id(s), cached_tokens: cached as u32, slots })
    }
}

/// Pages a prefill of `len` tokens may reuse: whole pages of the first `len - 1` tokens.
fn reuse_limit(len: u32, page_size: u32) -> u32 {
    len.saturating_sub(1) / page_size
}

fn map_pages(pages: &[u32]) -> Vec<PageId> {
    pages.iter().copied().map(PageId).collect()
}
