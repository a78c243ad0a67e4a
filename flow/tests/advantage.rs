//! Advantages of hand-built rollouts against hand calculations: TreeGRPO's softmax backup on a
//! two-prompt `k = 2, w = 2` tree, its equal-log-prob case (plain means), GRPO on flat groups,
//! and the per-prompt z-score sum of several rewards.

use crate::common::{Errors, rollouts, transition};
use treepo_flow::advantage::{combine_rewards, flat_advantages, tree_advantages, tree_options};
use treepo_flow::rollout::Rollouts;

const EPS: f64 = 1e-6;

/// Two prompts, `k = 2`, window `1..3`, transitions in the sampler's creation order: the four
/// first-window-step transitions (0, 1 of prompt 0; 2, 3 of prompt 1), then two children of
/// each (4, 5 ← 0; 6, 7 ← 1; 8, 9 ← 2; 10, 11 ← 3).
fn tree(logp: [f64; 12]) -> Rollouts {
    let parents = [
        None,
        None,
        None,
        None,
        Some(0),
        Some(0),
        Some(1),
        Some(1),
        Some(2),
        Some(2),
        Some(3),
        Some(3),
    ];
    let prompts = [0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1];
    let transitions = (0..12)
        .map(|i| transition(prompts[i], if i < 4 { 1 } else { 2 }, parents[i], logp[i]))
        .collect();
    rollouts(
        &[2, 5],
        transitions,
        &[
            (0, &[0, 4]),
            (0, &[0, 5]),
            (0, &[1, 6]),
            (0, &[1, 7]),
            (1, &[2, 8]),
            (1, &[2, 9]),
            (1, &[3, 10]),
            (1, &[3, 11]),
        ],
    )
}

/// The leaf rewards of [`tree`] and their z-scores, by hand.
///
/// Prompt 0: r = (1, 0, 3, 2), μ = 1.5, r − μ = (−0.5, −1.5, 1.5, 0.5), Σ(r − μ)² = 5,
/// σ_Bessel = √(5/3). Prompt 1: r = (−1, 0.5, 0.5, 2), μ = 0.5, r − μ = (−1.5, 0, 0, 1.5),
/// Σ(r − μ)² = 4.5, σ_Bessel = √1.5.
fn tree_rewards() -> ([f64; 8], [f64; 8]) {
    let r = [1.0, 0.0, 3.0, 2.0, -1.0, 0.5, 0.5, 2.0];
    let (s0, s1) = ((5.0f64 / 3.0).sqrt() + EPS, 1.5f64.sqrt() + EPS);
    let z = [-0.5 / s0, -1.5 / s0, 1.5 / s0, 0.5 / s0, -1.5 / s1, 0.0, 0.0, 1.5 / s1];
    (r, z)
}

fn compare(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: {} values for {}", got.len(), want.len());
    let mut err = Errors::new(what, 1e-12, 1e-12);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        err.add(g, w, format!("transition/leaf {i}"));
    }
    err.check();
}

#[test]
fn tree_backup_matches_a_hand_calculation() {
    let ln2 = 2f64.ln();
    let (ln3, ln4) = (3f64.ln(), 4f64.ln());
    // Child log-probs chosen so that the softmax weights are simple:
    //   (0, 1):   (−ln 4, 0)        → (1/5, 4/5)
    //   (2, 3):   (0.3, 0.3 + ln 2) → (1/3, 2/3)
    //   (4, 5):   (0, ln 3)         → (1/4, 3/4)
    //   (6, 7):   (−1.2, −1.2)      → (1/2, 1/2)
    //   (8, 9):   (5 + ln 4, 5)     → (4/5, 1/5)
    //   (10, 11): (−0.3, 0.7)       → (1/(1 + e), e/(1 + e))
    let logp = [-ln4, 0.0, 0.3, 0.3 + ln2, 0.0, ln3, -1.2, -1.2, 5.0 + ln4, 5.0, -0.3, 0.7];
    let ro = tree(logp);
    let (rewards, z) = tree_rewards();
    let e = std::f64::consts::E;
    // Leaf edges take their leaf's z; an inner edge the weighted sum of its children's.
    let a4 = z[0];
    let a5 = z[1];
    let a6 = z[2];
    let a7 = z[3];
    let a8 = z[4];
    let a9 = z[5];
    let a10 = z[6];
    let a11 = z[7];
    let a0 = 0.25 * a4 + 0.75 * a5;
    let a1 = 0.5 * a6 + 0.5 * a7;
    let a2 = 0.8 * a8 + 0.2 * a9;
    let a3 = a10 / (1.0 + e) + e * a11 / (1.0 + e);
    let want = [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11];
    let got = tree_advantages(&ro, &rewards, &tree_options()).unwrap();
    compare("tree backup, softmax weights", &got, &want);
    // The window root's value (1/5·A0 + 4/5·A1 for prompt 0) is not an edge: nothing trains it,
    // so no 13th value.
    assert_eq!(got.len(), 12);
}

#[test]
fn tree_backup_with_equal_log_probs_is_the_plain_mean() {
    let ro = tree([-3.7; 12]);
    let (rewards, z) = tree_rewards();
    let a0 = (z[0] + z[1]) / 2.0;
    let a1 = (z[2] + z[3]) / 2.0;
    let a2 = (z[4] + z[5]) / 2.0;
    let a3 = (z[6] + z[7]) / 2.0;
    let want = [a0, a1, a2, a3, z[0], z[1], z[2], z[3], z[4], z[5], z[6], z[7]];
    let got = tree_advantages(&ro, &rewards, &tree_options()).unwrap();
    compare("tree backup, equal log-probs", &got, &want);
    // A prompt whose leaves all score the same gets zeros; the other prompt is unchanged.
    let same = [1.0, 0.0, 3.0, 2.0, 0.25, 0.25, 0.25, 0.25];
    let got = tree_advantages(&ro, &same, &tree_options()).unwrap();
    let want = [a0, a1, 0.0, 0.0, z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0, 0.0];
    compare("tree backup, prompt 1 all equal", &got, &want);
}

#[test]
fn flat_advantages_are_grpo_per_trajectory() {
    // Two prompts, G = 3, T = 2: step-0 transitions 0..6 (prompt 0: 0, 1, 2), step-1
    // transitions 6..12 continuing them.
    let transitions = (0..12)
        .map(|i| transition(i % 6 / 3, i / 6, if i < 6 { None } else { Some(i - 6) }, -1.0))
        .collect();
    let ro = rollouts(
        &[0, 1],
        transitions,
        &[(0, &[0, 6]), (0, &[1, 7]), (0, &[2, 8]), (1, &[3, 9]), (1, &[4, 10]), (1, &[5, 11])],
    );
    // Prompt 0: r = (0, 1, 2), μ = 1, Σ(r − μ)² = 2, σ_Bessel = 1 → (−1, 0, 1)/(1 + ε).
    // Prompt 1: r = (4, 4, 1), μ = 3, r − μ = (1, 1, −2), Σ = 6, σ_Bessel = √3.
    let rewards = [0.0, 1.0, 2.0, 4.0, 4.0, 1.0];
    let s1 = 3f64.sqrt() + EPS;
    let leaf = [-1.0 / (1.0 + EPS), 0.0, 1.0 / (1.0 + EPS), 1.0 / s1, 1.0 / s1, -2.0 / s1];
    let want: Vec<f64> = (0..12).map(|i| leaf[i % 6]).collect();
    let got = flat_advantages(&ro, &rewards).unwrap();
    compare("flat GRPO", &got, &want);
}

#[test]
fn combine_rewards_sums_per_prompt_z_scores() {
    let ro = tree([0.0; 12]);
    // Reward a: prompt 0 as in `tree_rewards`; prompt 1 all equal → 0.
    let a = vec![1.0, 0.0, 3.0, 2.0, 5.0, 5.0, 5.0, 5.0];
    // Reward b: prompt 0 (0.2, 0.2, 0.8, 0.8): μ = 0.5, r − μ = ±0.3, Σ = 0.36, σ = √0.12;
    // prompt 1 (−1, 1, −1, 1): μ = 0, Σ = 4, σ = √(4/3).
    let b = vec![0.2, 0.2, 0.8, 0.8, -1.0, 1.0, -1.0, 1.0];
    let (sa, sb0, sb1) =
        ((5.0f64 / 3.0).sqrt() + EPS, 0.12f64.sqrt() + EPS, (4.0f64 / 3.0).sqrt() + EPS);
    let za = [-0.5 / sa, -1.5 / sa, 1.5 / sa, 0.5 / sa, 0.0, 0.0, 0.0, 0.0];
    let zb = [
        -0.3 / sb0,
        -0.3 / sb0,
        0.3 / sb0,
        0.3 / sb0,
        -1.0 / sb1,
        1.0 / sb1,
        -1.0 / sb1,
        1.0 / sb1,
    ];
    let want: Vec<f64> = za.iter().zip(&zb).map(|(x, y)| x + y).collect();
    let scores = [a.clone(), b];
    let got = combine_rewards(&ro, &scores, &[1.0, 1.0]).unwrap();
    compare("combine_rewards(a, b), weights (1, 1)", &got, &want);
    // Weights scale each reward's z-scores: 2·za + 0.5·zb; a zero weight drops a reward.
    let want: Vec<f64> = za.iter().zip(&zb).map(|(x, y)| 2.0 * x + 0.5 * y).collect();
    let got = combine_rewards(&ro, &scores, &[2.0, 0.5]).unwrap();
    compare("combine_rewards(a, b), weights (2, 0.5)", &got, &want);
    let got = combine_rewards(&ro, &scores, &[0.0, 1.0]).unwrap();
    compare("combine_rewards(a, b), weights (0, 1)", &got, &zb);
    // One reward: its z-scores; no reward: zeros.
    compare("combine_rewards(a)", &combine_rewards(&ro, &[a], &[1.0]).unwrap(), &za);
    compare("combine_rewards()", &combine_rewards(&ro, &[], &[]).unwrap(), &[0.0; 8]);
}
