//! Step-by-step budget and branch counts on scripted trees, against hand-computed values.

mod common;

use common::{FILL, cfg, check_tree, ordinals, scripted};
use treepo_sampler::toy::{self, BOXED_OPEN, CLOSE, EOS, ScriptSegment};
use treepo_sampler::{DivPolicy, FinishReason, NoHooks, Query, StepTrace, TreeSampler};

fn trace(
    step: u32,
    decoded: usize,
    finished: usize,
    leaves: usize,
    active: usize,
    total: usize,
    split: &[usize],
) -> StepTrace {
    StepTrace {
        step,
        decoded,
        finished,
        leaves,
        active,
        total,
        split: split.to_vec(),
        kv_pressure: false,
    }
}

const PROMPT: &[u32] = &[12, 9, 13];

/// No early stops, w = 8, b = 2, d = 5: the frontier goes 2 → 4 → 8 → 8 → 8, then every path
/// hits the length limit d·l.
#[test]
fn fixed_init_without_stops_grows_binary_then_linear() {
    let c = cfg(5, 4, 2, 8);
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let mut engine = scripted(|_, _| ScriptSegment::repeat(FILL, 4));
    let tree = sampler.sample(&mut engine, &[Query::new(0, PROMPT)]).unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(q.initial_fanout(), 2);
    // remaining = 8 - F; total = max(|A|, min(remaining, 2f + 2|A|)).
    assert_eq!(
        q.steps(),
        &[
            trace(1, 2, 0, 0, 2, 4, &[2, 2]),
            trace(2, 4, 0, 0, 4, 8, &[2, 2, 2, 2]),
            trace(3, 8, 0, 0, 8, 8, &[1; 8]),
            trace(4, 8, 0, 0, 8, 8, &[1; 8]),
            trace(5, 8, 8, 8, 0, 0, &[]),
        ]
    );
    // max_response_length defaults to d·l = 20, and rule 4 (length) comes before rule 5 (depth).
    assert!(
        q.leaves()
            .iter()
            .all(|l| l.reason() == FinishReason::MaxOutputTokens && l.response_len() == 20)
    );
    // 2 + 4 + 8·3 segments of 4 tokens; the sequential baseline decodes 8 × 20.
    assert_eq!(tree.cost().tokens_decoded, 120);
    assert_eq!(tree.cost().engine_steps, 5);
    assert_eq!(tree.cost().segments_decoded, 2 + 4 + 24);
    let seq = sampler
        .sample_sequential(
            &mut scripted(|_, _| ScriptSegment::repeat(FILL, 100)),
            &[Query::new(0, PROMPT)],
        )
        .unwrap();
    check_tree(&seq, &c);
    assert_eq!(seq.cost().tokens_decoded, 160);
    assert_eq!(seq.cost().engine_steps, 5);
    assert!(seq.queries()[0].leaves().iter().all(|l| l.reason() == FinishReason::MaxOutputTokens));
}

/// Early stops donate their branches: f·b + b·|A|, capped by w − F; `fixed_avg` gives the
/// remainder to the last paths.
#[test]
fn early_stops_transfer_budget() {
    let c = cfg(6, 4, 2, 8);
    let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
    let mut engine = scripted(|_, path| match path {
        [0] => ScriptSegment::tokens(&[FILL, FILL, FILL, EOS]),
        [1, 0] => ScriptSegment::tokens(&[EOS]), // stop token at position 0
        [1, 1] => ScriptSegment::tokens(&[BOXED_OPEN, 5, CLOSE, EOS]), // \boxed{0}<eos>
        _ => ScriptSegment::repeat(FILL, 4),
    });
    let tree = sampler.sample(&mut engine, &[Query::new(0, PROMPT)]).unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(
        q.steps(),
        &[
            // [0] stops: F = 1, |A| = 1 → min(7, 2·1 + 2·1) = 4, all to [1].
            trace(1, 2, 1, 1, 1, 4, &[4]),
            // [1,0] EOS at 0, [1,1] boxed + EOS: F = 3, |A| = 2 → min(5, 4 + 4) = 5 → [2, 3].
            trace(2, 4, 2, 3, 2, 5, &[2, 3]),
            // 5 active, remaining 5 → one child each.
            trace(3, 5, 0, 3, 5, 5, &[1; 5]),
            trace(4, 5, 0, 3, 5, 5, &[1; 5]),
            trace(5, 5, 0, 3, 5, 5, &[1; 5]),
            trace(6, 5, 5, 8, 0, 0, &[]),
        ]
    );
    let reasons: Vec<_> = q.leaves().iter().map(|l| l.reason()).collect();
    assert_eq!(
        reasons[..3],
        [FinishReason::EarlyStoppedByEos, FinishReason::EarlyStoppedByEos, FinishReason::Finished]
    );
    assert_eq!(q.leaves()[1].response_len(), 5);
    assert_eq!(q.response_tokens(2), vec![FILL, FILL, FILL, FILL, BOXED_OPEN, 5, CLOSE, EOS]);
    let paths: Vec<Vec<u32>> = (3..8).map(|i| ordinals(q, q.leaves()[i].node())).collect();
    assert_eq!(
        paths,
        vec![
            vec![1, 2, 0, 0, 0, 0],
            vec![1, 2, 1, 0, 0, 0],
            vec![1, 3, 0, 0, 0, 0],
            vec![1, 3, 1, 0, 0, 0],
            vec![1, 3, 2, 0, 0, 0]
        ]
    );
    assert_eq!(tree.cost().fallbacks, 0);
}

/// The `w − F` cap: with w = 5 the second step can only fill 5 − 0 paths, the remainder going to
/// the last path.
#[test]
fn width_cap_limits_total() {
    let c = cfg(4, 2, 2, 5);
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let mut engine = scripted(|_, path| match path {
        [0, 0, _] => ScriptSegment::tokens(&[EOS]),
        _ => ScriptSegment::repeat(FILL, 2),
    });
    let tree = sampler.sample(&mut engine, &[Query::new(0, PROMPT)]).unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(
        q.steps()[..3],
        [
            trace(1, 2, 0, 0, 2, 4, &[2, 2]),
            // min(5 − 0, 2·4) = 5 over 4 paths → [1, 1, 1, 2].
            trace(2, 4, 0, 0, 4, 5, &[1, 1, 1, 2]),
            // [0,0,0] stops: F = 1, |A| = 4 → min(5 − 1, 2 + 8) = 4.
            trace(3, 5, 1, 1, 4, 4, &[1, 1, 1, 1]),
        ]
    );
    assert_eq!(q.leaves().len(), 5);
}

/// Log-prob split (node_logprob_weighted_div, T = 2) with hand-computed largest remainder:
/// x = [−1, −2, −0.5], z = −(x − min) = [−1, 0, −1.5], softmax(z/2) = [0.29176, 0.48103, 0.22722];
/// total 8 → 1 each, rest 5 → exact [1.4588, 2.4051, 1.1361] → floors [1, 2, 1], the leftover to
/// the largest fraction (0.4588) → [2, 2, 1] → [3, 3, 2].
#[test]
fn logprob_split_largest_remainder() {
    let mut c = cfg(3, 4, 4, 9);
    c.tree_div_policy = DivPolicy::NodeLogprobWeightedDiv;
    c.tree_logprob_div_temperature = 2.0;
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let rule = |_: usize, path: &[u32]| match path {
        [0] => ScriptSegment::tokens(&[FILL, EOS]),
        [1] => ScriptSegment::repeat(FILL, 4).with_logprob(-1.0),
        [2] => ScriptSegment::repeat(FILL, 4).with_logprob(-2.0),
        [3] => ScriptSegment::repeat(FILL, 4).with_logprob(-0.5),
        _ => ScriptSegment::repeat(FILL, 4),
    };
    let tree = sampler.sample(&mut scripted(rule), &[Query::new(0, PROMPT)]).unwrap();
    check_tree(&tree, &c);
    // F = 1, |A| = 3, f = 1 → total = min(9 − 1, 4·1 + 4·3) = 8.
    assert_eq!(tree.queries()[0].steps()[0], trace(1, 4, 1, 1, 3, 8, &[3, 3, 2]));

    // High-prob encourage: z = [1, 0, 1.5]/2 → [0.34595, 0.20983, 0.44422] → exact [1.7298, 1.0492,
    // 2.2211] → floors [1, 1, 2] + leftover to 0.7298 → [2, 1, 2] → [3, 2, 3].
    c.tree_div_policy = DivPolicy::InverseNodeLogprobWeightedDiv;
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let tree = sampler.sample(&mut scripted(rule), &[Query::new(0, PROMPT)]).unwrap();
    assert_eq!(tree.queries()[0].steps()[0], trace(1, 4, 1, 1, 3, 8, &[3, 2, 3]));
}

/// More Init Divergence: k ~ UniformInt[b, m] per query from the query's own stream.
#[test]
fn random_init_draws_per_query() {
    let mut c = cfg(2, 2, 2, 16);
    c.tree_random_first_div_max = Some(8);
    c.seed = 1;
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let prompts: Vec<&[u32]> = vec![PROMPT; 6];
    let tree = sampler
        .sample(&mut scripted(|_, _| ScriptSegment::repeat(FILL, 2)), &Query::batch(&prompts))
        .unwrap();
    check_tree(&tree, &c);
    let ks: Vec<usize> = tree.queries().iter().map(|q| q.initial_fanout()).collect();
    // Pinned for seed 1, query ids 0..6 (SchedRng::for_query(1, id).uniform_usize(2, 8)).
    assert_eq!(ks, vec![6, 2, 3, 3, 6, 6]);
    for (id, &k) in ks.iter().enumerate() {
        let mut rng = treepo_sampler::seed::SchedRng::for_query(1, id as u64);
        assert_eq!(rng.uniform_usize(2, 8), k);
        assert!(tree.queries()[id].nodes()[0].children().len() >= k);
    }
    // First step: k active, total = min(16, 2k).
    for q in tree.queries() {
        let k = q.initial_fanout();
        assert_eq!(q.steps()[0].total, (2 * k).min(16));
    }
    // The cap: m = 40 is capped at w = 16.
    c.tree_random_first_div_max = Some(40);
    let sampler = TreeSampler::new(c, NoHooks).unwrap();
    let tree = sampler
        .sample(&mut scripted(|_, _| ScriptSegment::repeat(FILL, 2)), &Query::batch(&prompts))
        .unwrap();
    assert!(tree.queries().iter().all(|q| (2..=16).contains(&q.initial_fanout())));
}

/// Token-budget mode (docs/treepo.md §1.8) with budget 24, l = 4, min_width 2:
/// the bound is `w` if the estimate `(budget − used) / (mean active len + l) + F` reaches w,
/// `min_width` below it, else the estimate.
#[test]
fn token_budget_mode_by_hand() {
    let mut c = cfg(4, 4, 2, 8);
    c.tree_total_budget_policy = treepo_sampler::TotalBudgetPolicy::ByResponseToken;
    c.tree_max_response_token = Some(24);
    c.tree_min_width = Some(2);
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let tree = sampler
        .sample(&mut scripted(|_, _| ScriptSegment::repeat(FILL, 4)), &[Query::new(0, PROMPT)])
        .unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    // Initial bound clamp(24 / 4, 1, 8) = 6 ≥ b: fixed init 2.
    assert_eq!(q.initial_fanout(), 2);
    assert_eq!(
        q.steps(),
        &[
            // est = 24 / (4 + 4) = 3 → bound 3 → total max(2, min(3, 4)) = 3.
            trace(1, 2, 0, 0, 2, 3, &[1, 2]),
            // est = 24 / (8 + 4) = 2 → bound 2 → total = |A| = 3.
            trace(2, 3, 0, 0, 3, 3, &[1, 1, 1]),
            // est = 24 / 16 = 1 < min_width → bound 2 → total 3.
            trace(3, 3, 0, 0, 3, 3, &[1, 1, 1]),
            // All reach d·l = 16: used 48 > budget → fallback bound = max(min_width, 0 + 3) = 3.
            trace(4, 3, 3, 3, 0, 0, &[]),
        ]
    );
    assert_eq!(q.leaves().len(), 3);
    assert!(q.fallbacks().is_empty());
}
