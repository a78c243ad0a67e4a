//! # tree-kv — prefix-shared paged KV cache bookkeeping
//!
//! (Crate docs are completed in the documentation commit.)

#![deny(missing_docs)]

mod append;
mod cache;
mod error;
mod export;
mod fork;
mod ids;
mod invariants;
mod list;
mod node;
mod paths;
mod pool;
mod prefix;
mod radix;
mod release;

pub use cache::{CacheConfig, MAX_TOKENS, NodeInfo, TreeKvCache};
pub use error::{InvariantViolation, KvError, Result};
pub use export::LayoutExport;
pub use fork::Fork;
pub use ids::{NodeId, PageCopy, PageId, Slot};
pub use paths::KvChunk;
pub use pool::PageState;
pub use prefix::{Prefill, PrefixMatch};
