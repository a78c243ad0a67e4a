//! Hostile input to the advantage estimators (issue 13, item 10): every bad input is a typed
//! error naming what is wrong, never a panic, and no estimator returns NaN or ±inf.

use treepo_trainer::rl::advantage::{
    BackupWeights, LogProbReduce, TreeGrpoOptions, TreepoOptions, Whitening, spo_tree, tree_grpo,
    tree_reinforce_plus_plus_baseline, tree_rl, treepo_subgroup_terms, whiten_token_weighted,
    whiten_token_weighted_with,
};
use treepo_trainer::rl::{
    AdvantageConfig, AdvantageEstimator, EdgeStats, LeafRecord, MAX_ABS_REWARD, RlError,
    RolloutTopology, TopologyBuilder, compute_leaf_advantages,
};

fn leaf(query: usize, path: &[u32], reward: f64, num_tokens: usize) -> LeafRecord {
    LeafRecord { query, path: path.to_vec(), reward, num_tokens }
}

const LEAF_ESTIMATORS: [AdvantageEstimator; 5] = [
    AdvantageEstimator::Treepo,
    AdvantageEstimator::Grpo,
    AdvantageEstimator::DrGrpo,
    AdvantageEstimator::Rloo,
    AdvantageEstimator::ReinforcePp,
];

/// One query per entry of `groups`, root → one leaf per reward.
fn flat_topology(groups: &[&[f64]]) -> Result<RolloutTopology, RlError> {
    let mut t = TopologyBuilder::new();
    for rewards in groups {
        let root = t.add_root();
        for &r in *rewards {
            t.add_leaf(root, EdgeStats::default(), r);
        }
    }
    t.build()
}

fn all_finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}

#[test]
fn tree_grpo_rejects_zero_eps_naming_the_field() {
    // A one-leaf query and an all-equal query: with ε = 0 both were 0/0 = NaN.
    let topo = flat_topology(&[&[1.0], &[0.5, 0.5]]).unwrap();
    for eps in [0.0, -1e-6, f64::NAN, f64::INFINITY] {
        let opts = TreeGrpoOptions { eps, ..TreeGrpoOptions::default() };
        match tree_grpo(&topo, &opts) {
            Err(RlError::InvalidConfig(msg)) => assert!(msg.contains("tree_grpo.eps"), "{msg}"),
            other => panic!("eps = {eps}: {other:?}"),
        }
    }
}

#[test]
fn tree_grpo_equal_rewards_give_exactly_zero() {
    // 0.1 + 0.1 + 0.1 = 0.30000000000000004, so μ ≠ 0.1 by one ulp and σ ≈ 1.4e-17: with a small
    // ε the z-score of an all-equal group was ≈ −1 for every leaf instead of 0.
    let topo = flat_topology(&[&[0.1, 0.1, 0.1], &[7.0], &[1.0, 0.0]]).unwrap();
    let opts = TreeGrpoOptions { eps: 1e-300, ..TreeGrpoOptions::default() };
    let adv = tree_grpo(&topo, &opts).unwrap();
    let values: Vec<(usize, f64)> = adv.trained().collect();
    assert_eq!(values.len(), 6);
    for &(node, a) in &values[..4] {
        assert_eq!(a, 0.0, "edge into node {node}");
    }
    assert!((values[4].1 - 1.0).abs() < 1e-12 && (values[5].1 + 1.0).abs() < 1e-12);
}

#[test]
fn treepo_rejects_a_leaf_whose_path_is_a_prefix_of_another() {
    // Leaf 0 ends at node 3, leaf 1 continues below it: node 3 is not a leaf.
    for (a, b) in [(0, 1), (1, 0)] {
        let mut leaves =
            vec![leaf(0, &[5], -1.0, 1), leaf(0, &[5], -1.0, 1), leaf(0, &[6], 0.0, 1)];
        leaves[a] = leaf(0, &[3], 1.0, 1);
        leaves[b] = leaf(0, &[3, 4, 9], -1.0, 1);
        for result in [
            treepo_subgroup_terms(&leaves, &TreepoOptions::default()).map(|_| ()),
            tree_reinforce_plus_plus_baseline(&leaves, &TreepoOptions::default()).map(|_| ()),
        ] {
            match result {
                Err(RlError::InvalidTree(msg)) => {
                    assert!(msg.contains(&format!("leaf {a}")), "{msg}");
                    assert!(msg.contains(&format!("leaf {b}'s path")), "{msg}");
                    assert!(msg.contains("prefix"), "{msg}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // The same paths in different queries are fine, and so is the empty-prefix-free sibling case.
    let ok = vec![leaf(0, &[3], 1.0, 1), leaf(1, &[3, 4], -1.0, 1), leaf(0, &[34], 0.0, 1)];
    assert!(tree_reinforce_plus_plus_baseline(&ok, &TreepoOptions::default()).is_ok());
    // Duplicates keep their message (the Python tests match it) and name both leaves.
    let dup = vec![leaf(0, &[1, 2], 1.0, 1), leaf(0, &[7], 1.0, 1), leaf(0, &[1, 2], 0.0, 1)];
    match tree_reinforce_plus_plus_baseline(&dup, &TreepoOptions::default()) {
        Err(RlError::InvalidTree(msg)) => {
            assert!(msg.contains("leaf 2 of query 0 repeats another leaf's path"), "{msg}");
            assert!(msg.contains("(leaf 0)"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn huge_finite_rewards_are_a_typed_error_in_every_estimator() {
    // Before: Dr.GRPO/RLOO/TreePO/REINFORCE++ overflowed their group sums (NaN), GRPO its
    // squares, TreeGRPO/TreeRL/SPO-tree their sums and differences.
    let huge = [1e308, -1e308, 1.5e300, f64::MAX];
    for &r in &huge {
        let leaves = vec![leaf(0, &[1], r, 3), leaf(0, &[2], -r, 1), leaf(0, &[3], 0.0, 2)];
        for est in LEAF_ESTIMATORS {
            let cfg = AdvantageConfig { estimator: est, ..AdvantageConfig::default() };
            match compute_leaf_advantages(&cfg, &leaves) {
                Err(RlError::TooLarge { what: "leaf reward", index: 0, value, limit }) => {
                    assert_eq!((value, limit), (r, MAX_ABS_REWARD));
                }
                other => panic!("{} with reward {r:e}: {other:?}", est.name()),
            }
        }
        match flat_topology(&[&[r, -r, 0.0]]) {
            Err(RlError::TooLarge { what: "leaf reward", .. }) => {}
            other => panic!("topology with reward {r:e}: {other:?}"),
        }
    }
    // At the limit everything is finite.
    let m = MAX_ABS_REWARD;
    let leaves = vec![leaf(0, &[1], m, 1 << 40), leaf(0, &[2], -m, 1), leaf(0, &[3], m, 7)];
    for est in LEAF_ESTIMATORS {
        let cfg = AdvantageConfig { estimator: est, ..AdvantageConfig::default() };
        let out = compute_leaf_advantages(&cfg, &leaves).unwrap();
        assert!(all_finite(&out), "{}: {out:?}", est.name());
    }
    let topo = flat_topology(&[&[m, -m, m, -m]]).unwrap();
    for adv in
        [tree_grpo(&topo, &TreeGrpoOptions::default()).unwrap(), tree_rl(&topo), spo_tree(&topo)]
    {
        assert!(adv.trained().all(|(_, a)| a.is_finite()), "{adv:?}");
    }
}

#[test]
fn whitening_huge_values_is_finite_and_exact() {
    // Before: k·(x − μ)² overflowed, var = inf and every output was 0.
    let out = whiten_token_weighted(&[1e300, -1e300], &[1, 1]).unwrap();
    let want = std::f64::consts::FRAC_1_SQRT_2;
    assert!((out[0] - want).abs() < 1e-12 && (out[1] + want).abs() < 1e-12, "{out:?}");
    // Scale invariance: the same numbers times 2^-900 (exact) whiten to the same values.
    let big = [f64::MAX, -3e307, 1e300, 5.0];
    let tokens = [3, 1, 2, 5];
    let small: Vec<f64> = big.iter().map(|x| x * 2f64.powi(-900)).collect();
    for shift in [true, false] {
        let a = whiten_token_weighted_with(&big, &tokens, shift).unwrap();
        let b = whiten_token_weighted_with(&small, &tokens, shift).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(x.is_finite() && (x - y).abs() <= 1e-12 * y.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn whitening_token_counts_that_overflow_usize_are_fine() {
    // Before: the token total overflowed usize (a panic with overflow checks on).
    let out = whiten_token_weighted(&[1.0, -1.0], &[usize::MAX, usize::MAX]).unwrap();
    assert!(all_finite(&out) && out[0] > 0.0 && out[1] < 0.0, "{out:?}");
}

#[test]
fn whitening_gives_zero_token_leaves_zero() {
    // One token in the batch (σ = 0): a zero-token leaf's (x − μ)/1e-4 was ±inf for huge values.
    let out = whiten_token_weighted(&[1e308, -1e308, 5.0], &[0, 0, 1]).unwrap();
    assert_eq!(out, vec![0.0, 0.0, 0.0]);
    let leaves = vec![leaf(0, &[1], 1.0, 0), leaf(0, &[2], 0.0, 2), leaf(0, &[3], 1.0, 2)];
    let opts = TreepoOptions { whitening: Whitening::ScaleOnly, ..TreepoOptions::default() };
    assert_eq!(tree_reinforce_plus_plus_baseline(&leaves, &opts).unwrap()[0], 0.0);
}

#[test]
fn tree_grpo_softmax_overflow_is_a_typed_error() {
    // log-prob / temperature = −inf for every child of `mid`: the softmax was
    // (−inf) − (−inf) = NaN, and so was the trained edge into `mid`.
    let mut t = TopologyBuilder::new();
    let root = t.add_root();
    let edge = EdgeStats { old_logprob_sum: -1e308, ..EdgeStats::default() };
    let mid = t.add_node(root, EdgeStats::default());
    t.add_leaf(mid, edge, 1.0);
    t.add_leaf(mid, edge, 0.0);
    t.add_leaf(root, EdgeStats::default(), 0.5);
    let topo = t.build().unwrap();
    let opts = TreeGrpoOptions {
        weights: BackupWeights::Softmax { reduce: LogProbReduce::Sum, temperature: 1e-10 },
        ..TreeGrpoOptions::default()
    };
    match tree_grpo(&topo, &opts) {
        Err(RlError::InvalidConfig(msg)) => assert!(msg.contains("temperature"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn leaf_records_token_overflow_is_a_typed_error() {
    let mut t = TopologyBuilder::new();
    let root = t.add_root();
    let big = EdgeStats { num_tokens: usize::MAX, ..EdgeStats::default() };
    let mid = t.add_node(root, big);
    t.add_leaf(mid, big, 1.0);
    t.add_leaf(root, EdgeStats::default(), 0.0);
    let topo = t.build().unwrap();
    match topo.leaf_records() {
        Err(RlError::InvalidTree(msg)) => assert!(msg.contains("overflow"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

/// Every estimator over a grid of hostile reward/token/option combinations: each call is `Ok`
/// with finite values or a typed error, never a panic or a non-finite value.
#[test]
fn hostile_grid_never_panics_or_returns_non_finite() {
    let specials = [
        0.0,
        -0.0,
        1.0,
        0.1,
        -1e-300,
        5e-324,
        f64::MIN_POSITIVE,
        1e100,
        -1e100,
        1e101,
        1e200,
        -1e308,
        f64::MAX,
        f64::MIN,
        f64::NAN,
        f64::INFINITY,
    ];
    let tokens = [0usize, 1, 2, usize::MAX / 2, usize::MAX];
    let mut tried = 0usize;
    for (i, &a) in specials.iter().enumerate() {
        for &b in &specials[i..] {
            for &k in &tokens {
                let leaves = vec![
                    leaf(0, &[1], a, k),
                    leaf(0, &[2, 4], b, 1),
                    leaf(0, &[2, 5], a, 0),
                    leaf(1, &[3], b, k),
                ];
                for est in LEAF_ESTIMATORS {
                    for whitening in [Whitening::Center, Whitening::ScaleOnly] {
                        let cfg = AdvantageConfig {
                            estimator: est,
                            treepo: TreepoOptions { whitening, ..TreepoOptions::default() },
                            ..AdvantageConfig::default()
                        };
                        tried += 1;
                        if let Ok(out) = compute_leaf_advantages(&cfg, &leaves) {
                            assert!(all_finite(&out), "{} {a:e} {b:e} {k}: {out:?}", est.name());
                        }
                    }
                }
                tried += 1;
                if let Ok(out) = whiten_token_weighted(&[a, b, a], &[k, 1, k]) {
                    assert!(all_finite(&out), "whiten {a:e} {b:e} {k}: {out:?}");
                }
            }
            let Ok(topo) = flat_topology(&[&[a, b, a], &[b]]) else { continue };
            for eps in [1e-6, 5e-324, 1e300] {
                tried += 1;
                let opts = TreeGrpoOptions { eps, ..TreeGrpoOptions::default() };
                let adv = tree_grpo(&topo, &opts).unwrap();
                assert!(adv.trained().all(|(_, v)| v.is_finite()), "{a:e} {b:e} {eps}: {adv:?}");
            }
            tried += 2;
            for adv in [tree_rl(&topo), spo_tree(&topo)] {
                assert!(adv.trained().all(|(_, v)| v.is_finite()), "{a:e} {b:e}: {adv:?}");
            }
        }
    }
    eprintln!("hostile advantage inputs tried: {tried}");
    assert!(tried > 1000);
}
