//! The [`Engine`] trait the samplers drive, and its request/response types.
//!
//! Contract (every implementation, the toy engines included):
//! * A node is a span of tokens whose KV the engine holds; a node's context is its ancestors'
//!   tokens followed by its own. [`Engine::prefill`] makes one root node per prompt.
//! * [`Engine::fork`] makes `n` new, empty children of a node; they share the parent's KV.
//!   It is atomic: on error no child exists. A node may be forked again later (TreePO's fallback
//!   re-opens finished paths from inner nodes).
//! * [`Engine::decode_segment`] **appends** up to `max_tokens` tokens to each requested node, in
//!   one batched call. A node that has children is frozen (its KV is shared) and may not be
//!   appended to: that is an [`EngineError::InvalidNode`]. A request stops right after the first
//!   token in [`DecodeParams::stop`] is emitted. The uniform for the token at response position `p`
//!   is `req.key.uniform(p)` with `p = req.response_offset + i` for the `i`-th new token, so a
//!   branch's tokens never depend on the batch it was decoded in.
//! * When the KV pool runs out during a decode, the engine keeps what it decoded and ends that
//!   request with [`SegmentEnd::KvExhausted`] (possibly with zero tokens); other requests go on.
//!   It may instead fail the whole call with [`EngineError::KvExhausted`] if nothing was decoded.
//! * [`Engine::release`] invalidates a handle at once; the node's pages are returned to the pool
//!   once no live descendant needs them.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::logits::{EntropyMode, SamplingParams};
use crate::seed::BranchKey;

/// An engine's handle to one tree node: a slot index plus a generation, so a handle that outlives
/// its node is detected instead of aliasing a newer node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EngineNode {
    index: u32,
    generation: u32,
}

impl EngineNode {
    /// A handle for slot `index` at generation `generation` (engines mint these).
    #[must_use]
    pub const fn new(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }

    /// The slot index.
    #[must_use]
    pub const fn index(self) -> u32 {
        self.index
    }

    /// The generation of the slot this handle refers to.
    #[must_use]
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl std::fmt::Display for EngineNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}#{}", self.index, self.generation)
    }
}

/// Why a node handle was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidNodeReason {
    /// The engine never issued this handle.
    Unknown,
    /// The node was released (or its slot reused).
    Released,
    /// The node has children, so its KV is shared and it can no longer be appended to.
    Frozen,
}

/// Errors an engine returns. Only [`EngineError::KvExhausted`] is recoverable by the samplers.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// The KV pool has fewer free pages than the operation needs. The samplers stop branching,
    /// defer paths and, if nothing can progress, finish paths with
    /// [`crate::FinishReason::KvExhausted`]; enlarge the pool or sample fewer queries at once.
    #[error("KV pool exhausted: {requested} pages requested, {free} free")]
    KvExhausted {
        /// Pages the operation needed.
        requested: usize,
        /// Pages that were free.
        free: usize,
    },
    /// A node handle was not valid for the operation.
    #[error("invalid {node}: {reason:?}")]
    InvalidNode {
        /// The rejected handle.
        node: EngineNode,
        /// Why it was rejected.
        reason: InvalidNodeReason,
    },
    /// The request itself was malformed (e.g. the same node twice in one decode batch).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The backend failed (device error, model error, ...).
    #[error("backend error: {0}")]
    Backend(String),
}

/// One leaf to extend in a [`Engine::decode_segment`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRequest {
    /// The node to append to (it must have no children).
    pub node: EngineNode,
    /// The branch's randomness key.
    pub key: BranchKey,
    /// Response position of the first token this call appends (tokens after the prompt).
    pub response_offset: u64,
    /// At most this many tokens are appended (`>= 1`).
    pub max_tokens: usize,
}

impl SegmentRequest {
    /// The uniform for the `i`-th new token of this request.
    #[must_use]
    pub fn uniform(&self, i: usize) -> f64 {
        self.key.uniform(self.response_offset + i as u64)
    }
}

/// Parameters shared by every request of one decode call.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeParams {
    /// Stop token ids: a request ends right after emitting any of them.
    pub stop: BTreeSet<u32>,
    /// Temperature / top-k / top-p.
    pub sampling: SamplingParams,
    /// Whether to return per-token entropies.
    pub entropy: EntropyMode,
}

/// Why a request's segment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SegmentEnd {
    /// `max_tokens` tokens were appended (or the engine chose to stop without a stop token).
    MaxTokens,
    /// The last token is a stop token.
    Stop,
    /// The KV pool ran out; the tokens returned were appended, the segment is incomplete.
    KvExhausted,
}

/// What one request produced.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentOutput {
    /// The new tokens (already appended to the node).
    pub tokens: Vec<u32>,
    /// Log-prob of each new token under the processed distribution it was drawn from.
    pub logprobs: Vec<f32>,
    /// Entropy of that distribution per token, when [`EntropyMode::Compute`] was asked.
    pub entropies: Option<Vec<f32>>,
    /// Why the segment ended.
    pub end: SegmentEnd,
}

/// An inference engine that holds a tree of KV caches and decodes segments for its leaves.
pub trait Engine {
    /// Prefills a batch of prompts; returns one root node per prompt holding the prompt's KV.
    fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<EngineNode>, EngineError>;

    /// Creates `n` empty children of `node` that share its KV (atomic: all or none).
    fn fork(&mut self, node: EngineNode, n: usize) -> Result<Vec<EngineNode>, EngineError>;

    /// Decodes one segment for every request in one batched call; one output per request, in
    /// order.
    fn decode_segment(
        &mut self,
        reqs: &[SegmentRequest],
        params: &DecodeParams,
    ) -> Result<Vec<SegmentOutput>, EngineError>;

    /// Releases a node: the handle is invalid at once, the pages are freed once no live
    /// descendant needs them.
    fn release(&mut self, node: EngineNode) -> Result<(), EngineError>;

    /// KV pages currently in use (for peak accounting); 0 if the engine has no paged KV.
    fn kv_pages_in_use(&self) -> usize;
}

impl<E: Engine + ?Sized> Engine for &mut E {
    fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<EngineNode>, EngineError> {
        (**self).prefill(prompts)
    }
    fn fork(&mut self, node: EngineNode, n: usize) -> Result<Vec<EngineNode>, EngineError> {
        (**self).fork(node, n)
    }
    fn decode_segment(
        &mut self,
        reqs: &[SegmentRequest],
        params: &DecodeParams,
    ) -> Result<Vec<SegmentOutput>, EngineError> {
        (**self).decode_segment(reqs, params)
    }
    fn release(&mut self, node: EngineNode) -> Result<(), EngineError> {
        (**self).release(node)
    }
    fn kv_pages_in_use(&self) -> usize {
        (**self).kv_pages_in_use()
    }
}
