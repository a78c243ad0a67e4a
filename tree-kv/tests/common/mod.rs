//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod model;

use tree_kv::{NodeId, PageId, Slot, TreeKvCache};

/// Hands out fresh token ids (from 1000 on), so no two decoded segments collide in the radix
/// index unless a test repeats tokens on purpose.
pub struct Tokens(u32);

impl Tokens {
    pub fn new() -> Self {
        Self(1000)
    }

    pub fn take(&mut self, n: usize) -> Vec<u32> {
        let out = (self.0..self.0 + n as u32).collect();
        self.0 += n as u32;
        out
    }
}

/// A prompt `1..=len`.
pub fn prompt(len: u32) -> Vec<u32> {
    (1..=len).collect()
}

pub fn ids(pages: &[PageId]) -> Vec<u32> {
    pages.iter().map(|p| p.0).collect()
}

pub fn pages(c: &TreeKvCache, n: NodeId) -> Vec<u32> {
    ids(c.node(n).unwrap().pages)
}

pub fn free(c: &TreeKvCache) -> Vec<u32> {
    ids(&c.free_pages())
}

pub fn lru(c: &TreeKvCache) -> Vec<u32> {
    ids(&c.cached_pages())
}

pub fn rc(c: &TreeKvCache, p: u32) -> u32 {
    c.page_refcount(PageId(p)).unwrap()
}

/// `(page, offset)` pairs of slots.
pub fn slots(s: &[Slot]) -> Vec<(u32, u32)> {
    s.iter().map(|s| (s.page.0, s.offset)).collect()
}

/// Slots `(page, r)` for `r` in `rows`.
pub fn rows(page: u32, rows: std::ops::Range<u32>) -> Vec<(u32, u32)> {
    rows.map(|r| (page, r)).collect()
}

/// Appends `n` fresh tokens to `node` and checks the invariants; returns the slots.
pub fn seg(c: &mut TreeKvCache, t: &mut Tokens, node: NodeId, n: usize) -> Vec<(u32, u32)> {
    let s = c.append(node, &t.take(n)).unwrap();
    c.check_invariants().unwrap();
    slots(&s)
}

/// The tokens stored along the root-to-leaf path of `leaf`, read back from the pages.
pub fn path_tokens(c: &TreeKvCache, leaf: NodeId) -> Vec<u32> {
    let mut path = Vec::new();
    c.leaf_path_into(leaf, &mut path).unwrap();
    let end = c.node(leaf).unwrap().end as usize;
    let mut out = Vec::new();
    for p in path {
        out.extend_from_slice(c.page_tokens(p).unwrap());
    }
    // The last page may hold rows of a claimant past this path's end only if it is shared.
    out.truncate(end);
    out
}
