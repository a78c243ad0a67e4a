//! TreeGRPO, TreeRL and SPO-tree on the test tree of docs/treepo.md §2.3:
//! R → a → {a1[1], a2[0], a3[1]}; R → b → {b1[0], b2 → {b21[1], b22[0]}}.

use treepo_trainer::rl::advantage::{
    BackupWeights, EdgeAdvantages, LogProbReduce, StdKind, TreeGrpoOptions, spo_tree, tree_grpo,
    tree_rl,
};
use treepo_trainer::rl::{
    AdvantageConfig, AdvantageEstimator, Advantages, BranchingWindow, EdgeStats, RlError,
    RolloutTopology, TopologyBuilder, compute_advantages,
};

/// Node ids of the test tree.
struct Ids {
    a: usize,
    b: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    b1: usize,
    b2: usize,
    b21: usize,
    b22: usize,
}

fn test_tree(edge: impl Fn(usize) -> EdgeStats) -> (RolloutTopology, Ids) {
    let mut t = TopologyBuilder::new();
    let root = t.add_root();
    let a = t.add_node(root, edge(1));
    let b = t.add_node(root, edge(2));
    let a1 = t.add_leaf(a, edge(3), 1.0);
    let a2 = t.add_leaf(a, edge(4), 0.0);
    let a3 = t.add_leaf(a, edge(5), 1.0);
    let b1 = t.add_leaf(b, edge(6), 0.0);
    let b2 = t.add_node(b, edge(7));
    let b21 = t.add_leaf(b2, edge(8), 1.0);
    let b22 = t.add_leaf(b2, edge(9), 0.0);
    (t.build().unwrap(), Ids { a, b, a1, a2, a3, b1, b2, b21, b22 })
}

fn check(adv: &EdgeAdvantages, ids: &Ids, want: [f64; 9]) {
    let nodes = [ids.a, ids.b, ids.a1, ids.a2, ids.a3, ids.b1, ids.b2, ids.b21, ids.b22];
    for (node, w) in nodes.iter().zip(want) {
        let got = adv.get(*node).unwrap_or_else(|| panic!("edge {node} not trained"));
        assert!((got - w).abs() < 5e-5, "edge {node}: got {got:.6}, want {w:.4}");
    }
    assert_eq!(adv.get(0), None, "the root has no edge");
}

#[test]
fn tree_grpo_uniform_population() {
    let (topo, ids) = test_tree(|_| EdgeStats::default());
    let adv = tree_grpo(&topo, &TreeGrpoOptions::default()).unwrap();
    check(&adv, &ids, [0.3333, -0.5, 1.0, -1.0, 1.0, -1.0, 0.0, 1.0, -1.0]);
}

#[test]
fn tree_rl_values() {
    let (topo, ids) = test_tree(|_| EdgeStats::default());
    check(
        &tree_rl(&topo),
        &ids,
        [0.1925, -0.1925, 0.8333, -1.1667, 0.8333, -0.8333, 0.1179, 1.0, -1.0],
    );
}

#[test]
fn spo_tree_values() {
    let (topo, ids) = test_tree(|_| EdgeStats::default());
    check(
        &spo_tree(&topo),
        &ids,
        [0.2083, -0.2083, 0.3333, -0.6667, 0.3333, -0.25, 0.25, 0.5, -0.5],
    );
}

#[test]
fn spo_tree_drops_zero_advantage_edges() {
    // root → x → {y[0.1], z[0.1], u[0.1]} and root → v[0.3]: the edges under x have A = 0 exactly.
    let parents = [None, Some(0), Some(1), Some(1), Some(1), Some(0)];
    let rewards = [None, None, Some(0.1), Some(0.1), Some(0.1), Some(0.3)];
    let topo = RolloutTopology::from_parents(&parents, &rewards).unwrap();
    let adv = spo_tree(&topo);
    assert_eq!(adv.as_slice()[2..5], [None, None, None]);
    assert_eq!(adv.trained().map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 5]);
}

#[test]
fn tree_grpo_sample_sigma() {
    // 6 leaves, 3 ones: sample σ = sqrt(1.5/5).
    let (topo, ids) = test_tree(|_| EdgeStats::default());
    let opts = TreeGrpoOptions { std: StdKind::Sample, ..TreeGrpoOptions::default() };
    let z = 0.5 / ((1.5f64 / 5.0).sqrt() + 1e-6);
    let adv = tree_grpo(&topo, &opts).unwrap();
    check(&adv, &ids, [z / 3.0, -z / 2.0, z, -z, z, -z, 0.0, z, -z]);
}

#[test]
fn tree_grpo_softmax_weights() {
    // Old log-prob sums: a1 = −1, a2 = −2, a3 = −3 with 1, 2, 4 tokens; everything else 0.
    let edge = |k: usize| {
        let (lp, tok) = match k {
            3 => (-1.0, 1),
            4 => (-2.0, 2),
            5 => (-3.0, 4),
            _ => (0.0, 1),
        };
        EdgeStats { old_logprob_sum: lp, num_tokens: tok, window: BranchingWindow::Inside }
    };
    let (topo, ids) = test_tree(edge);
    let z1 = 0.5 / (0.5 + 1e-6);
    let z = [z1, -z1, z1];
    for (reduce, temperature, x) in [
        (LogProbReduce::Sum, 1.0, [-1.0, -2.0, -3.0]),
        (LogProbReduce::Sum, 2.0, [-0.5, -1.0, -1.5]),
        (LogProbReduce::Mean, 1.0, [-1.0, -1.0, -0.75]),
    ] {
        let weights = BackupWeights::Softmax { reduce, temperature };
        let opts = TreeGrpoOptions { weights, ..TreeGrpoOptions::default() };
        let adv = tree_grpo(&topo, &opts).unwrap();
        let e: Vec<f64> = x.iter().map(|v: &f64| v.exp()).collect();
        let s: f64 = e.iter().sum();
        let want: f64 = e.iter().zip(z).map(|(e, z)| e / s * z).sum();
        assert!((adv.get(ids.a).unwrap() - want).abs() < 1e-12, "{reduce:?} T={temperature}");
    }
}

#[test]
fn tree_grpo_trains_only_the_branching_window() {
    // Edges into a and b2 are outside the window: no advantage, but b's backup still uses b2.
    let edge = |k: usize| EdgeStats {
        window: if k == 1 || k == 7 { BranchingWindow::Outside } else { BranchingWindow::Inside },
        ..EdgeStats::default()
    };
    let (topo, ids) = test_tree(edge);
    let adv = tree_grpo(&topo, &TreeGrpoOptions::default()).unwrap();
    assert_eq!(adv.get(ids.a), None);
    assert_eq!(adv.get(ids.b2), None);
    assert!((adv.get(ids.b).unwrap() + 0.5).abs() < 5e-5);
    assert_eq!(adv.trained().count(), 7);
}

#[test]
fn tree_grpo_rejects_bad_options() {
    let (topo, _) = test_tree(|_| EdgeStats { num_tokens: 0, ..EdgeStats::default() });
    let softmax = |reduce, temperature| TreeGrpoOptions {
        weights: BackupWeights::Softmax { reduce, temperature },
        ..TreeGrpoOptions::default()
    };
    assert!(matches!(
        tree_grpo(&topo, &softmax(LogProbReduce::Sum, 0.0)),
        Err(RlError::InvalidConfig(_))
    ));
    assert!(matches!(
        tree_grpo(&topo, &softmax(LogProbReduce::Mean, 1.0)),
        Err(RlError::InvalidTree(_))
    ));
}

#[test]
fn dispatch_gives_edge_advantages() {
    let (topo, _) = test_tree(|_| EdgeStats::default());
    for (estimator, want) in [
        (AdvantageEstimator::TreeGrpo, tree_grpo(&topo, &TreeGrpoOptions::default()).unwrap()),
        (AdvantageEstimator::TreeRl, tree_rl(&topo)),
        (AdvantageEstimator::SpoTree, spo_tree(&topo)),
    ] {
        let cfg = AdvantageConfig { estimator, ..AdvantageConfig::default() };
        assert_eq!(compute_advantages(&cfg, &topo).unwrap(), Advantages::PerEdge(want));
    }
}

#[test]
fn malformed_topologies_are_errors() {
    let tree = |parents: &[Option<usize>], rewards: &[Option<f64>]| {
        RolloutTopology::from_parents(parents, rewards)
    };
    // Parent after child.
    assert!(matches!(
        tree(&[None, Some(2), Some(0)], &[None, Some(1.0), None]),
        Err(RlError::InvalidTree(_))
    ));
    // Leaf without reward.
    assert!(matches!(tree(&[None, Some(0)], &[None, None]), Err(RlError::InvalidTree(_))));
    // Reward on an internal node.
    assert!(matches!(
        tree(&[None, Some(0), Some(1)], &[None, Some(1.0), Some(0.0)]),
        Err(RlError::InvalidTree(_))
    ));
    // Root without children, NaN reward, length mismatch, empty.
    assert!(matches!(tree(&[None], &[None]), Err(RlError::InvalidTree(_))));
    assert!(matches!(
        tree(&[None, Some(0)], &[None, Some(f64::NAN)]),
        Err(RlError::NonFinite { .. })
    ));
    assert!(matches!(tree(&[None, Some(0)], &[None]), Err(RlError::LengthMismatch { .. })));
    assert!(matches!(tree(&[], &[]), Err(RlError::Empty { .. })));
}

#[test]
fn leaf_records_from_topology() {
    let edge = |k: usize| EdgeStats { num_tokens: k, ..EdgeStats::default() };
    let (topo, ids) = test_tree(edge);
    let records = topo.leaf_records().unwrap();
    assert_eq!(records.len(), 6);
    let b21 = &records[4];
    assert_eq!(b21.path, vec![ids.b as u32, ids.b2 as u32, ids.b21 as u32]);
    assert_eq!(b21.num_tokens, 2 + 7 + 8);
    assert_eq!((b21.query, b21.reward), (0, 1.0));
}
