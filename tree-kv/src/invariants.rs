//! `check_invariants`: a full O(pages + nodes) audit of the bookkeeping, for tests and fuzzing.

use crate::cache::TreeKvCache;
use crate::error::InvariantViolation;
use crate::list::NIL;
use crate::node::Node;
use crate::radix::key_hash;

type Check = Result<(), InvariantViolation>;

fn fail<T>(what: String) -> Result<T, InvariantViolation> {
    Err(InvariantViolation::new(what))
}

impl TreeKvCache {
    /// Audits every invariant of the crate docs' "Invariants" section and returns the first
    /// violation found. It never changes the cache; cost O(num_pages + nodes + pages held).
    pub fn check_invariants(&self) -> Check {
        let np = self.pool.meta.len();
        let free = self.pool.free.collect_checked(&self.pool.links);
        let free = free.or_else(|e| fail(format!("free list: {e}")))?;
        let lru = self.pool.lru.collect_checked(&self.pool.links);
        let lru = lru.or_else(|e| fail(format!("LRU list: {e}")))?;
        let mut on_free = vec![false; np];
        free.iter().for_each(|&p| on_free[p as usize] = true);
        let mut lru_pos = vec![u32::MAX; np];
        lru.iter().enumerate().for_each(|(i, &p)| lru_pos[p as usize] = i as u32);

        let mut holders = vec![0u32; np];
        self.check_nodes(&mut holders)?;
        self.check_pages(&holders, &on_free, &lru_pos)
    }

    /// Node structure, spans, page counts, tail ownership; counts each page's holders.
    fn check_nodes(&self, holders: &mut [u32]) -> Check {
        let ps = self.pool.page_size;
        let slots = &self.nodes.slots;
        let mut alive = 0u32;
        for (s, n) in slots.iter().enumerate() {
            if !n.alive {
                if !n.pages.is_empty() || !n.children.is_empty() {
                    return fail(format!("collected slot {s} still holds pages or children"));
                }
                continue;
            }
            alive += 1;
            self.check_links(s, n)?;
            let want = (n.end.div_ceil(ps) - n.start / ps) as usize;
            if n.pages.len() != want {
                return fail(format!(
                    "node {s}: {} pages for span [{}, {})",
                    n.pages.len(),
                    n.start,
                    n.end
                ));
            }
            for (i, p) in n.pages.iter().enumerate() {
                if p.index() >= holders.len() || n.pages[..i].contains(p) {
                    return fail(format!("node {s}: bad or repeated page {p}"));
                }
                holders[p.index()] += 1;
                // Every row of the node's span inside this page holds data.
                let base = (n.start / ps + i as u32) * ps;
                let rows_needed = n.end.min(base + ps) - base;
                if self.pool.meta[p.index()].fill < rows_needed {
                    return fail(format!("node {s}: page {p} fill below the node's rows"));
                }
            }
            self.check_tail(s, n)?;
        }
        if alive != self.nodes.live || alive as usize + self.nodes.free_slots.len() != slots.len() {
            return fail("node arena counts disagree".into());
        }
        Ok(())
    }

    /// Parent/child links, spans and the radix key parent of the node's first page.
    fn check_links(&self, s: usize, n: &Node) -> Check {
        let ps = self.pool.page_size;
        let slots = &self.nodes.slots;
        if n.start > n.end {
            return fail(format!("node {s}: start {} > end {}", n.start, n.end));
        }
        if n.released && n.children.is_empty() {
            return fail(format!("node {s}: released and childless but not collected"));
        }
        if !n.children.is_empty() && !n.forked {
            return fail(format!("node {s}: has children but is not marked forked"));
        }
        for c in &n.children {
            let ok = self.nodes.slot(*c).is_ok_and(|cs| slots[cs].parent == s as u32);
            if !ok {
                return fail(format!("node {s}: child {c} missing or not pointing back"));
            }
        }
        let want_prev = if n.parent == NIL {
            if n.start != 0 || n.depth != 0 {
                return fail(format!("root {s}: start {} depth {}", n.start, n.depth));
            }
            NIL
        } else {
            let p = slots.get(n.parent as usize).filter(|p| p.alive);
            let Some(p) = p else { return fail(format!("node {s}: parent not alive")) };
            let me = self.nodes.id(s);
            if n.start != p.end || n.depth != p.depth + 1 || !p.children.contains(&me) {
                return fail(format!("node {s}: span/depth/child link disagree with parent"));
            }
            match (n.start & (ps - 1), p.pages.last()) {
                (0, last) => last.map_or(p.prev_page, |l| l.0),
                (_, Some(_)) => p.key_parent_of(p.pages.len() - 1),
                (_, None) => return fail(format!("node {s}: parent has a tail but no page")),
            }
        };
        if n.prev_page != want_prev {
            return fail(format!("node {s}: prev_page {} != {want_prev}", n.prev_page));
        }
        Ok(())
    }

    /// Tail rules: a never-forked node writes its tail page and nobody else does; a forked node's
    /// tail rows are frozen; a non-aligned first page is the parent's tail or an exact copy of it.
    fn check_tail(&self, s: usize, n: &Node) -> Check {
        let ps = self.pool.page_size;
        let t = n.end & (ps - 1);
        if let (true, Some(last)) = (t != 0, n.pages.last()) {
            let m = &self.pool.meta[last.index()];
            if !n.forked && (m.writer != s as u32 || m.fill != t) {
                return fail(format!(
                    "leaf {s}: tail page {last} writer {} fill {}",
                    m.writer, m.fill
                ));
            }
            if n.forked && (m.writer == s as u32 || m.frozen < t) {
                return fail(format!("forked node {s}: tail page {last} writable or frozen < {t}"));
            }
        }
        let t0 = n.start & (ps - 1);
        if t0 != 0 && n.parent != NIL {
            let parent = &self.nodes.slots[n.parent as usize];
            let (mine, theirs) = (n.pages[0].0, parent.pages[parent.pages.len() - 1].0);
            if mine != theirs && self.pool.rows(mine, t0) != self.pool.rows(theirs, t0) {
                return fail(format!(
                    "node {s}: tail copy {mine} differs from parent page {theirs}"
                ));
            }
            if self.pool.meta[mine as usize].frozen < t0 {
                return fail(format!("node {s}: inherited rows of page {mine} not frozen"));
            }
        }
        Ok(())
    }

    /// Page states, refcounts, fill/frozen/writer and the radix index.
    fn check_pages(&self, holders: &[u32], on_free: &[bool], lru_pos: &[u32]) -> Check {
        let ps = self.pool.page_size;
        let mut indexed = 0usize;
        let mut radix_children = vec![0u32; holders.len()];
        for (p, m) in self.pool.meta.iter().enumerate() {
            if m.refcount != holders[p] {
                return fail(format!(
                    "page {p}: refcount {} but {} holders",
                    m.refcount, holders[p]
                ));
            }
            let (free, cached) = (on_free[p], lru_pos[p] != u32::MAX);
            let ok = match (m.refcount > 0, free, cached) {
                (true, false, false) => true,
                (false, true, false) => !m.indexed && m.fill == 0 && m.writer == NIL,
                (false, false, true) => m.indexed && m.writer == NIL,
                _ => false,
            };
            if !ok {
                return fail(format!("page {p}: not exactly one of free/referenced/cached"));
            }
            if m.frozen > m.fill || m.fill > ps {
                return fail(format!("page {p}: frozen {} fill {}", m.frozen, m.fill));
            }
            if m.writer != NIL {
                let w = self.nodes.slots.get(m.writer as usize);
                let ends_here = |w: &Node| w.pages.last().map(|l| l.0) == Some(p as u32);
                let ok = m.fill < ps && w.is_some_and(|w| w.alive && !w.forked && ends_here(w));
                if !ok {
                    return fail(format!(
                        "page {p}: writer {} is not a leaf ending on it",
                        m.writer
                    ));
                }
            }
            if m.indexed {
                indexed += 1;
                self.check_entry(p as u32, lru_pos)?;
                if m.key_parent != NIL {
                    radix_children[m.key_parent as usize] += 1;
                }
            }
        }
        for (p, m) in self.pool.meta.iter().enumerate() {
            if m.radix_children != radix_children[p] {
                return fail(format!(
                    "page {p}: radix_children {} != {}",
                    m.radix_children, radix_children[p]
                ));
            }
        }
        if indexed != self.pool.radix.len() {
            return fail(format!(
                "{indexed} indexed pages but {} radix entries",
                self.pool.radix.len()
            ));
        }
        Ok(())
    }

    /// One radix entry: full, findable under its key, parent indexed; a referenced entry's parent is
    /// referenced; a cached entry's parent, if cached, is evicted after it (LRU head = radix leaf).
    fn check_entry(&self, p: u32, lru_pos: &[u32]) -> Check {
        let ps = self.pool.page_size;
        let m = &self.pool.meta[p as usize];
        let h = key_hash(m.key_parent, self.pool.rows(p, ps));
        if m.fill != ps || m.hash != h || self.pool.radix.get(&h) != Some(&p) {
            return fail(format!("page {p}: radix entry not full or not under its key"));
        }
        if m.key_parent == NIL {
            return Ok(());
        }
        let k = &self.pool.meta[m.key_parent as usize];
        if !k.indexed {
            return fail(format!("page {p}: radix parent {} not indexed", m.key_parent));
        }
        if m.refcount > 0 && k.refcount == 0 {
            return fail(format!("page {p}: referenced but radix parent {} is not", m.key_parent));
        }
        let (mine, theirs) = (lru_pos[p as usize], lru_pos[m.key_parent as usize]);
        if mine != u32::MAX && theirs != u32::MAX && mine > theirs {
            return fail(format!("page {p}: cached behind its radix parent {}", m.key_parent));
        }
        Ok(())
    }
}
