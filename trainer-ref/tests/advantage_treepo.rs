//! TreePO advantages against docs/treepo.md §2.1 and its worked example.

use treepo_trainer::rl::advantage::{
    SubgroupAggregation, SubgroupRejection, TreepoOptions, Whitening,
    tree_reinforce_plus_plus_baseline, treepo_raw_advantages, treepo_subgroup_terms,
};
use treepo_trainer::rl::{
    AdvantageConfig, Advantages, EdgeStats, LeafRecord, RlError, RolloutTopology,
    compute_advantages,
};

fn leaf(query: usize, path: &[u32], reward: f64, num_tokens: usize) -> LeafRecord {
    LeafRecord { query, path: path.to_vec(), reward, num_tokens }
}

/// The paper's Figure 3 tree: leaves a, b, c11, c12, c21, c22, c23, c3 (one token each).
fn worked_example() -> Vec<LeafRecord> {
    vec![
        leaf(0, &[1], -1.0, 1),
        leaf(0, &[2], 1.0, 1),
        leaf(0, &[3, 4, 5], -1.0, 1),
        leaf(0, &[3, 4, 6], -1.0, 1),
        leaf(0, &[3, 7, 8], 1.0, 1),
        leaf(0, &[3, 7, 9], 1.0, 1),
        leaf(0, &[3, 7, 10], -1.0, 1),
        leaf(0, &[3, 11], -1.0, 1),
    ]
}

fn assert_4dp(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 5e-5, "index {i}: got {g:.6}, want {w:.4} (all: {got:?})");
    }
}

#[test]
fn worked_example_terms() {
    let terms = treepo_subgroup_terms(&worked_example(), &TreepoOptions::default()).unwrap();
    let as_pairs = |i: usize| -> Vec<(usize, f64, usize)> {
        terms[i].iter().map(|t| (t.depth, t.value, t.size)).collect()
    };
    assert_eq!(as_pairs(0), vec![(0, -0.75, 8)]);
    let c11 = as_pairs(2);
    assert_eq!(c11.iter().map(|t| (t.0, t.2)).collect::<Vec<_>>(), vec![(0, 8), (1, 6), (2, 2)]);
    assert_4dp(&c11.iter().map(|t| t.1).collect::<Vec<_>>(), &[-0.75, -0.6667, 0.0]);
    let c23 = as_pairs(6);
    assert_eq!(c23.iter().map(|t| (t.0, t.2)).collect::<Vec<_>>(), vec![(0, 8), (1, 6), (2, 3)]);
    assert_4dp(&c23.iter().map(|t| t.1).collect::<Vec<_>>(), &[-0.75, -0.6667, -1.3333]);
    let c3 = as_pairs(7);
    assert_eq!(c3.iter().map(|t| (t.0, t.2)).collect::<Vec<_>>(), vec![(0, 8), (1, 6)]);
}

#[test]
fn worked_example_average() {
    let raw = treepo_raw_advantages(&worked_example(), &TreepoOptions::default()).unwrap();
    assert_4dp(&raw, &[-0.75, 1.25, -0.4722, -0.4722, 1.0833, 1.0833, -0.9167, -0.7083]);
}

#[test]
fn worked_example_whitened() {
    let adv =
        tree_reinforce_plus_plus_baseline(&worked_example(), &TreepoOptions::default()).unwrap();
    assert_4dp(&adv, &[-0.8060, 1.3091, -0.5122, -0.5122, 1.1328, 1.1328, -0.9823, -0.7619]);
}

/// Scale-only whitening divides by the same σ as centring but keeps 0 at 0: the worked example's
/// raw averages over σ, where σ is read off the pinned centred values
/// (`(b − a)_centred = (b − a)_raw / σ`); and a query whose leaves all agree stays at 0 while a
/// mixed query in the same batch gets non-zero values.
#[test]
fn scale_only_whitening_keeps_zero_at_zero() {
    let opts = TreepoOptions { whitening: Whitening::ScaleOnly, ..TreepoOptions::default() };
    let adv = tree_reinforce_plus_plus_baseline(&worked_example(), &opts).unwrap();
    let sigma = (1.25 - -0.75) / (1.3091 - -0.8060);
    let raw = [-0.75, 1.25, -0.4722, -0.4722, 1.0833, 1.0833, -0.9167, -0.7083];
    let want: Vec<f64> = raw.iter().map(|r| r / sigma).collect();
    for (i, (g, w)) in adv.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 5e-4, "leaf {i}: got {g:.5}, want {w:.5}");
    }
    // Query 1: four correct leaves, each 10 tokens; query 0 mixed with short leaves.
    let mut leaves = vec![
        leaf(0, &[1], 1.0, 2),
        leaf(0, &[2], -1.0, 2),
        leaf(0, &[3], -1.0, 2),
        leaf(0, &[4], 1.0, 12),
    ];
    leaves.extend((0..4).map(|i| leaf(1, &[10 + i], 1.0, 10)));
    let scaled = tree_reinforce_plus_plus_baseline(&leaves, &opts).unwrap();
    assert!(scaled[4..].iter().all(|&a| a == 0.0), "uniform query stays at 0: {scaled:?}");
    assert!(scaled[..4].iter().all(|&a| a != 0.0), "{scaled:?}");
    // Centring, by contrast, moves the uniform query off 0 (the token mean is not 0 here).
    let centred = tree_reinforce_plus_plus_baseline(&leaves, &TreepoOptions::default()).unwrap();
    assert!(centred[4..].iter().all(|&a| a.abs() > 0.1), "{centred:?}");
}

#[test]
fn worked_example_group_size_weighting() {
    let opts =
        TreepoOptions { aggregation: SubgroupAggregation::GroupSize, ..TreepoOptions::default() };
    let raw = treepo_raw_advantages(&worked_example(), &opts).unwrap();
    assert_4dp(&raw, &[-0.75, 1.25, -0.625, -0.625, 1.1765, 1.1765, -0.8235, -0.7143]);
}

#[test]
fn subgroup_std_rejection_drops_uniform_subgroups() {
    // c11/c12's depth-2 subgroup {-1, -1} has zero std: rejected, leaving two terms.
    let opts =
        TreepoOptions { rejection: SubgroupRejection::RejectZeroStd, ..TreepoOptions::default() };
    let raw = treepo_raw_advantages(&worked_example(), &opts).unwrap();
    let c11 = (-0.75 + -2.0 / 3.0) / 2.0;
    assert_4dp(&raw, &[-0.75, 1.25, c11, c11, 1.0833, 1.0833, -0.9167, -0.7083]);
}

#[test]
fn root_term_kept_even_with_identical_rewards() {
    let leaves = vec![leaf(0, &[1], 1.0, 1), leaf(0, &[2], 1.0, 1)];
    let opts =
        TreepoOptions { rejection: SubgroupRejection::RejectZeroStd, ..TreepoOptions::default() };
    let terms = treepo_subgroup_terms(&leaves, &opts).unwrap();
    assert_eq!(terms[0].len(), 1);
    assert_eq!(terms[0][0].value, 0.0);
}

#[test]
fn single_child_node_counted_twice() {
    // 1 -> 2 (single child) -> {3, 4}; plus a sibling leaf 5 under the root.
    let leaves =
        vec![leaf(0, &[1, 2, 3], 1.0, 1), leaf(0, &[1, 2, 4], -1.0, 1), leaf(0, &[5], -1.0, 1)];
    let terms = treepo_subgroup_terms(&leaves, &TreepoOptions::default()).unwrap();
    let depths: Vec<(usize, usize)> = terms[0].iter().map(|t| (t.depth, t.size)).collect();
    assert_eq!(depths, vec![(0, 3), (1, 2), (2, 2)]);
    let raw = treepo_raw_advantages(&leaves, &TreepoOptions::default()).unwrap();
    let root_term = 1.0 - (-1.0 / 3.0);
    assert!((raw[0] - (root_term + 1.0 + 1.0) / 3.0).abs() < 1e-15);
}

#[test]
fn whitening_is_token_weighted_and_batch_wide() {
    // Two queries; the first leaf has 3 tokens. Raw values: q0: +1, -1; q1: +0.5, -0.5.
    let leaves = vec![
        leaf(0, &[1], 1.0, 3),
        leaf(0, &[2], -1.0, 1),
        leaf(7, &[1], 1.0, 1),
        leaf(7, &[2], 0.0, 1),
    ];
    let adv = tree_reinforce_plus_plus_baseline(&leaves, &TreepoOptions::default()).unwrap();
    let x = [1.0, -1.0, 0.5, -0.5];
    let n = [3.0, 1.0, 1.0, 1.0];
    let mean = (3.0 - 1.0 + 0.5 - 0.5) / 6.0;
    let var: f64 = x.iter().zip(&n).map(|(x, n)| n * (x - mean) * (x - mean)).sum::<f64>() / 5.0;
    for (a, x) in adv.iter().zip(&x) {
        assert!((a - (x - mean) / (var + 1e-8).sqrt()).abs() < 1e-12);
    }
}

#[test]
fn one_token_batch_whitens_to_zero() {
    let leaves = vec![leaf(0, &[1], 1.0, 1), leaf(0, &[2], -1.0, 0)];
    let adv = tree_reinforce_plus_plus_baseline(&leaves, &TreepoOptions::default()).unwrap();
    assert_eq!(adv[0], 0.0);
}

#[test]
fn bad_input_is_an_error() {
    let opts = TreepoOptions::default();
    assert_eq!(
        tree_reinforce_plus_plus_baseline(&[], &opts),
        Err(RlError::Empty { what: "leaves" })
    );
    let nan = vec![leaf(0, &[1], f64::NAN, 1)];
    assert!(matches!(
        tree_reinforce_plus_plus_baseline(&nan, &opts),
        Err(RlError::NonFinite { .. })
    ));
    let dup = vec![leaf(0, &[1, 2], 1.0, 1), leaf(0, &[1, 2], 0.0, 1)];
    assert!(matches!(tree_reinforce_plus_plus_baseline(&dup, &opts), Err(RlError::InvalidTree(_))));
    let no_tokens = vec![leaf(0, &[1], 1.0, 0), leaf(0, &[2], 0.0, 0)];
    assert!(matches!(
        tree_reinforce_plus_plus_baseline(&no_tokens, &opts),
        Err(RlError::Empty { .. })
    ));
}

#[test]
fn dispatch_from_topology_matches_leaf_records() {
    // The worked example as a topology: 0 = root; node ids as in the leaf paths.
    let mut parents = vec![None; 12];
    for (child, parent) in [(1, 0), (2, 0), (3, 0), (4, 3), (5, 4), (6, 4), (7, 3), (8, 7), (9, 7)]
    {
        parents[child] = Some(parent);
    }
    parents[10] = Some(7);
    parents[11] = Some(3);
    let mut rewards = vec![None; 12];
    for (node, r) in [(1, -1.0), (2, 1.0), (5, -1.0), (6, -1.0), (8, 1.0), (9, 1.0), (10, -1.0)] {
        rewards[node] = Some(r);
    }
    rewards[11] = Some(-1.0);
    // One token per leaf (as in the example): internal edges carry no tokens.
    let edges = rewards
        .iter()
        .map(|r| EdgeStats { num_tokens: usize::from(r.is_some()), ..EdgeStats::default() })
        .collect();
    let topo = RolloutTopology::new(parents, edges, rewards).unwrap();
    let Advantages::PerLeaf { leaves, values } =
        compute_advantages(&AdvantageConfig::default(), &topo).unwrap()
    else {
        panic!("TreePO is leaf-level");
    };
    assert_eq!(leaves, vec![1, 2, 5, 6, 8, 9, 10, 11]);
    // Leaf order by node id: a, b, c11, c12, c21, c22, c23, c3 — the worked example's order.
    assert_4dp(&values, &[-0.8060, 1.3091, -0.5122, -0.5122, 1.1328, 1.1328, -0.9823, -0.7619]);
}

#[test]
fn leaf_on_an_inner_node_is_rejected() {
    // Leaf A ends at node 3, leaf B continues below it (3/4): node 3 has a child, so A is not a
    // leaf of the tree (the sampler never produces this; issue 13). A typed error names both.
    let leaves = vec![leaf(0, &[3], 1.0, 1), leaf(0, &[3, 4], -1.0, 1), leaf(0, &[5], -1.0, 1)];
    match treepo_subgroup_terms(&leaves, &TreepoOptions::default()) {
        Err(RlError::InvalidTree(msg)) => {
            assert!(
                msg.contains("leaf 0 of query 0 has path [3], a prefix of leaf 1's path [3, 4]")
            )
        }
        other => panic!("{other:?}"),
    }
}
