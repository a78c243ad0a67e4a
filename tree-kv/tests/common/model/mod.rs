//! A reference model of the cache and a harness that runs one operation on both and compares.
//!
//! Shared by the proptest state machine (`tests/state_machine.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/tree_kv_ops.rs` includes this file by path), so it depends on `tree_kv`
//! only. `Harness::apply` returns `Err(description)` on any disagreement or broken invariant; the
//! callers turn that into a test failure or a fuzzer crash.
//!
//! The model knows the tree (spans, tokens, released/forked/collected) and which errors each
//! operation must return; it does not re-implement page allocation. Page-level correctness is
//! checked by `check_invariants` plus reading every live leaf's tokens back from its pages.

pub mod check;

use std::collections::HashSet;
use tree_kv::{KvError, LayoutExport, NodeId, PageState, Slot, TreeKvCache};

/// One operation. Node and token choices are small selectors resolved against the model.
#[derive(Clone, Debug)]
pub enum Op {
    /// Root from prompt `prompt_tokens(seed, len)`.
    CreateRoot { seed: u8, len: u8 },
    /// Append `len` tokens made from `seed` to the selected node.
    Append { node: u8, seed: u8, len: u8 },
    /// Prefill (prefix-reusing append) of the selected node.
    Prefill { node: u8, seed: u8, len: u8 },
    /// Fork the selected node into `n` children (`n` may be 0: an error on purpose).
    Fork { node: u8, n: u8 },
    /// Release the selected node (collected or released nodes on purpose too).
    Release { node: u8 },
    /// Look a prompt up in the radix index.
    Match { seed: u8, len: u8 },
    /// Evict up to `n` cached pages.
    Evict { n: u8 },
    /// Evict every cached page.
    EvictAll,
    /// Export the live leaves selected by `mask` (bit i: i-th live leaf); `extra` adds an
    /// internal node (`NotALeaf`) or a duplicate (`DuplicateLeaf`) on purpose.
    Export { mask: u16, extra: u8 },
    /// Any operation on an id that never existed.
    Forged { op: u8 },
}

/// Tokens with few distinct values, so prompts and segments repeat and hit the radix index.
pub fn tokens(seed: u8, len: u8) -> Vec<u32> {
    let s = u32::from(seed);
    (0..u32::from(len)).map(|i| ((s >> 4) + (s & 7) * (i / 3) + i % (1 + (s & 1))) % 5).collect()
}

#[derive(Clone, Debug)]
pub(crate) struct MNode {
    id: NodeId,
    parent: Option<usize>,
    start: u32,
    tokens: Vec<u32>,
    released: bool,
    forked: bool,
    collected: bool,
    children: Vec<usize>,
}

impl MNode {
    fn end(&self) -> u32 {
        self.start + self.tokens.len() as u32
    }
}

/// Counts of what the run exercised (to judge coverage).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ok: u64,
    pub expected_errors: u64,
    pub exhausted: u64,
    pub copies: u64,
    pub claims: u64,
    pub cached_tokens: u64,
    pub evicted: u64,
}

/// The cache under test, the model, and reused buffers.
pub struct Harness {
    pub cache: TreeKvCache,
    nodes: Vec<MNode>,
    ps: u32,
    export: LayoutExport,
    /// Leaves of the last successful export op; re-exported into the same buffer after every
    /// later op (exercising the steady-state fast path) and compared with a fresh export.
    exported: Vec<NodeId>,
    pub stats: Stats,
}

pub(crate) type Check = Result<(), String>;

pub(crate) fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(what()) }
}

/// What must not change when an operation fails.
fn fingerprint(c: &TreeKvCache) -> (Vec<tree_kv::PageId>, Vec<tree_kv::PageId>, u32, u32) {
    (c.free_pages(), c.cached_pages(), c.num_nodes(), c.num_indexed())
}

impl Harness {
    pub fn new(cache: TreeKvCache) -> Self {
        let ps = cache.page_size();
        Self {
            cache,
            nodes: Vec::new(),
            ps,
            export: LayoutExport::new(),
            exported: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// A model node: for `sel < 192`, one the caller still holds (if any),
    /// else any node ever created (released and collected ones test the error paths).
    fn pick(&self, sel: u8) -> Option<usize> {
        self.pick_where(sel, |n| !n.collected && !n.released)
    }

    /// Like `pick`, preferring nodes that can be appended to.
    fn pick_leaf(&self, sel: u8) -> Option<usize> {
        self.pick_where(sel, |n| !n.collected && !n.released && !n.forked)
    }

    fn pick_where(&self, sel: u8, good: impl Fn(&MNode) -> bool) -> Option<usize> {
        if sel < 192 {
            let held = self.nodes.iter().enumerate().filter(|(_, n)| good(n));
            let held: Vec<usize> = held.map(|(i, _)| i).collect();
            if !held.is_empty() {
                return Some(held[sel as usize % held.len()]);
            }
        }
        (!self.nodes.is_empty()).then(|| sel as usize % self.nodes.len())
    }

    /// The error the cache must return for an operation on model node `i`, if any.
    fn node_error(&self, i: usize, appending: bool) -> Option<KvError> {
        let n = &self.nodes[i];
        if n.collected {
            Some(KvError::UnknownNode { node: n.id })
        } else if n.released {
            Some(KvError::NodeReleased { node: n.id })
        } else if appending && n.forked {
            Some(KvError::NodeFrozen { node: n.id })
        } else {
            None
        }
    }

    fn path_tokens(&self, i: usize) -> Vec<u32> {
        let mut chain = vec![i];
        while let Some(p) = self.nodes[*chain.last().unwrap()].parent {
            chain.push(p);
        }
        chain.iter().rev().flat_map(|&j| self.nodes[j].tokens.iter().copied()).collect()
    }

    /// Runs `op` on cache and model and checks everything.
    pub fn apply(&mut self, op: &Op) -> Check {
        let before = fingerprint(&self.cache);
        let outcome = match *op {
            Op::CreateRoot { seed, len } => self.create_root(&tokens(seed, len)),
            Op::Append { node, seed, len } => self.append(node, &tokens(seed, len), false),
            Op::Prefill { node, seed, len } => self.append(node, &tokens(seed, len), true),
            Op::Fork { node, n } => self.fork(node, u32::from(n % 5)),
            Op::Release { node } => self.release(node),
            Op::Match { seed, len } => self.match_prefix(&tokens(seed, len)),
            Op::Evict { n } => self.evict(Some(u32::from(n))),
            Op::EvictAll => self.evict(None),
            Op::Export { mask, extra } => self.export(mask, extra),
            Op::Forged { op } => self.forged(op),
        }?;
        match outcome {
            Outcome::Ok => self.stats.ok += 1,
            Outcome::Refused => {
                self.stats.expected_errors += 1;
                let after = fingerprint(&self.cache);
                ensure(after == before, || format!("{op:?} failed but changed the cache"))?;
            }
        }
        self.cache.check_invariants().map_err(|e| format!("after {op:?}: {e}"))?;
        self.check_tree().map_err(|e| format!("after {op:?}: {e}"))?;
        self.recheck_export().map_err(|e| format!("after {op:?}: {e}"))
    }

    fn create_root(&mut self, prompt: &[u32]) -> Result<Outcome, String> {
        let m = self.cache.match_prefix(prompt);
        let limit = (prompt.len() as u32).saturating_sub(1) / self.ps * self.ps;
        match self.cache.create_root(prompt) {
            Ok(p) => {
                ensure(p.cached_tokens == m.tokens.min(limit), || {
                    format!("cached {} but match {} limit {limit}", p.cached_tokens, m.tokens)
                })?;
                self.stats.cached_tokens += u64::from(p.cached_tokens);
                self.nodes.push(MNode {
                    id: p.node,
                    parent: None,
                    start: 0,
                    tokens: prompt.to_vec(),
                    released: false,
                    forked: false,
                    collected: false,
                    children: Vec::new(),
                });
                self.check_slots_from(self.nodes.len() - 1, p.cached_tokens, &p.slots)?;
                Ok(Outcome::Ok)
            }
            Err(e) => self.exhausted(e, prompt.len().div_ceil(self.ps as usize) as u32, true),
        }
    }

    fn append(&mut self, sel: u8, toks: &[u32], prefill: bool) -> Result<Outcome, String> {
        let Some(i) = self.pick_leaf(sel) else { return self.forged(sel) };
        let id = self.nodes[i].id;
        let res = if prefill {
            self.cache.prefill(id, toks).map(|p| (p.cached_tokens, p.slots))
        } else {
            self.cache.append(id, toks).map(|s| (0, s))
        };
        if let Some(want) = self.node_error(i, true) {
            return expect_err(res.map(|_| ()), want);
        }
        let end = self.nodes[i].end();
        let need =
            (end as usize + toks.len()).div_ceil(self.ps as usize) as u32 - end.div_ceil(self.ps);
        match res {
            Ok((cached, slots)) => {
                ensure(prefill || cached == 0, || "append reported cached tokens".into())?;
                ensure(cached == 0 || end.is_multiple_of(self.ps), || {
                    "prefill reused off a page boundary".into()
                })?;
                self.stats.cached_tokens += u64::from(cached);
                let base = end - self.nodes[i].start;
                self.nodes[i].tokens.extend_from_slice(toks);
                self.check_slots_from(i, base + cached, &slots)?;
                Ok(Outcome::Ok)
            }
            Err(e) => self.exhausted(e, need, prefill),
        }
    }

    fn fork(&mut self, sel: u8, n: u32) -> Result<Outcome, String> {
        let Some(i) = self.pick(sel) else { return self.forged(sel) };
        let id = self.nodes[i].id;
        let res = self.cache.fork(id, n);
        if let Some(want) = self.node_error(i, false) {
            return expect_err(res.map(|_| ()), want);
        }
        if n == 0 {
            return expect_err(res.map(|_| ()), KvError::ZeroFork { node: id });
        }
        let end = self.nodes[i].end();
        let t = end % self.ps;
        let tail = self.cache.node(id).map_err(|e| e.to_string())?.pages.last().copied();
        match res {
            Ok(f) => {
                let ok_count =
                    if t == 0 { f.copies.is_empty() } else { f.copies.len() as u32 + 1 >= n };
                ensure(
                    ok_count && f.copies.len() as u32 <= n && f.children.len() as u32 == n,
                    || format!("fork t={t} n={n}: {} copies", f.copies.len()),
                )?;
                let mut dsts = HashSet::new();
                for c in &f.copies {
                    ensure(Some(c.src) == tail && c.rows == t && dsts.insert(c.dst), || {
                        format!("bad copy {c:?} (tail {tail:?}, t {t})")
                    })?;
                }
                self.stats.copies += f.copies.len() as u64;
                self.stats.claims += u64::from(t != 0 && (f.copies.len() as u32) < n);
                self.nodes[i].forked = true;
                for &cid in &f.children {
                    let k = self.nodes.len();
                    self.nodes[i].children.push(k);
                    self.nodes.push(MNode {
                        id: cid,
                        parent: Some(i),
                        start: end,
                        tokens: Vec::new(),
                        released: false,
                        forked: false,
                        collected: false,
                        children: Vec::new(),
                    });
                }
                Ok(Outcome::Ok)
            }
            Err(KvError::PoolExhausted { requested, free, evictable }) => {
                let ok = t != 0
                    && (requested == n || requested + 1 == n)
                    && requested > free + evictable;
                ensure(ok, || format!("fork exhausted: {requested} > {free}+{evictable}, n {n}"))?;
                self.stats.exhausted += 1;
                Ok(Outcome::Refused)
            }
            Err(e) => Err(format!("fork: unexpected {e}")),
        }
    }

    fn release(&mut self, sel: u8) -> Result<Outcome, String> {
        let Some(i) = self.pick(sel) else { return self.forged(sel) };
        let res = self.cache.release(self.nodes[i].id);
        if let Some(want) = self.node_error(i, false) {
            return expect_err(res, want);
        }
        res.map_err(|e| format!("release: {e}"))?;
        self.nodes[i].released = true;
        let mut cur = i;
        while self.nodes[cur].released && self.nodes[cur].children.is_empty() {
            self.nodes[cur].collected = true;
            let Some(p) = self.nodes[cur].parent else { break };
            self.nodes[p].children.retain(|&c| c != cur);
            cur = p;
        }
        Ok(Outcome::Ok)
    }

    fn match_prefix(&mut self, prompt: &[u32]) -> Result<Outcome, String> {
        let m = self.cache.match_prefix(prompt);
        ensure(m.tokens == m.pages.len() as u32 * self.ps, || "match token count".into())?;
        for (k, p) in m.pages.iter().enumerate() {
            let want = &prompt[k * self.ps as usize..(k + 1) * self.ps as usize];
            let state = self.cache.page_state(*p).map_err(|e| e.to_string())?;
            ensure(state != PageState::Free, || format!("match returned free page {p}"))?;
            ensure(self.cache.page_tokens(*p).map_err(|e| e.to_string())? == want, || {
                format!("match page {p} holds other tokens")
            })?;
        }
        Ok(Outcome::Ok)
    }

    fn evict(&mut self, n: Option<u32>) -> Result<Outcome, String> {
        let cached = self.cache.num_cached();
        let done = match n {
            Some(n) => self.cache.evict(n),
            None => self.cache.evict_all(),
        };
        let want = n.map_or(cached, |n| n.min(cached));
        ensure(done == want && self.cache.num_cached() == cached - done, || {
            format!("evict {n:?}: {done} of {cached}")
        })?;
        self.stats.evicted += u64::from(done);
        Ok(Outcome::Ok)
    }

    /// Operations on an id that never existed all return `UnknownNode`.
    fn forged(&mut self, op: u8) -> Result<Outcome, String> {
        let node = NodeId { index: u32::MAX - 1, generation: u32::from(op) };
        let want = KvError::UnknownNode { node };
        let res = match op % 5 {
            0 => self.cache.append(node, &[1]).map(|_| ()),
            1 => self.cache.fork(node, 2).map(|_| ()),
            2 => self.cache.release(node),
            3 => self.cache.prefill(node, &[1]).map(|_| ()),
            _ => self.cache.kv_chunk(node).map(|_| ()),
        };
        expect_err(res, want)
    }

    /// `PoolExhausted` is the only acceptable failure of a valid allocating operation, and only
    /// when the pool really cannot supply the pages (`need` is an upper bound if `at_most`).
    fn exhausted(&mut self, e: KvError, need: u32, at_most: bool) -> Result<Outcome, String> {
        match e {
            KvError::PoolExhausted { requested, free, evictable }
                if (requested == need || at_most && requested <= need)
                    && requested > free + evictable =>
            {
                self.stats.exhausted += 1;
                Ok(Outcome::Refused)
            }
            e => Err(format!("unexpected {e} (need {need})")),
        }
    }

    /// Slots of node `i`'s tokens from span offset `from` on: consecutive rows of its path.
    fn check_slots_from(&self, i: usize, from: u32, slots: &[Slot]) -> Check {
        let n = &self.nodes[i];
        ensure(from as usize + slots.len() == n.tokens.len(), || "slot count".into())?;
        let mut path = Vec::new();
        self.cache.leaf_path_into(n.id, &mut path).map_err(|e| e.to_string())?;
        for (k, s) in slots.iter().enumerate() {
            let pos = n.start + from + k as u32;
            let want = (path[(pos / self.ps) as usize], pos % self.ps);
            ensure((s.page, s.offset) == want, || format!("slot {k}: {s:?} != {want:?}"))?;
        }
        Ok(())
    }
}

/// Whether an operation did something or was (correctly) refused.
pub enum Outcome {
    Ok,
    Refused,
}

fn expect_err<T>(res: Result<T, KvError>, want: KvError) -> Result<Outcome, String> {
    match res {
        Err(e) if e == want => Ok(Outcome::Refused),
        Err(e) => Err(format!("got {e}, want {want}")),
        Ok(_) => Err(format!("succeeded, want {want}")),
    }
}
