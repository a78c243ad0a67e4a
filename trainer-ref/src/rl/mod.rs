//! The RL core: advantages, the clipped policy loss (per leaf and tree-packed), filters.
//!
//! Everything here is a pure function of plain numbers (`f64`), deterministic in iteration order,
//! and validates caller input with [`RlError`] rather than panicking.

pub mod advantage;
mod error;
mod tree_input;

pub use advantage::{
    AdvantageConfig, AdvantageEstimator, AdvantageLevel, Advantages, compute_advantages,
    compute_leaf_advantages,
};
pub use error::RlError;
pub use tree_input::{BranchingWindow, EdgeStats, LeafRecord, RolloutTopology, TopologyBuilder};
