//! Initial divergence and the branching budget with transfer.

use crate::config::TreeConfig;
use crate::seed::SchedRng;

/// Initial fan-out of one query (docs/treepo.md §1.2): `k ~ UniformInt[min, m]` (one draw from the
/// query's stream) when "More Init Divergence" is on (`tree_random_first_div_max` capped at
/// `upper` exceeds `b`), else `min(b, upper)` without drawing. `upper` is `w`, or the token-mode
/// bound.
pub fn initial_fanout(config: &TreeConfig, upper: usize, rng: &mut SchedRng) -> usize {
    match config.random_init_bounds(upper) {
        Some((min, max)) => rng.uniform_usize(min.min(max), max),
        None => config.branch().min(upper).max(1),
    }
}

/// Children scheduled for a query's active paths this step (docs/treepo.md §1.4):
///
/// ```text
/// remaining = max(upper − F, 0)
/// total     = max(|A|, min(remaining, b·f + b·|A|))
/// ```
///
/// `upper` is `w` (or the token-mode bound), `finished_total` is F (leaves so far, this step's
/// included), `finished_step` is f, `active` is |A|. Every active path continues, so the result
/// is at least `active`; since `F + |A| <= w` before the step, `leaves + active <= w` is kept.
#[must_use]
pub fn branch_total(
    upper: usize,
    finished_total: usize,
    finished_step: usize,
    active: usize,
    b: usize,
) -> usize {
    let remaining = upper.saturating_sub(finished_total);
    let donated = b.saturating_mul(finished_step).saturating_add(b.saturating_mul(active));
    active.max(remaining.min(donated))
}

/// Token-budget mode's width bound (docs/treepo.md §1.8): `w` if the estimated number of
/// trajectories reaches `w`, `min_width` if it is below `min_width`, else the estimate.
#[must_use]
pub fn token_mode_upper(w: usize, min_width: usize, estimated_trajectories: usize) -> usize {
    if estimated_trajectories >= w {
        w
    } else if estimated_trajectories < min_width {
        min_width
    } else {
        estimated_trajectories
    }
}
