//! Splitting a query's branching budget among its active paths.

use crate::config::DivPolicy;

/// Log-prob statistics of one active path, for the log-prob split policies.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PathStats {
    /// Sum of the sampled-token log-probs over the whole response.
    pub response_logprob_sum: f64,
    /// Response length in tokens.
    pub response_len: usize,
    /// Sum of the log-probs of the last segment.
    pub segment_logprob_sum: f64,
    /// Length of the last segment.
    pub segment_len: usize,
}

/// Even split (`fixed_avg`): every path gets `⌊total/n⌋`, and each of the **last**
/// `total mod n` paths one more. (The released TreePO code gives the whole remainder to the last
/// path; docs/treepo.md §1.4 spreads it over the last paths, which we pin.) `total`
/// below `n` still gives every path 1.
#[must_use]
pub fn split_fixed_avg(total: usize, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let total = total.max(n);
    let (avg, rem) = (total / n, total % n);
    (0..n).map(|i| avg + usize::from(i >= n - rem)).collect()
}

/// TreePO's `weight_to_discrete_allocate`: every path first gets 1, the remaining `total − n`
/// are split in proportion to `weights` by the largest-remainder method (floors first, then one
/// each to the largest fractional parts; ties go to the lower index). Non-finite or all-zero
/// weights fall back to uniform weights.
#[must_use]
pub fn largest_remainder(weights: &[f64], total: usize) -> Vec<usize> {
    let n = weights.len();
    if n == 0 {
        return Vec::new();
    }
    let rest = total.saturating_sub(n);
    let sum: f64 = weights.iter().sum();
    let valid = sum.is_finite() && sum > 0.0 && weights.iter().all(|w| w.is_finite() && *w >= 0.0);
    let share = |w: f64| if valid { w / sum } else { 1.0 / n as f64 };
    let exact: Vec<f64> = weights.iter().map(|&w| share(w) * rest as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let given: usize = counts.iter().sum();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    // Rounding can only make `given` differ from `rest` by less than n; cycle to be safe.
    for &i in order.iter().cycle().take(rest.saturating_sub(given)) {
        counts[i] += 1;
    }
    counts.iter().map(|c| c + 1).collect()
}

/// A path's score `x_p` under a log-prob policy: the response sum (`logprob_weighted_div`,
/// `inverse_*`), the response mean (`norm_*`) or the last segment's mean (`node_*`). An empty
/// span has mean 0. `fixed_avg` scores 0.
#[must_use]
pub fn path_score(policy: DivPolicy, p: &PathStats) -> f64 {
    let mean = |sum: f64, len: usize| if len == 0 { 0.0 } else { sum / len as f64 };
    match policy {
        DivPolicy::FixedAvg => 0.0,
        DivPolicy::LogprobWeightedDiv | DivPolicy::InverseLogprobWeightedDiv => {
            p.response_logprob_sum
        }
        DivPolicy::NormLogprobWeightedDiv | DivPolicy::NormInvLogprobWeightedDiv => {
            mean(p.response_logprob_sum, p.response_len)
        }
        DivPolicy::NodeLogprobWeightedDiv | DivPolicy::InverseNodeLogprobWeightedDiv => {
            mean(p.segment_logprob_sum, p.segment_len)
        }
    }
}

/// `softmax(z / T)` with `z_p = −(x_p − min x)` ("low prob encourage", the non-inverse policies)
/// or `z_p = +(x_p − min x)` ("high prob encourage", `inverse_*`).
#[must_use]
pub fn logprob_weights(scores: &[f64], high_prob_encourage: bool, temperature: f64) -> Vec<f64> {
    let min = scores.iter().copied().fold(f64::INFINITY, f64::min);
    let sign = if high_prob_encourage { 1.0 } else { -1.0 };
    let z: Vec<f64> = scores.iter().map(|x| sign * (x - min) / temperature).collect();
    let zmax = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - zmax).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Splits `total` (>= number of paths) among the paths by `policy`.
#[must_use]
pub fn split_budget(
    policy: DivPolicy,
    total: usize,
    paths: &[PathStats],
    temperature: f64,
) -> Vec<usize> {
    let high = match policy {
        DivPolicy::FixedAvg => return split_fixed_avg(total, paths.len()),
        DivPolicy::LogprobWeightedDiv
        | DivPolicy::NormLogprobWeightedDiv
        | DivPolicy::NodeLogprobWeightedDiv => false,
        DivPolicy::InverseLogprobWeightedDiv
        | DivPolicy::NormInvLogprobWeightedDiv
        | DivPolicy::InverseNodeLogprobWeightedDiv => true,
    };
    let scores: Vec<f64> = paths.iter().map(|p| path_score(policy, p)).collect();
    largest_remainder(&logprob_weights(&scores, high, temperature), total)
}
