//! The scheduler's pure functions with hand-computed numbers, and the seed derivation.

use treepo_sampler::schedule::{
    PathStats, branch_total, initial_fanout, largest_remainder, logprob_weights, path_score,
    split_budget, split_fixed_avg, token_mode_upper,
};
use treepo_sampler::seed::{BranchKey, SchedRng, splitmix64, unit_f32, unit_f64};
use treepo_sampler::{DivPolicy, TreeConfig};

#[test]
fn branch_total_formula() {
    // (w, F, f, |A|, b) → max(|A|, min(max(w − F, 0), b·f + b·|A|))
    let cases = [
        ((16, 0, 0, 2, 2), 4),   // 2 → 4
        ((16, 0, 0, 8, 2), 16),  // 8 → 16
        ((16, 0, 0, 16, 2), 16), // linear once full
        ((16, 3, 3, 5, 2), 13),  // transfer: min(13, 6 + 10) = 13
        ((16, 3, 1, 5, 2), 12),  // min(13, 2 + 10) = 12
        ((16, 14, 2, 2, 2), 2),  // remaining 2 = |A|
        ((16, 16, 0, 0, 2), 0),  // nothing active, nothing left
        ((5, 0, 0, 4, 2), 5),    // the w − F cap
        ((4, 6, 0, 3, 2), 3),    // F > w (token mode can shrink the bound): every path continues
        ((16, 0, 0, 3, 1), 3),   // b = 1: chains
        ((16, 2, 2, 1, 4), 12),  // b = 4: min(14, 8 + 4)
    ];
    for ((w, big_f, f, a, b), want) in cases {
        assert_eq!(branch_total(w, big_f, f, a, b), want, "w {w} F {big_f} f {f} |A| {a} b {b}");
    }
}

#[test]
fn fixed_avg_spreads_the_remainder_over_the_last_paths() {
    assert_eq!(split_fixed_avg(8, 3), vec![2, 3, 3]);
    assert_eq!(split_fixed_avg(5, 3), vec![1, 2, 2]);
    assert_eq!(split_fixed_avg(6, 3), vec![2, 2, 2]);
    assert_eq!(split_fixed_avg(7, 1), vec![7]);
    assert_eq!(split_fixed_avg(2, 3), vec![1, 1, 1]); // every path >= 1
    assert_eq!(split_fixed_avg(4, 0), Vec::<usize>::new());
}

#[test]
fn largest_remainder_by_hand() {
    // weights [0.5, 0.3, 0.2], total 7 → 1 each, rest 4 → exact [2.0, 1.2, 0.8] → floors [2, 1, 0],
    // leftover 1 → largest fraction 0.8 → [2, 1, 1] → [3, 2, 2].
    assert_eq!(largest_remainder(&[0.5, 0.3, 0.2], 7), vec![3, 2, 2]);
    // Equal fractions: ties go to the lower index. rest 1 over 3 equal → [1/3]*3 → index 0.
    assert_eq!(largest_remainder(&[1.0, 1.0, 1.0], 4), vec![2, 1, 1]);
    // total = n: everyone 1.
    assert_eq!(largest_remainder(&[0.9, 0.1], 2), vec![1, 1]);
    // Degenerate weights fall back to uniform.
    assert_eq!(largest_remainder(&[0.0, 0.0], 4), vec![2, 2]);
    assert_eq!(largest_remainder(&[f64::NAN, 1.0], 4), vec![2, 2]);
    // The total is always preserved.
    for total in 3..40 {
        let got = largest_remainder(&[0.123, 0.456, 0.421], total);
        assert_eq!(got.iter().sum::<usize>(), total);
    }
}

#[test]
fn logprob_scores_and_weights() {
    let p = PathStats {
        response_logprob_sum: -12.0,
        response_len: 8,
        segment_logprob_sum: -2.0,
        segment_len: 4,
    };
    assert_eq!(path_score(DivPolicy::LogprobWeightedDiv, &p), -12.0);
    assert_eq!(path_score(DivPolicy::InverseLogprobWeightedDiv, &p), -12.0);
    assert_eq!(path_score(DivPolicy::NormLogprobWeightedDiv, &p), -1.5);
    assert_eq!(path_score(DivPolicy::NormInvLogprobWeightedDiv, &p), -1.5);
    assert_eq!(path_score(DivPolicy::NodeLogprobWeightedDiv, &p), -0.5);
    assert_eq!(path_score(DivPolicy::InverseNodeLogprobWeightedDiv, &p), -0.5);
    assert_eq!(path_score(DivPolicy::NodeLogprobWeightedDiv, &PathStats::default()), 0.0);
    // x = [−1, −2, −0.5], T = 2, low-prob encourage: z = [−1, 0, −1.5].
    let w = logprob_weights(&[-1.0, -2.0, -0.5], false, 2.0);
    let want = [0.291_76, 0.481_03, 0.227_21];
    for (a, b) in w.iter().zip(want) {
        assert!((a - b).abs() < 1e-4, "{w:?}");
    }
    // High-prob encourage.
    let w = logprob_weights(&[-1.0, -2.0, -0.5], true, 2.0);
    let want = [0.345_95, 0.209_83, 0.444_22];
    for (a, b) in w.iter().zip(want) {
        assert!((a - b).abs() < 1e-4, "{w:?}");
    }
    // Sum policy over whole responses: x = [−12, −4] (T = 1): z = [0, −8] → nearly all to path 0.
    let paths = [
        PathStats { response_logprob_sum: -12.0, response_len: 12, ..PathStats::default() },
        PathStats { response_logprob_sum: -4.0, response_len: 4, ..PathStats::default() },
    ];
    assert_eq!(split_budget(DivPolicy::LogprobWeightedDiv, 6, &paths, 1.0), vec![5, 1]);
    assert_eq!(split_budget(DivPolicy::InverseLogprobWeightedDiv, 6, &paths, 1.0), vec![1, 5]);
    // Mean policy: x = [−1, −1] → even.
    assert_eq!(split_budget(DivPolicy::NormLogprobWeightedDiv, 6, &paths, 1.0), vec![3, 3]);
    assert_eq!(split_budget(DivPolicy::FixedAvg, 7, &paths, 1.0), vec![3, 4]);
}

#[test]
fn initial_fanout_fixed_random_and_token_mode() {
    let mut c = TreeConfig::with_shape(4, 4, 2, 16);
    let mut rng = SchedRng::for_query(0, 0);
    let before = rng.clone();
    assert_eq!(initial_fanout(&c, 16, &mut rng), 2);
    assert_eq!(rng, before, "fixed init draws nothing");
    // max <= b: off.
    c.tree_random_first_div_max = Some(2);
    assert_eq!(initial_fanout(&c, 16, &mut rng), 2);
    c.tree_random_first_div_max = Some(8);
    let draws: Vec<usize> = (0..400).map(|_| initial_fanout(&c, 16, &mut rng)).collect();
    assert_eq!(*draws.iter().min().unwrap(), 2);
    assert_eq!(*draws.iter().max().unwrap(), 8);
    // Capped at the bound.
    assert!((0..100).all(|_| initial_fanout(&c, 5, &mut rng) <= 5));
    assert_eq!(token_mode_upper(16, 4, 20), 16);
    assert_eq!(token_mode_upper(16, 4, 2), 4);
    assert_eq!(token_mode_upper(16, 4, 9), 9);
}

#[test]
fn seed_derivation_is_stable() {
    // SplitMix64 reference values (Vigna's splitmix64.c with state 0 → first output).
    assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    let mut r = SchedRng::from_state(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    // Pinned keys: a change here breaks every recorded replay.
    assert_eq!(BranchKey::root(1, 0).bits(), BranchKey::from_path(1, 0, &[]).bits());
    assert_eq!(BranchKey::root(1, 0).child(2).child(0), BranchKey::from_path(1, 0, &[2, 0]));
    assert_ne!(BranchKey::from_path(1, 0, &[1, 0]), BranchKey::from_path(1, 0, &[0, 1]));
    assert_ne!(BranchKey::from_path(1, 0, &[0]), BranchKey::from_path(1, 1, &[0]));
    assert_ne!(BranchKey::from_path(1, 0, &[0]), BranchKey::from_path(2, 0, &[0]));
    let u = BranchKey::from_path(1, 0, &[0]).uniform(5);
    assert!((0.0..1.0).contains(&u));
    assert_eq!(unit_f64(u64::MAX), 1.0 - f64::EPSILON / 2.0);
    assert!(unit_f32(u64::MAX) < 1.0);
    assert_eq!(unit_f64(0), 0.0);
    // Uniform ints are unbiased enough to hit both ends, and shuffles are permutations.
    let mut r = SchedRng::for_query(5, 5);
    let mut v: Vec<u32> = (0..20).collect();
    r.shuffle(&mut v);
    let mut s = v.clone();
    s.sort_unstable();
    assert_eq!(s, (0..20).collect::<Vec<_>>());
    assert_eq!(r.uniform_int(7, 7), 7);
    assert_eq!(r.uniform_int(9, 3), 9);
}
