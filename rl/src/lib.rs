//! # treepo-rl
//!
//! The RL core: advantages, the clipped policy loss (per leaf and tree-packed), filters. Its own
//! crate so that embeddings (the Python package) get the exact estimators without the trainer's
//! dependencies; `treepo_trainer::rl` re-exports it.
//!
//! Everything here is a pure function of plain numbers (`f64`), deterministic in iteration order,
//! and validates caller input with [`RlError`] rather than panicking.
//!
//! - [`advantage`]: estimators over a [`RolloutTopology`] or [`LeafRecord`]s.
//! - [`loss`]: the per-token clipped surrogate, KL k3 and entropy terms with `dL/dlogπ`.
//! - [`aggregation`]: token-mean / seq-mean-token-mean / seq-mean-token-sum-norm as weights.
//! - [`per_leaf`]: the loss of whole sequences (the plain path and the reference).
//! - [`packed`]: the same loss over tree-packed tokens via weighted advantage sums.
//! - [`filters`]: dynamic sampling and the overlong penalty.
#![deny(missing_docs)]

pub mod advantage;
pub mod aggregation;
mod error;
pub mod filters;
pub mod loss;
pub mod packed;
pub mod per_leaf;
mod tree_input;

pub use advantage::{
    AdvantageConfig, AdvantageEstimator, AdvantageLevel, Advantages, compute_advantages,
    compute_leaf_advantages,
};
pub use aggregation::LossAggregation;
pub use error::{MAX_ABS_REWARD, RlError};
pub use filters::{DynamicSampler, OverlongPenalty, RoundOutcome, SamplingStats, keep_query};
pub use loss::{ClipConfig, ClipRegion, KlPenalty, TokenLoss, clipped_token_loss};
pub use packed::{
    PackedAdvantage, PackedLeaf, PackedLoss, PackedTokens, pack_advantages, packed_loss,
};
pub use per_leaf::{
    BatchLoss, LossStats, PolicyLossConfig, SequenceLoss, SequenceTokens, per_leaf_loss,
    sequence_loss,
};
pub use tree_input::{BranchingWindow, EdgeStats, LeafRecord, RolloutTopology, TopologyBuilder};
