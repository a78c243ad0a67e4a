//! Fallback (docs/treepo.md §1.5): re-opening finished paths depth-first.

use crate::FinishReason;
use crate::config::{FallbackPolicy, FallbackTrajPolicy, TreeConfig};
use crate::seed::SchedRng;

/// Whether a leaf finished for a reason `policy` allows re-opening.
#[must_use]
pub fn is_fallback_candidate(policy: FallbackTrajPolicy, reason: FinishReason) -> bool {
    match policy {
        FallbackTrajPolicy::SoftBoxedAndEos => {
            matches!(reason, FinishReason::Finished | FinishReason::EarlyStoppedByEos)
        }
        FallbackTrajPolicy::RandomAll => true,
    }
}

/// Cut point (in response tokens) for re-opening a response of `len` tokens:
///
/// ```text
/// random:     blocks = ceil(len / window); j ~ UniformInt[1, min(max_window, blocks)];
///             cut = (blocks − j) · window          (0 = restart from the query)
/// from_start: cut = 0
/// then:       if cut / l >= d { cut = l · (d − 1) }
/// ```
///
/// `len == 0` gives 0 without drawing. The caller re-opens the path's node at depth `cut / l`
/// (so a window other than `l` is rounded down to a segment boundary there).
pub fn fallback_cut(config: &TreeConfig, len: usize, rng: &mut SchedRng) -> usize {
    let (l, d) = (config.segment_len().max(1), config.depth().max(1));
    let cut = match config.tree_fallback_policy {
        FallbackPolicy::Random if len > 0 => {
            let window = config.window().max(1);
            let blocks = len.div_ceil(window);
            let hi = config.tree_max_fallback_window.map_or(blocks, |m| m.clamp(1, blocks));
            let j = rng.uniform_usize(1, hi);
            (blocks - j) * window
        }
        FallbackPolicy::Random | FallbackPolicy::FromStart | FallbackPolicy::NoFallback => 0,
    };
    if cut / l >= d { l * (d - 1) } else { cut }
}

/// One re-opening decided by a fallback round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FallbackPick {
    /// Index (into the leaves given to [`plan_fallback`]) of the re-opened leaf, `None` for the
    /// bare query.
    pub leaf: Option<usize>,
    /// Cut point in response tokens (0 = from the query).
    pub cut: usize,
    /// New sibling branches to open there, `min(b, remaining)`.
    pub k: usize,
}

/// Plans one fallback round for a query with no active path: candidates are the leaves (given
/// as `(reason, response_len)` in leaf order) allowed by `tree_fallback_traj_policy`, shuffled with
/// `rng` (Fisher–Yates); if none, the bare query. Each candidate in turn gets a cut
/// ([`fallback_cut`]) and `k = min(b, remaining)` branches until `remaining` is used up;
/// `from_start` stops after the first candidate, `no_fallback` plans nothing.
pub fn plan_fallback(
    config: &TreeConfig,
    leaves: &[(FinishReason, usize)],
    remaining: usize,
    rng: &mut SchedRng,
) -> Vec<FallbackPick> {
    if config.tree_fallback_policy == FallbackPolicy::NoFallback || remaining == 0 {
        return Vec::new();
    }
    let policy = config.tree_fallback_traj_policy;
    let mut candidates: Vec<Option<usize>> = leaves
        .iter()
        .enumerate()
        .filter(|(_, (reason, _))| is_fallback_candidate(policy, *reason))
        .map(|(i, _)| Some(i))
        .collect();
    rng.shuffle(&mut candidates);
    if candidates.is_empty() {
        candidates.push(None);
    }
    let mut left = remaining;
    let mut picks = Vec::new();
    for leaf in candidates {
        if left == 0 {
            break;
        }
        let len = leaf.map_or(0, |i| leaves[i].1);
        let cut = fallback_cut(config, len, rng);
        let k = config.branch().min(left);
        picks.push(FallbackPick { leaf, cut, k });
        left -= k;
        if config.tree_fallback_policy == FallbackPolicy::FromStart {
            break;
        }
    }
    picks
}
