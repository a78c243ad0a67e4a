//! Learning-rate schedules, optimizer validation, and batch construction errors.

use treepo_trainer::train::{LrSchedule, OptimConfig, TrainBatch, TreeNodeSpec, TreeSpec};

#[test]
fn schedules_are_pinned() {
    let c = OptimConfig {
        lr: 1.0,
        warmup_steps: 4,
        schedule: LrSchedule::Constant,
        ..OptimConfig::default()
    };
    assert_eq!([1, 2, 4, 5, 100].map(|s| c.lr_at(s)), [0.25, 0.5, 1.0, 1.0, 1.0]);
    let c = OptimConfig {
        lr: 1.0,
        warmup_steps: 0,
        schedule: LrSchedule::Cosine { total_steps: 10, min_lr: 0.0 },
        ..c
    };
    assert!((c.lr_at(5) - 0.5).abs() < 1e-12);
    assert!(c.lr_at(10).abs() < 1e-12 && c.lr_at(20).abs() < 1e-12);
    assert!((c.lr_at(0) - 1.0).abs() < 1e-12);
}

#[test]
fn bad_optimizer_settings_are_named() {
    for (c, field) in [
        (OptimConfig { lr: -1.0, ..OptimConfig::default() }, "lr"),
        (OptimConfig { beta2: 1.0, ..OptimConfig::default() }, "beta2"),
        (OptimConfig { eps: 0.0, ..OptimConfig::default() }, "eps"),
        (OptimConfig { grad_clip: f64::NAN, ..OptimConfig::default() }, "grad_clip"),
        (
            OptimConfig {
                schedule: LrSchedule::Cosine { total_steps: 3, min_lr: -1.0 },
                ..OptimConfig::default()
            },
            "min_lr",
        ),
    ] {
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn batches_share_prefixes_and_reject_bad_trees() {
    let node =
        |parent: Option<usize>, tokens: &[u32]| TreeNodeSpec { parent, tokens: tokens.to_vec() };
    // prompt [1,2] → a [3] → {b [4], c [5,6]}; leaves b and c.
    let t = TreeSpec {
        nodes: vec![
            node(None, &[1, 2]),
            node(Some(0), &[3]),
            node(Some(1), &[4]),
            node(Some(1), &[5, 6]),
        ],
        leaves: vec![2, 3],
    };
    let b = TrainBatch::from_trees(std::slice::from_ref(&t)).unwrap();
    assert_eq!(b.tokens, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(b.positions, vec![0, 1, 2, 3, 3, 4]);
    // Targets grouped by predictor row: row 1 predicts 3; row 2 (the branch point) predicts 4 and 5.
    assert_eq!(b.row_ptr, vec![0, 0, 1, 3, 3, 4, 4]);
    assert_eq!(b.target_tokens, vec![3, 4, 5, 6]);
    assert_eq!(b.leaf_targets, vec![vec![0, 1], vec![0, 2, 3]]);
    assert_eq!(b.leaf_tokens(), 5);
    let bad = |t: TreeSpec| TrainBatch::from_trees(&[t]).unwrap_err().to_string();
    assert!(
        bad(TreeSpec { nodes: vec![node(None, &[])], leaves: vec![] }).contains("prompt is empty")
    );
    assert!(
        bad(TreeSpec { nodes: vec![node(None, &[1]), node(Some(1), &[2])], leaves: vec![1] })
            .contains("later node")
    );
    assert!(
        bad(TreeSpec { nodes: vec![node(None, &[1]), node(Some(0), &[2])], leaves: vec![5] })
            .contains("not a node")
    );
    assert!(
        bad(TreeSpec { nodes: vec![node(None, &[1]), node(Some(0), &[])], leaves: vec![1] })
            .contains("empty response")
    );
    assert!(TrainBatch::from_trees(&[]).unwrap_err().to_string().contains("no trajectories"));
}
