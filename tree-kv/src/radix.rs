//! The page-aligned radix prefix index (SGLang's radix cache at page granularity, keyed like
//! vLLM's chained block hashes).
//!
//! An entry is one **full** page. Its key is `(key_parent, the page's page_size token ids)`, where
//! `key_parent` is the physical page before it on its path (`NIL` for a path's first page). So the
//! entries form a tree of pages, and `match_prefix` walks it from the root one page of tokens at a
//! time. Keys are stored as a 64-bit hash and every hit is verified against the stored parent and
//! tokens, so a hash collision is a miss, never a wrong page.
//!
//! When a page is indexed: the moment it becomes full (an append writes its last row), if its key
//! parent is indexed (or it is a first page) and no entry with the same key exists. A duplicate
//! (two branches that produced the same tokens on copies of one tail) stays unindexed, and so do the
//! pages after it on its path; such pages are freed, not cached, when released.
//!
//! Why the LRU head is always a radix leaf, so eviction is O(1) and never orphans an entry: every
//! path that holds an indexed page also holds its key parent (the page before it on that path,
//! held by the same node or an ancestor, and ancestors outlive descendants). Hence a page's
//! refcount cannot reach zero before those of its radix descendants; pages enter the LRU tail in
//! the order their refcount reaches zero, a node's pages deepest first, so every cached page sits
//! behind all of its radix descendants. `check_invariants` asserts exactly this ordering.

use crate::list::NIL;
use crate::pool::Pool;

/// Hash of a radix key: the parent page and the page's tokens, each absorbed through a full
/// SplitMix64 finaliser (not cryptographic — tenants that must not observe each other's cache
/// need separate pools). The parent is mixed before the first token: a linear combination
/// would let `(p, [t0, ..])` and `(q, [t0 ^ f(p, q), ..])` collide for every pair of pages,
/// and a collision leaves the second page, and everything after it, unindexed.
pub(crate) fn key_hash(key_parent: u32, tokens: &[u32]) -> u64 {
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = mix(GOLDEN ^ u64::from(key_parent));
    for &t in tokens {
        h = mix(h.wrapping_add(GOLDEN) ^ u64::from(t));
    }
    h
}

/// SplitMix64's finaliser: a bijection on u64 with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pool {
    /// The indexed page with this key, if any.
    pub(crate) fn lookup(&self, key_parent: u32, tokens: &[u32]) -> Option<u32> {
        let p = *self.radix.get(&key_hash(key_parent, tokens))?;
        let m = &self.meta[p as usize];
        (m.indexed && m.key_parent == key_parent && self.rows(p, self.page_size) == tokens)
            .then_some(p)
    }

    /// Indexes the full page `p` under `key_parent` when allowed (see the module docs).
    pub(crate) fn try_index(&mut self, p: u32, key_parent: u32) {
        let ps = self.page_size;
        if self.meta[p as usize].indexed || self.meta[p as usize].fill != ps {
            return;
        }
        if key_parent != NIL && !self.meta[key_parent as usize].indexed {
            return;
        }
        let h = key_hash(key_parent, self.rows(p, ps));
        if self.radix.contains_key(&h) {
            return;
        }
        self.radix.insert(h, p);
        let m = &mut self.meta[p as usize];
        m.indexed = true;
        m.key_parent = key_parent;
        m.hash = h;
        if key_parent != NIL {
            self.meta[key_parent as usize].radix_children += 1;
        }
    }

    /// Removes `p`, a radix leaf, from the index.
    pub(crate) fn unindex(&mut self, p: u32) {
        let m = &mut self.meta[p as usize];
        if !m.indexed {
            return;
        }
        m.indexed = false;
        let (h, parent) = (m.hash, m.key_parent);
        self.radix.remove(&h);
        if parent != NIL {
            self.meta[parent as usize].radix_children -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_hash;

    /// The old linear mixing made `(p, [t0, ..])` and `(q, [t0 ^ ((p ^ q) << 5), ..])` collide
    /// for every p, q: a whole family of pages was never indexed.
    #[test]
    fn parent_and_first_token_do_not_cancel() {
        let mut seen = std::collections::HashSet::new();
        for p in 0..64u32 {
            for q in 0..64u32 {
                let t0 = 1000u32;
                let a = key_hash(p, &[t0, 7, 9]);
                let b = key_hash(q, &[t0 ^ ((p ^ q) << 5), 7, 9]);
                assert_eq!(a == b, p == q, "key_hash({p}, ..) collides with key_hash({q}, ..)");
            }
            // Distinct (parent, token) keys over a small grid never collide either.
            for t in 0..64u32 {
                assert!(seen.insert(key_hash(p, &[t, 1])), "collision at parent {p} token {t}");
            }
        }
    }
}
