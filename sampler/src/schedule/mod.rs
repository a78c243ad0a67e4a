//! The scheduler's decisions as pure functions of the tree state and a seeded [`SchedRng`]
//! (docs/treepo.md §1.2–§1.5). The runners ([`crate::TreeSampler`]) only apply them; tests pin them
//! with hand-computed numbers.
//!
//! [`SchedRng`]: crate::seed::SchedRng

mod budget;
mod fallback;
mod split;

pub use budget::{branch_total, initial_fanout, token_mode_upper};
pub use fallback::{FallbackPick, fallback_cut, is_fallback_candidate, plan_fallback};
pub use split::{
    PathStats, largest_remainder, logprob_weights, path_score, split_budget, split_fixed_avg,
};
