//! The pieces of an RL step that run in different processes (docs/distributed.md): rollout
//! workers sample slices of a step's queries and send them back as flat arrays
//! ([`RolloutShard`]); data-parallel learners each compute the gradient of their slice of every
//! mini-batch ([`RankUpdate`]) and apply the rank-ordered sum ([`sum_in_rank_order`],
//! [`apply_gradient`]). [`update_local`] is the same computation in one process, the reference
//! the distributed run must equal exactly. The Python package's `treepo.distributed` drives
//! them on Ray.

mod shard;
mod update;

pub use shard::{RolloutShard, finish_code};
pub use update::{
    LocalUpdate, RankGradient, RankUpdate, apply_gradient, mini_batch_ranges, sum_in_rank_order,
    update_local,
};
