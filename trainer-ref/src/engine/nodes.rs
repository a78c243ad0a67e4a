//! The engine's handles: an [`EngineNode`] (slot + generation) names a tree-kv [`NodeId`] and the
//! node's **pending hidden state** — the final-norm output of its last token, from which the
//! logits of its next token are computed.
//!
//! A handle dies at `release` (its slot's generation is bumped at once), whatever tree-kv keeps
//! alive for the node's descendants. A handle whose generation is newer than its slot's was never
//! issued (`Unknown`); an older one, or one whose slot is empty, was released (`Released`).

use tree_kv::NodeId;
use treepo_sampler::{EngineError, EngineNode, InvalidNodeReason};

/// What the engine keeps per live node.
#[derive(Clone, Debug)]
pub(crate) struct NodeEntry {
    /// The tree-kv node.
    pub kv: NodeId,
    /// `[C]`: final-norm hidden state of the node's last context token.
    pub hidden: Vec<f32>,
}

#[derive(Clone, Debug, Default)]
struct Slot {
    generation: u32,
    entry: Option<NodeEntry>,
}

/// Slots with generations and a free list.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl NodeTable {
    /// Stores `entry` and mints its handle.
    pub fn insert(&mut self, entry: NodeEntry) -> EngineNode {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            let s = &mut self.slots[i as usize];
            s.entry = Some(entry);
            return EngineNode::new(i, s.generation);
        }
        self.slots.push(Slot { generation: 0, entry: Some(entry) });
        EngineNode::new((self.slots.len() - 1) as u32, 0)
    }

    /// The entry behind a live handle.
    pub fn get(&self, node: EngineNode) -> Result<&NodeEntry, EngineError> {
        let invalid = |reason| EngineError::InvalidNode { node, reason };
        let s = self.slots.get(node.index() as usize).ok_or(invalid(InvalidNodeReason::Unknown))?;
        match &s.entry {
            Some(e) if s.generation == node.generation() => Ok(e),
            _ if node.generation() > s.generation => Err(invalid(InvalidNodeReason::Unknown)),
            _ => Err(invalid(InvalidNodeReason::Released)),
        }
    }

    /// The entry behind a live handle, writable.
    pub fn get_mut(&mut self, node: EngineNode) -> Result<&mut NodeEntry, EngineError> {
        self.get(node)?;
        self.slots[node.index() as usize]
            .entry
            .as_mut()
            .ok_or(EngineError::InvalidNode { node, reason: InvalidNodeReason::Released })
    }

    /// Kills a live handle and returns its entry.
    pub fn remove(&mut self, node: EngineNode) -> Result<NodeEntry, EngineError> {
        self.get(node)?;
        let s = &mut self.slots[node.index() as usize];
        s.generation = s.generation.wrapping_add(1);
        let e = s.entry.take();
        self.free.push(node.index());
        self.live -= 1;
        e.ok_or(EngineError::InvalidNode { node, reason: InvalidNodeReason::Released })
    }

    /// Handles that are still valid.
    pub fn live(&self) -> usize {
        self.live
    }
}
