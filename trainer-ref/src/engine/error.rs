//! Mapping the layers' errors onto [`EngineError`].
//!
//! Caller mistakes are caught by the engine before tree-kv sees them (handles are the engine's
//! own, validated first), so a tree-kv error other than `PoolExhausted` or a plan error is an
//! engine bug and reported as such, never a panic.

use std::fmt::Display;

use tree_kv::KvError;
use treepo_sampler::EngineError;

/// A device or kernel failure.
pub(crate) fn backend(e: impl Display) -> EngineError {
    EngineError::Backend(e.to_string())
}

/// A broken internal invariant (a bug in this engine), reported as a backend error.
pub(crate) fn internal(what: &str, e: impl Display) -> EngineError {
    EngineError::Backend(format!("model engine bug ({what}): {e}"))
}

/// A tree-kv error: pool exhaustion is [`EngineError::KvExhausted`] (free + evictable pages
/// count as free), length and fan-out limits are invalid requests, the rest are bugs.
pub(crate) fn kv(what: &str, e: KvError) -> EngineError {
    match e {
        KvError::PoolExhausted { requested, free, evictable } => EngineError::KvExhausted {
            requested: requested as usize,
            free: (free + evictable) as usize,
        },
        KvError::SequenceTooLong { .. } | KvError::TooManyNodes { .. } => {
            EngineError::InvalidRequest(e.to_string())
        }
        e => internal(what, e),
    }
}
