//! The toy engines' node arena and page model — a small stand-in for `tree-kv`.
//!
//! * Slots carry a generation; a handle whose generation does not match is `Released`, an index
//!   never issued is `Unknown`.
//! * Page model (page size `p`): a node whose tokens start at context position `s` owns the pages
//!   covering `[⌊s/p⌋·p, end)`; when `s` is not page-aligned its first page is a copy of the
//!   parent's partial tail page made at fork time (copy-on-write), so `fork(node, n)` needs `n`
//!   pages if the node's context length is not a multiple of `p`, else none. Appending a token at
//!   a position that is a multiple of `p` takes a new page.
//! * `release` invalidates the handle at once (generation bump); the node's pages are freed once
//!   it has no unfreed children, which may free its released ancestors in turn.
//! * A node that has been forked is frozen: appending to it is `InvalidNode { Frozen }`.

use crate::engine::{EngineError, EngineNode, InvalidNodeReason};

/// Page size and pool size of a toy engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvConfig {
    /// Tokens per page.
    pub page_size: usize,
    /// Pages in the pool.
    pub pool_pages: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        Self { page_size: 16, pool_pages: 1 << 20 }
    }
}

/// What the arena knows about a live (or released-but-held) node.
#[derive(Clone, Debug)]
pub(crate) struct NodeData {
    pub(crate) parent: Option<u32>,
    /// Prefill index of the node's query.
    pub(crate) query: usize,
    /// Child ordinals from the prompt node.
    pub(crate) path: Vec<u32>,
    /// Context position where the node's own tokens start.
    pub(crate) start: usize,
    /// Context length (prompt + response so far).
    pub(crate) len: usize,
    pub(crate) last_token: Option<u32>,
    pub(crate) children_created: u32,
    unfreed_children: u32,
    pages: usize,
    released: bool,
}

#[derive(Clone, Debug)]
struct Slot {
    generation: u32,
    data: Option<NodeData>,
}

#[derive(Clone, Debug)]
pub(crate) struct Arena {
    pub(crate) kv: KvConfig,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    pages_in_use: usize,
}

impl Arena {
    pub(crate) fn new(kv: KvConfig) -> Self {
        Self { kv, slots: Vec::new(), free_slots: Vec::new(), pages_in_use: 0 }
    }

    pub(crate) fn pages_in_use(&self) -> usize {
        self.pages_in_use
    }

    pub(crate) fn free_pages(&self) -> usize {
        self.kv.pool_pages.saturating_sub(self.pages_in_use)
    }

    /// Nodes whose handle is still valid.
    pub(crate) fn live_nodes(&self) -> usize {
        self.slots.iter().filter(|s| s.data.as_ref().is_some_and(|d| !d.released)).count()
    }

    fn take_pages(&mut self, n: usize) -> Result<(), EngineError> {
        let free = self.free_pages();
        if n > free {
            return Err(EngineError::KvExhausted { requested: n, free });
        }
        self.pages_in_use += n;
        Ok(())
    }

    fn insert(&mut self, data: NodeData) -> EngineNode {
        if let Some(index) = self.free_slots.pop() {
            let slot = &mut self.slots[index as usize];
            slot.data = Some(data);
            EngineNode::new(index, slot.generation)
        } else {
            self.slots.push(Slot { generation: 0, data: Some(data) });
            EngineNode::new((self.slots.len() - 1) as u32, 0)
        }
    }

    /// The live node behind a handle.
    pub(crate) fn get(&self, node: EngineNode) -> Result<&NodeData, EngineError> {
        let slot = self
            .slots
            .get(node.index() as usize)
            .ok_or(EngineError::InvalidNode { node, reason: InvalidNodeReason::Unknown })?;
        match &slot.data {
            Some(d) if slot.generation == node.generation() && !d.released => Ok(d),
            _ if node.generation() > slot.generation => {
                Err(EngineError::InvalidNode { node, reason: InvalidNodeReason::Unknown })
            }
            _ => Err(EngineError::InvalidNode { node, reason: InvalidNodeReason::Released }),
        }
    }

    fn get_mut(&mut self, node: EngineNode) -> Result<&mut NodeData, EngineError> {
        self.get(node)?;
        self.slots[node.index() as usize]
            .data
            .as_mut()
            .ok_or(EngineError::InvalidNode { node, reason: InvalidNodeReason::Released })
    }

    /// One root per prompt (atomic).
    pub(crate) fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<EngineNode>, EngineError> {
        let ps = self.kv.page_size.max(1);
        let need: usize = prompts.iter().map(|p| p.len().div_ceil(ps)).sum();
        self.take_pages(need)?;
        Ok(prompts
            .iter()
            .enumerate()
            .map(|(query, p)| {
                self.insert(NodeData {
                    parent: None,
                    query,
                    path: Vec::new(),
                    start: 0,
                    len: p.len(),
                    last_token: p.last().copied(),
                    children_created: 0,
                    unfreed_children: 0,
                    pages: p.len().div_ceil(ps),
                    released: false,
                })
            })
            .collect())
    }

    /// `n` children sharing `node`'s pages (atomic).
    pub(crate) fn fork(
        &mut self,
        node: EngineNode,
        n: usize,
    ) -> Result<Vec<EngineNode>, EngineError> {
        let parent = self.get(node)?.clone();
        let tail_copy = usize::from(parent.len % self.kv.page_size.max(1) != 0);
        self.take_pages(n * tail_copy)?;
        let first = parent.children_created;
        let p = self.get_mut(node)?;
        p.children_created += n as u32;
        p.unfreed_children += n as u32;
        Ok((0..n as u32)
            .map(|i| {
                let mut path = parent.path.clone();
                path.push(first + i);
                self.insert(NodeData {
                    parent: Some(node.index()),
                    query: parent.query,
                    path,
                    start: parent.len,
                    len: parent.len,
                    last_token: parent.last_token,
                    children_created: 0,
                    unfreed_children: 0,
                    pages: tail_copy,
                    released: false,
                })
            })
            .collect())
    }

    /// Checks that `node` may be appended to.
    pub(crate) fn check_appendable(&self, node: EngineNode) -> Result<(), EngineError> {
        if self.get(node)?.children_created > 0 {
            return Err(EngineError::InvalidNode { node, reason: InvalidNodeReason::Frozen });
        }
        Ok(())
    }

    /// Whether appending one token to `node` takes a new page.
    pub(crate) fn needs_page(&self, node: EngineNode) -> Result<bool, EngineError> {
        Ok(self.get(node)?.len % self.kv.page_size.max(1) == 0)
    }

    /// Appends one token (taking a page at a page boundary).
    pub(crate) fn append(&mut self, node: EngineNode, token: u32) -> Result<(), EngineError> {
        let needs = self.get(node)?.len % self.kv.page_size.max(1) == 0;
        if needs {
            self.take_pages(1)?;
        }
        let d = self.get_mut(node)?;
        d.pages += usize::from(needs);
        d.len += 1;
        d.last_token = Some(token);
        Ok(())
    }

    /// Invalidates the handle; frees pages up the tree as far as nothing needs them.
    pub(crate) fn release(&mut self, node: EngineNode) -> Result<(), EngineError> {
        self.get(node)?;
        let slot = &mut self.slots[node.index() as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let mut cur = Some(node.index());
        if let Some(d) = slot.data.as_mut() {
            d.released = true;
        }
        // Free released nodes without unfreed children, walking up.
        while let Some(i) = cur {
            let slot = &mut self.slots[i as usize];
            let Some(d) = slot.data.as_ref() else { break };
            if !(d.released && d.unfreed_children == 0) {
                break;
            }
            let (pages, parent) = (d.pages, d.parent);
            slot.data = None;
            self.free_slots.push(i);
            self.pages_in_use -= pages;
            cur = parent;
            if let Some(p) = parent.and_then(|p| self.slots[p as usize].data.as_mut()) {
                p.unfreed_children -= 1;
            }
        }
        Ok(())
    }
}
