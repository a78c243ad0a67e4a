//! avg@k, unbiased pass@k (against brute-force enumeration), maj@k and mean length.

use treepo_trainer::metrics::{
    MetricsError, avg_at_k, maj_at_k, majority_answer, mean_maj_at_k, mean_pass_at_k,
    mean_response_length, pass_at_k,
};

#[test]
fn avg_at_k_is_mean_of_problem_means() {
    let problems = [vec![true, false, false, false], vec![true, true]];
    assert_eq!(avg_at_k(&problems).unwrap(), (0.25 + 1.0) / 2.0);
    assert!(matches!(avg_at_k::<Vec<bool>>(&[]), Err(MetricsError::Empty { .. })));
    assert!(matches!(avg_at_k(&[Vec::<bool>::new()]), Err(MetricsError::Empty { .. })));
}

/// Fraction of the size-k subsets of n samples (c correct) that contain a correct one.
fn brute_force_pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    let (mut hit, mut total) = (0u64, 0u64);
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize != k {
            continue;
        }
        total += 1;
        // Samples 0..c are the correct ones.
        if mask & ((1u32 << c) - 1) != 0 {
            hit += 1;
        }
    }
    hit as f64 / total as f64
}

#[test]
fn pass_at_k_matches_enumeration() {
    for n in 1..=10 {
        for c in 0..=n {
            for k in 1..=n {
                let got = pass_at_k(n, c, k).unwrap();
                let want = brute_force_pass_at_k(n, c, k);
                assert!((got - want).abs() < 1e-12, "n={n} c={c} k={k}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn pass_at_k_pinned_values_and_errors() {
    assert_eq!(pass_at_k(16, 0, 8).unwrap(), 0.0);
    assert_eq!(pass_at_k(16, 9, 8).unwrap(), 1.0);
    // pass@1 = c/n.
    assert!((pass_at_k(16, 4, 1).unwrap() - 0.25).abs() < 1e-15);
    // Large n stays finite and in range (binomials would overflow).
    let p = pass_at_k(10_000, 3, 100).unwrap();
    assert!(p > 0.0 && p < 1.0);
    assert!((mean_pass_at_k(&[(4, 1), (4, 4)], 1).unwrap() - 0.625).abs() < 1e-15);
    for (n, c, k) in [(4, 1, 0), (4, 1, 5), (4, 5, 1)] {
        assert_eq!(pass_at_k(n, c, k), Err(MetricsError::InvalidPassAtK { n, c, k }));
    }
}

#[test]
fn majority_vote_and_tie_break() {
    // "7" twice, "5" twice: tie, "5" occurs first.
    let answers = [None, Some("5"), Some("7"), Some("7"), Some("5"), Some("3")];
    assert_eq!(majority_answer(&answers), Some(1));
    // A clear majority.
    let answers = [Some("5"), Some("7"), Some("7")];
    assert_eq!(majority_answer(&answers), Some(1));
    assert_eq!(majority_answer::<&str>(&[None, None]), None);
}

#[test]
fn maj_at_k_uses_the_majority_answers_correctness() {
    let wrong_majority = [(Some(3), false), (Some(4), true), (Some(3), false)];
    assert!(!maj_at_k(&wrong_majority).unwrap());
    let right_majority = [(Some(4), true), (None, false), (Some(3), false), (Some(4), true)];
    assert!(maj_at_k(&right_majority).unwrap());
    assert!(!maj_at_k(&[(None::<u32>, false)]).unwrap());
    let problems = vec![wrong_majority.to_vec(), right_majority.to_vec()];
    assert_eq!(mean_maj_at_k(&problems).unwrap(), 0.5);
    assert!(maj_at_k::<u32>(&[]).is_err());
}

#[test]
fn mean_length() {
    assert_eq!(mean_response_length(&[10, 20, 33]).unwrap(), 21.0);
    assert!(mean_response_length(&[]).is_err());
}
