//! Tree nodes and their arena (slot index + generation ids).

use crate::error::{KvError, Result};
use crate::ids::{NodeId, PageId};
use crate::list::NIL;

/// One node: a contiguous token span `[start, end)` of a path, and the pages that hold it.
///
/// `pages` covers page indices `floor(start/ps) .. ceil(end/ps)` of the path (so its length is
/// `ceil(end/ps) - floor(start/ps)`). When `start` is not page-aligned, `pages[0]` also holds the
/// parent's tail rows `[floor(start/ps)*ps, start)`: it is either the parent's tail page itself
/// (the node claimed its free rows) or this node's private copy of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    /// Generation of this slot; the id of the node living here carries the same value.
    pub(crate) generation: u32,
    /// Whether the slot holds a node (live or released-but-kept).
    pub(crate) alive: bool,
    /// Whether the caller released it; it stays alive while it has children.
    pub(crate) released: bool,
    /// Whether it has ever been forked: a forked node is frozen, it is never appended to again.
    pub(crate) forked: bool,
    /// Parent slot, `NIL` for a root.
    pub(crate) parent: u32,
    /// Number of ancestors (0 for a root).
    pub(crate) depth: u32,
    /// First absolute token position of the span (the parent's `end`; 0 for a root).
    pub(crate) start: u32,
    /// One past the last position.
    pub(crate) end: u32,
    /// Pages held (refcount +1 each), in path order.
    pub(crate) pages: Vec<PageId>,
    /// Children in creation order.
    pub(crate) children: Vec<NodeId>,
    /// The page at path index `floor(start/ps) - 1` (the radix key parent of `pages[0]`), or `NIL`.
    pub(crate) prev_page: u32,
}

impl Node {
    /// The radix key parent of `pages[i]`.
    pub(crate) fn key_parent_of(&self, i: usize) -> u32 {
        if i == 0 { self.prev_page } else { self.pages[i - 1].0 }
    }
}

/// Most children one `fork` may create: aligned forks allocate no page, so the pool does not bound
/// them, and a runaway `n` must be an error rather than an allocation failure.
pub const MAX_FORK: u32 = 1 << 16;

/// Slots of nodes; freed slots are reused last-in first-out with a bumped generation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Arena {
    pub(crate) slots: Vec<Node>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) live: u32,
}

impl Arena {
    /// The slot of a node that exists (live or released-but-kept).
    pub(crate) fn slot(&self, id: NodeId) -> Result<usize> {
        match self.slots.get(id.index as usize) {
            Some(n) if n.alive && n.generation == id.generation => Ok(id.index as usize),
            _ => Err(KvError::UnknownNode { node: id }),
        }
    }

    /// The slot of a node the caller still holds (not released).
    pub(crate) fn live_slot(&self, id: NodeId) -> Result<usize> {
        let s = self.slot(id)?;
        if self.slots[s].released {
            return Err(KvError::NodeReleased { node: id });
        }
        Ok(s)
    }

    pub(crate) fn id(&self, slot: usize) -> NodeId {
        NodeId { index: slot as u32, generation: self.slots[slot].generation }
    }

    /// Fails unless `n` more nodes fit in `u32` slot indices and `n <= MAX_FORK`.
    pub(crate) fn check_room(&self, n: u64) -> Result<()> {
        let max = u64::from(u32::MAX - 1);
        if n > u64::from(MAX_FORK) || u64::from(self.live) + n > max {
            return Err(KvError::TooManyNodes { requested: n, live: self.live });
        }
        Ok(())
    }

    /// Stores `node` in a free slot and returns its id. `check_room` must have passed.
    pub(crate) fn insert(&mut self, mut node: Node) -> NodeId {
        node.alive = true;
        self.live += 1;
        if let Some(s) = self.free_slots.pop() {
            let slot = &mut self.slots[s as usize];
            node.generation = slot.generation;
            *slot = node;
            NodeId { index: s, generation: slot.generation }
        } else {
            node.generation = 0;
            self.slots.push(node);
            NodeId { index: self.slots.len() as u32 - 1, generation: 0 }
        }
    }

    /// Frees a slot whose pages were already dropped; its generation moves on.
    pub(crate) fn remove(&mut self, slot: usize) {
        let gen_next = self.slots[slot].generation.wrapping_add(1);
        self.slots[slot] =
            Node { generation: gen_next, parent: NIL, prev_page: NIL, ..Node::default() };
        self.free_slots.push(slot as u32);
        self.live -= 1;
    }
}
