//! Typed errors. Every public operation checks its preconditions before it mutates anything, so an
//! `Err` always leaves the cache exactly as it was.

use crate::ids::{NodeId, PageId};

/// What a cache operation can refuse, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The configured page size is not a power of two in `[1, 2^16]`.
    #[error("page_size {page_size} must be a power of two in [1, 65536]")]
    InvalidPageSize {
        /// The rejected value.
        page_size: u32,
    },
    /// The configured pool size cannot be addressed by int32 page tables (or is zero).
    #[error("num_pages {num_pages} must be in [1, {max}] so page ids and slots fit int32 tables")]
    InvalidNumPages {
        /// The rejected value.
        num_pages: u32,
        /// The largest pool this page size allows.
        max: u32,
    },
    /// The host could not allocate the pool's bookkeeping arrays.
    #[error("cannot allocate bookkeeping for {num_pages} pages of {page_size} tokens")]
    OutOfHostMemory {
        /// Requested pages.
        num_pages: u32,
        /// Requested page size.
        page_size: u32,
    },
    /// The id names no node: it was never issued, or its node was collected (stale generation).
    #[error("unknown node {node}: never created or already collected")]
    UnknownNode {
        /// The rejected id.
        node: NodeId,
    },
    /// The node was released by its caller; it only lives on because descendants need its pages.
    #[error("node {node} was already released; fork/append/release need a live node")]
    NodeReleased {
        /// The rejected id.
        node: NodeId,
    },
    /// Append to a node that has been forked: forked nodes are frozen (their rows are shared).
    #[error("node {node} has been forked and is frozen; append to one of its children instead")]
    NodeFrozen {
        /// The rejected id.
        node: NodeId,
    },
    /// `fork(node, 0)`.
    #[error("fork of {node} into 0 children; n must be at least 1")]
    ZeroFork {
        /// The node that was to be forked.
        node: NodeId,
    },
    /// Not enough free plus evictable pages for the operation; nothing was allocated.
    #[error(
        "page pool exhausted: {requested} pages requested, {free} free and {evictable} evictable; \
         release nodes or enlarge the pool"
    )]
    PoolExhausted {
        /// Pages the operation needed.
        requested: u32,
        /// Pages on the free list.
        free: u32,
        /// Cached, unreferenced pages that eviction could reclaim.
        evictable: u32,
    },
    /// A sequence would grow past `i32::MAX` tokens, which int32 exports cannot describe.
    #[error("a path would reach {requested} tokens; positions must stay <= {max}")]
    SequenceTooLong {
        /// The node that was to grow (`None` for a root being created).
        node: Option<NodeId>,
        /// The length it would have reached (saturated at `u64::MAX`).
        requested: u64,
        /// The largest supported length.
        max: u32,
    },
    /// A fork asked for more than [`crate::MAX_FORK`] children, or the node arena would exceed
    /// `u32::MAX` slots.
    #[error(
        "too many nodes: {requested} more requested, {live} alive (at most {} per fork)",
        crate::MAX_FORK
    )]
    TooManyNodes {
        /// Nodes the operation wanted to create.
        requested: u64,
        /// Nodes alive now.
        live: u32,
    },
    /// The page id is outside the pool.
    #[error("page {page} is outside the pool of {num_pages} pages")]
    UnknownPage {
        /// The rejected id.
        page: PageId,
        /// Pool size.
        num_pages: u32,
    },
    /// An export was asked for a node that has children.
    #[error("node {node} has children; only leaves can be exported as active paths")]
    NotALeaf {
        /// The rejected id.
        node: NodeId,
    },
    /// An export's concatenated page lists would not fit int32 offsets.
    #[error("export needs {entries} page entries; int32 CSR offsets stop at {}", i32::MAX)]
    ExportTooLarge {
        /// Entries reached when the limit was hit.
        entries: u64,
    },
    /// An export listed the same leaf twice.
    #[error("leaf {node} listed twice in one export")]
    DuplicateLeaf {
        /// The repeated id.
        node: NodeId,
    },
}

/// A broken internal invariant, found by [`crate::TreeKvCache::check_invariants`]. Seeing one is a
/// bug in this crate (tests and the fuzz target treat it as fatal).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tree-kv invariant violated: {what}")]
pub struct InvariantViolation {
    /// Which invariant failed and on what.
    pub what: String,
}

impl InvariantViolation {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Self { what: what.into() }
    }
}

/// Result alias for cache operations.
pub type Result<T, E = KvError> = std::result::Result<T, E>;
