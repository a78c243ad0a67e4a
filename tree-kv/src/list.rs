//! Intrusive doubly linked lists of pages (vLLM v1's `FreeKVCacheBlockQueue` idea): the links live
//! in two per-page arrays, so push, pop and removal from the middle are O(1) and allocation-free.
//!
//! A page is on at most one list at a time (the free list or the LRU list of cached pages), so both
//! lists share one pair of link arrays.

/// Sentinel for "no page".
pub(crate) const NIL: u32 = u32::MAX;

/// Per-page `prev`/`next` links shared by every list over the same pages.
#[derive(Clone, Debug)]
pub(crate) struct Links {
    prev: Vec<u32>,
    next: Vec<u32>,
}

impl Links {
    /// Links for `n` pages, none on a list.
    pub(crate) fn try_new(n: usize) -> Option<Self> {
        let mut prev = Vec::new();
        let mut next = Vec::new();
        prev.try_reserve_exact(n).ok()?;
        next.try_reserve_exact(n).ok()?;
        prev.resize(n, NIL);
        next.resize(n, NIL);
        Some(Self { prev, next })
    }
}

/// Head, tail and length of one list threaded through [`Links`].
#[derive(Clone, Debug)]
pub(crate) struct PageList {
    head: u32,
    tail: u32,
    len: u32,
}

impl PageList {
    pub(crate) const fn new() -> Self {
        Self { head: NIL, tail: NIL, len: 0 }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Appends `p` (which must be on no list) at the tail.
    pub(crate) fn push_back(&mut self, links: &mut Links, p: u32) {
        let i = p as usize;
        links.prev[i] = self.tail;
        links.next[i] = NIL;
        if self.tail == NIL {
            self.head = p;
        } else {
            links.next[self.tail as usize] = p;
        }
        self.tail = p;
        self.len += 1;
    }

    /// Removes and returns the head.
    pub(crate) fn pop_front(&mut self, links: &mut Links) -> Option<u32> {
        let p = self.head()?;
        self.remove(links, p);
        Some(p)
    }

    /// Unlinks `p`, which must be on this list.
    pub(crate) fn remove(&mut self, links: &mut Links, p: u32) {
        let i = p as usize;
        let (prev, next) = (links.prev[i], links.next[i]);
        if prev == NIL {
            self.head = next;
        } else {
            links.next[prev as usize] = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            links.prev[next as usize] = prev;
        }
        links.prev[i] = NIL;
        links.next[i] = NIL;
        self.len -= 1;
    }

    /// Walks the list head to tail, checking that the links agree both ways and that it holds
    /// exactly `len` distinct pages. Returns the pages in order, or what is wrong.
    pub(crate) fn collect_checked(&self, links: &Links) -> Result<Vec<u32>, String> {
        let n = links.next.len();
        let mut out = Vec::with_capacity(self.len as usize);
        let mut seen = vec![false; n];
        let mut prev = NIL;
        let mut cur = self.head;
        while cur != NIL {
            let i = cur as usize;
            if i >= n {
                return Err(format!("link to page {cur} outside the pool"));
            }
            if seen[i] {
                return Err(format!("page {cur} appears twice (cycle)"));
            }
            seen[i] = true;
            if links.prev[i] != prev {
                return Err(format!("page {cur}: prev link {} != {prev}", links.prev[i]));
            }
            out.push(cur);
            prev = cur;
            cur = links.next[i];
        }
        if prev != self.tail {
            return Err(format!("tail {} but walk ended at {prev}", self.tail));
        }
        if out.len() != self.len as usize {
            return Err(format!("len {} but {} pages linked", self.len, out.len()));
        }
        Ok(out)
    }

    /// Iterates head to tail without checks (the list is consistent outside a panic).
    pub(crate) fn iter<'a>(&self, links: &'a Links) -> impl Iterator<Item = u32> + 'a {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            let p = (cur != NIL).then_some(cur)?;
            cur = links.next.get(p as usize).copied().unwrap_or(NIL);
            Some(p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pop_remove_middle() {
        let mut links = Links::try_new(5).unwrap();
        let mut l = PageList::new();
        for p in [3, 1, 4, 0] {
            l.push_back(&mut links, p);
        }
        l.remove(&mut links, 4);
        assert_eq!(l.collect_checked(&links).unwrap(), vec![3, 1, 0]);
        assert_eq!(l.pop_front(&mut links), Some(3));
        l.remove(&mut links, 0);
        assert_eq!(l.iter(&links).collect::<Vec<_>>(), vec![1]);
        assert_eq!(l.pop_front(&mut links), Some(1));
        assert_eq!(l.pop_front(&mut links), None);
        assert_eq!(l.len(), 0);
    }
}
