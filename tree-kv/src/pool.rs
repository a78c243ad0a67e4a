//! The page pool: per-page metadata, the free list and the LRU list of cached pages.
//!
//! The page state machine (free / referenced / cached) is drawn in the crate docs; the only
//! transitions are the ones `alloc`, `add_ref`, `drop_ref` and `evict` make below.
//!
//! Free-list order (pinned by tests): `alloc` pops the **head**; a page that drops to free is
//! pushed to the **tail**; a node's pages are dropped deepest (last) first. A fresh pool's free
//! list is `0, 1, ..., num_pages-1`, so allocation starts at page 0. The LRU list has the same
//! discipline: pages enter at the tail when they become cached (deepest first within a node), and
//! eviction pops the head.

use crate::error::{KvError, Result};
use crate::list::{Links, NIL, PageList};
use std::collections::HashMap;

/// The three states of a page. Exactly one holds for every page at every time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageState {
    /// On the free list; holds no data anyone can read.
    Free,
    /// Held by at least one node (`refcount > 0`); never evicted.
    Referenced,
    /// Unreferenced but full and in the radix index, so a prefix hit can reuse it; on the LRU list,
    /// evictable.
    Cached,
}

/// Per-page bookkeeping. Rows are token positions inside the page.
#[derive(Clone, Debug)]
pub(crate) struct PageMeta {
    /// Number of nodes holding the page (a node holds every page of its `pages` list).
    pub(crate) refcount: u32,
    /// Rows `[0, fill)` hold data some holder reads; the next append writes row `fill`.
    pub(crate) fill: u32,
    /// Rows `[0, frozen)` are read by a forked node's descendants and are never written again.
    pub(crate) frozen: u32,
    /// Node slot allowed to append into rows `[fill, page_size)`, or `NIL`.
    pub(crate) writer: u32,
    /// Whether the page is an entry of the radix index (then it is full).
    pub(crate) indexed: bool,
    /// Radix key: the page before this one on its path (`NIL` for a path's first page).
    pub(crate) key_parent: u32,
    /// Indexed pages whose `key_parent` is this page.
    pub(crate) radix_children: u32,
    /// Radix key hash, valid while `indexed`.
    pub(crate) hash: u64,
}

impl PageMeta {
    const FREE: Self = Self {
        refcount: 0,
        fill: 0,
        frozen: 0,
        writer: NIL,
        indexed: false,
        key_parent: NIL,
        radix_children: 0,
        hash: 0,
    };
}

/// Identity hasher for keys that already are well-mixed 64-bit hashes.
#[derive(Default, Clone, Copy)]
pub(crate) struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; fold anything else in for completeness.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(crate) type RadixMap = HashMap<u64, u32, std::hash::BuildHasherDefault<PrehashedKey>>;

/// Pages, their metadata and token content, the free and LRU lists, and the radix map.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    pub(crate) page_size: u32,
    pub(crate) meta: Vec<PageMeta>,
    /// Token id of every row: `tokens[p * page_size + row]`, valid for rows `< fill`.
    pub(crate) tokens: Vec<u32>,
    pub(crate) links: Links,
    pub(crate) free: PageList,
    pub(crate) lru: PageList,
    pub(crate) radix: RadixMap,
}

impl Pool {
    /// A pool whose free list is `0..num_pages` in order. Sizes are validated by the caller.
    pub(crate) fn try_new(page_size: u32, num_pages: u32) -> Result<Self> {
        let oom = KvError::OutOfHostMemory { num_pages, page_size };
        let n = num_pages as usize;
        let rows = n.checked_mul(page_size as usize).ok_or(oom.clone())?;
        let mut meta = Vec::new();
        meta.try_reserve_exact(n).map_err(|_| oom.clone())?;
        meta.resize(n, PageMeta::FREE);
        let mut tokens = Vec::new();
        tokens.try_reserve_exact(rows).map_err(|_| oom.clone())?;
        tokens.resize(rows, 0);
        let mut links = Links::try_new(n).ok_or(oom)?;
        let mut free = PageList::new();
        for p in 0..num_pages {
            free.push_back(&mut links, p);
        }
        Ok(Self {
            page_size,
            meta,
            tokens,
            links,
            free,
            lru: PageList::new(),
            radix: RadixMap::default(),
        })
    }

    pub(crate) fn num_pages(&self) -> u32 {
        self.meta.len() as u32
    }

    /// Pages an allocation can obtain: free pages plus evictable cached pages. Every cached page is
    /// evictable because the LRU head is always a radix leaf (see `radix.rs`).
    pub(crate) fn available(&self) -> u32 {
        self.free.len() + self.lru.len()
    }

    pub(crate) fn exhausted(&self, requested: u32) -> KvError {
        KvError::PoolExhausted { requested, free: self.free.len(), evictable: self.lru.len() }
    }

    pub(crate) fn state(&self, p: u32) -> PageState {
        let m = &self.meta[p as usize];
        if m.refcount > 0 {
            PageState::Referenced
        } else if m.indexed {
            PageState::Cached
        } else {
            PageState::Free
        }
    }

    /// Takes a page for a new holder (`refcount = 1`, empty, no writer): the free-list head, or,
    /// when the free list is empty, the LRU head evicted from the cache. `None` only if the caller
    /// skipped its `available()` check.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        let p = match self.free.pop_front(&mut self.links) {
            Some(p) => p,
            None => {
                let p = self.lru.pop_front(&mut self.links)?;
                self.unindex(p);
                p
            }
        };
        let m = &mut self.meta[p as usize];
        *m = PageMeta::FREE;
        m.refcount = 1;
        Some(p)
    }

    /// Adds a holder to a referenced or cached page (a prefix hit takes a cached page off the LRU).
    pub(crate) fn add_ref(&mut self, p: u32) {
        if self.state(p) == PageState::Cached {
            self.lru.remove(&mut self.links, p);
        }
        self.meta[p as usize].refcount += 1;
    }

    /// Drops one holder. At zero the page becomes cached (LRU tail) if indexed, else free (tail).
    pub(crate) fn drop_ref(&mut self, p: u32) {
        let m = &mut self.meta[p as usize];
        m.refcount -= 1;
        if m.refcount > 0 {
            return;
        }
        m.writer = NIL;
        if m.indexed {
            self.lru.push_back(&mut self.links, p);
        } else {
            *m = PageMeta::FREE;
            self.free.push_back(&mut self.links, p);
        }
    }

    /// Evicts up to `max` cached pages in LRU order onto the free-list tail; returns how many.
    pub(crate) fn evict(&mut self, max: u32) -> u32 {
        let mut done = 0;
        while done < max {
            let Some(p) = self.lru.pop_front(&mut self.links) else { break };
            self.unindex(p);
            self.meta[p as usize] = PageMeta::FREE;
            self.free.push_back(&mut self.links, p);
            done += 1;
        }
        done
    }

    /// Copy-on-write of a tail: rows `[0, rows)` of `src` into the fresh page `dst`, which then
    /// holds exactly those rows, frozen (they belong to the parent's path).
    pub(crate) fn copy_rows(&mut self, src: u32, dst: u32, rows: u32) {
        let ps = self.page_size as usize;
        let (s, d) = (src as usize * ps, dst as usize * ps);
        self.tokens.copy_within(s..s + rows as usize, d);
        let m = &mut self.meta[dst as usize];
        m.fill = rows;
        m.frozen = rows;
    }

    /// Token rows `[0, rows)` of page `p`.
    pub(crate) fn rows(&self, p: u32, rows: u32) -> &[u32] {
        let base = p as usize * self.page_size as usize;
        &self.tokens[base..base + rows as usize]
    }
}
