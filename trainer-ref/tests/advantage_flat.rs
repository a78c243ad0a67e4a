//! GRPO, Dr.GRPO, RLOO and REINFORCE++ on hand-computed groups.

use treepo_trainer::rl::advantage::{
    GRPO_EPS, dr_grpo, grpo, reinforce_pp_baseline, rloo, whiten_token_weighted,
};
use treepo_trainer::rl::{
    AdvantageConfig, AdvantageEstimator, LeafRecord, compute_leaf_advantages,
};

fn group(query: usize, rewards: &[f64]) -> Vec<LeafRecord> {
    rewards
        .iter()
        .enumerate()
        .map(|(i, &reward)| LeafRecord { query, path: vec![i as u32], reward, num_tokens: 2 })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
    }
}

#[test]
fn grpo_hand_computed() {
    // Rewards 1, 0, 0, 1: mean 0.5, unbiased std sqrt(1/3).
    let leaves = group(0, &[1.0, 0.0, 0.0, 1.0]);
    let s = (1.0f64 / 3.0).sqrt() + GRPO_EPS;
    assert_close(&grpo(&leaves).unwrap(), &[0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s]);
}

#[test]
fn grpo_identical_rewards_give_zero() {
    assert_close(&grpo(&group(0, &[1.0, 1.0, 1.0])).unwrap(), &[0.0, 0.0, 0.0]);
}

#[test]
fn dr_grpo_hand_computed() {
    assert_close(
        &dr_grpo(&group(0, &[1.0, 0.0, 0.0])).unwrap(),
        &[2.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
    );
}

#[test]
fn rloo_hand_computed() {
    // Leave-one-out means: (0+0)/2, (1+0)/2, (1+0)/2.
    assert_close(&rloo(&group(0, &[1.0, 0.0, 0.0])).unwrap(), &[1.0, -0.5, -0.5]);
}

#[test]
fn size_one_groups_give_zero() {
    let leaves = group(3, &[1.0]);
    assert_eq!(grpo(&leaves).unwrap(), vec![0.0]);
    assert_eq!(dr_grpo(&leaves).unwrap(), vec![0.0]);
    assert_eq!(rloo(&leaves).unwrap(), vec![0.0]);
}

#[test]
fn groups_are_independent_and_keep_input_order() {
    // Interleave two queries; each is centred on its own mean.
    let mut leaves = group(5, &[1.0, 0.0]);
    leaves.insert(1, LeafRecord { query: 2, path: vec![0], reward: 3.0, num_tokens: 1 });
    leaves.push(LeafRecord { query: 2, path: vec![1], reward: 1.0, num_tokens: 1 });
    assert_close(&dr_grpo(&leaves).unwrap(), &[0.5, 1.0, -0.5, -1.0]);
}

#[test]
fn reinforce_pp_is_centred_then_whitened() {
    let mut leaves = group(0, &[1.0, 0.0, 0.0]);
    leaves[0].num_tokens = 5;
    let centred = [2.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0];
    let want = whiten_token_weighted(&centred, &[5, 2, 2]).unwrap();
    assert_close(&reinforce_pp_baseline(&leaves).unwrap(), &want);
    // Whitened values have token-weighted mean 0.
    let mean: f64 = want.iter().zip([5.0, 2.0, 2.0]).map(|(a, n)| a * n).sum::<f64>() / 9.0;
    assert!(mean.abs() < 1e-12);
}

#[test]
fn dispatch_matches_direct_calls() {
    let leaves = group(0, &[1.0, 0.0, 0.0, 1.0, 1.0]);
    let run = |estimator| {
        compute_leaf_advantages(&AdvantageConfig { estimator, ..Default::default() }, &leaves)
    };
    assert_eq!(run(AdvantageEstimator::Grpo).unwrap(), grpo(&leaves).unwrap());
    assert_eq!(run(AdvantageEstimator::DrGrpo).unwrap(), dr_grpo(&leaves).unwrap());
    assert_eq!(run(AdvantageEstimator::Rloo).unwrap(), rloo(&leaves).unwrap());
    assert_eq!(
        run(AdvantageEstimator::ReinforcePp).unwrap(),
        reinforce_pp_baseline(&leaves).unwrap()
    );
    assert!(run(AdvantageEstimator::TreeRl).is_err());
}
