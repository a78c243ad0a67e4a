//! Logit processing and the categorical draw: edge cases and CDF boundaries.

use treepo_sampler::logits::{
    LogitsError, apply_temperature, apply_top_k, apply_top_p, argmax, entropy, logprob_of,
    process_logits, sample_categorical, sample_row, sample_rows,
};
use treepo_sampler::{EntropyMode, SamplingParams};

const NEG: f32 = f32::NEG_INFINITY;

fn kept(logits: &[f32]) -> Vec<usize> {
    (0..logits.len()).filter(|&i| logits[i].is_finite()).collect()
}

#[test]
fn temperature() {
    let mut l = vec![1.0, 2.0, NEG];
    apply_temperature(&mut l, 0.5).unwrap();
    assert_eq!(l, vec![2.0, 4.0, NEG]);
    let mut l = vec![1.0, 2.0];
    apply_temperature(&mut l, 1.0).unwrap();
    assert_eq!(l, vec![1.0, 2.0]);
    // 0 = greedy: only the argmax survives, ties to the lowest id.
    let mut l = vec![3.0, 5.0, 5.0, 1.0];
    apply_temperature(&mut l, 0.0).unwrap();
    assert_eq!(kept(&l), vec![1]);
    // Saturates instead of overflowing.
    let mut l = vec![3e38, -3e38];
    apply_temperature(&mut l, 1e-3).unwrap();
    assert_eq!(l, vec![f32::MAX, -f32::MAX]);
    assert!(matches!(apply_temperature(&mut l, -1.0), Err(LogitsError::InvalidTemperature(_))));
    assert!(matches!(apply_temperature(&mut l, f32::NAN), Err(LogitsError::InvalidTemperature(_))));
}

#[test]
fn top_k() {
    let mut l = vec![1.0, 4.0, 3.0, 2.0];
    apply_top_k(&mut l, 0); // off
    assert_eq!(kept(&l), vec![0, 1, 2, 3]);
    apply_top_k(&mut l, 2);
    assert_eq!(kept(&l), vec![1, 2]);
    // Ties with the k-th are kept.
    let mut l = vec![1.0, 3.0, 3.0, 3.0, 0.0];
    apply_top_k(&mut l, 2);
    assert_eq!(kept(&l), vec![1, 2, 3]);
    // k >= unmasked count is a no-op; masked entries do not count.
    let mut l = vec![NEG, 1.0, NEG, 2.0];
    apply_top_k(&mut l, 2);
    assert_eq!(kept(&l), vec![1, 3]);
    apply_top_k(&mut l, 1);
    assert_eq!(kept(&l), vec![3]);
}

#[test]
fn top_p() {
    // probs of [ln 0.5, ln 0.3, ln 0.2]: p = 0.5 keeps the top, 0.6 the top two, 1.0 all.
    let base = vec![0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
    let mut l = base.clone();
    apply_top_p(&mut l, 0.5).unwrap();
    assert_eq!(kept(&l), vec![0]);
    let mut l = base.clone();
    apply_top_p(&mut l, 0.6).unwrap();
    assert_eq!(kept(&l), vec![0, 1]);
    let mut l = base.clone();
    apply_top_p(&mut l, 1.0).unwrap();
    assert_eq!(kept(&l), vec![0, 1, 2]);
    // The top token is always kept, however small p.
    let mut l = base.clone();
    apply_top_p(&mut l, 1e-9).unwrap();
    assert_eq!(kept(&l), vec![0]);
    // Ties with the last kept token are kept together.
    let mut l = vec![0.0, 1.0, 1.0, -5.0];
    apply_top_p(&mut l, 0.3).unwrap();
    assert_eq!(kept(&l), vec![1, 2]);
    for bad in [0.0, -0.1, 1.5, f32::NAN] {
        assert!(matches!(apply_top_p(&mut l, bad), Err(LogitsError::InvalidTopP(_))));
    }
}

#[test]
fn processing_order_and_validation() {
    let p = SamplingParams { temperature: 2.0, top_k: 3, top_p: 0.9 };
    let mut l = vec![4.0, 2.0, 0.0, -2.0, -4.0];
    process_logits(&mut l, &p).unwrap();
    assert_eq!(l[3..], [NEG, NEG]);
    assert_eq!(process_logits(&mut [], &p), Err(LogitsError::Empty));
    assert_eq!(process_logits(&mut [NEG, NEG], &p), Err(LogitsError::AllMasked));
    assert!(matches!(
        process_logits(&mut [0.0, f32::NAN], &p),
        Err(LogitsError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        process_logits(&mut [f32::INFINITY], &p),
        Err(LogitsError::NonFinite { index: 0, .. })
    ));
    assert_eq!(argmax(&[NEG, NEG]), None);
}

#[test]
fn categorical_draw_at_cdf_boundaries() {
    // probs [0.25, 0.25, 0.5] → CDF 0.25, 0.5, 1.0: u < 0.25 → 0, [0.25, 0.5) → 1, ≥ 0.5 → 2.
    let l = vec![0.0, 0.0, 2f32.ln()];
    assert_eq!(sample_categorical(&l, 0.0).unwrap(), 0);
    assert_eq!(sample_categorical(&l, 0.2499).unwrap(), 0);
    assert_eq!(sample_categorical(&l, 0.25).unwrap(), 1);
    assert_eq!(sample_categorical(&l, 0.4999).unwrap(), 1);
    assert_eq!(sample_categorical(&l, 0.5).unwrap(), 2);
    assert_eq!(sample_categorical(&l, 1.0 - f64::EPSILON).unwrap(), 2);
    assert!(matches!(sample_categorical(&l, 1.0), Err(LogitsError::InvalidUniform(_))));
    assert!(matches!(sample_categorical(&l, -0.1), Err(LogitsError::InvalidUniform(_))));
    // Masked tokens are never drawn, at either end of the range.
    let l = vec![NEG, 0.0, NEG, 0.0, NEG];
    for u in [0.0, 0.4999999, 0.5, 0.9999999999] {
        let t = sample_categorical(&l, u).unwrap();
        assert!(t == 1 || t == 3, "u {u} gave {t}");
    }
    // All -inf except one.
    let l = vec![NEG, NEG, 7.0, NEG];
    for u in [0.0, 0.5, 0.999999] {
        assert_eq!(sample_categorical(&l, u).unwrap(), 2);
    }
    // Huge logits: no overflow, the dominant token wins.
    let l = vec![1e30, -1e30, 1e30 - 1e24];
    assert_eq!(sample_categorical(&l, 0.3).unwrap(), 0);
    // A token whose weight underflows to 0 (x − max < −745) is never drawn either.
    let l = vec![0.0, -1000.0];
    assert_eq!(sample_categorical(&l, 0.9999999999).unwrap(), 0);
}

#[test]
fn logprob_and_entropy_of_the_processed_distribution() {
    let l = vec![0.0, 0.0, 2f32.ln(), NEG];
    assert!((logprob_of(&l, 2).unwrap() - 0.5f32.ln()).abs() < 1e-6);
    assert_eq!(logprob_of(&l, 3).unwrap(), NEG);
    let h = entropy(&l).unwrap();
    let want = -(0.25f32 * 0.25f32.ln() * 2.0 + 0.5 * 0.5f32.ln());
    assert!((h - want).abs() < 1e-6);
    assert_eq!(entropy(&[NEG, 3.0]).unwrap(), 0.0);
    // sample_row reports the log-prob after top-k: two equal survivors → ln 0.5.
    let mut row = vec![1.0, 5.0, 5.0, 2.0];
    let s = sample_row(
        &mut row,
        &SamplingParams { temperature: 1.0, top_k: 2, top_p: 1.0 },
        0.7,
        EntropyMode::Compute,
    )
    .unwrap();
    assert_eq!(s.token, 2);
    assert!((s.logprob - 0.5f32.ln()).abs() < 1e-6);
    assert!((s.entropy.unwrap() - 2f32.ln()).abs() < 1e-6);
    // Greedy: log-prob 0.
    let mut row = vec![1.0, 5.0, 2.0];
    let s = sample_row(
        &mut row,
        &SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0 },
        0.99,
        EntropyMode::Skip,
    )
    .unwrap();
    assert_eq!((s.token, s.logprob, s.entropy), (1, 0.0, None));
}

#[test]
fn batched_rows_equal_single_rows() {
    let p = SamplingParams { temperature: 0.8, top_k: 3, top_p: 0.95 };
    let rows = [[0.1f32, 2.0, -1.0, 0.5], [3.0, 3.0, NEG, 0.0], [-2.0, -1.0, 0.0, 1.0]];
    let us = [0.1, 0.6, 0.95];
    let mut flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let batched = sample_rows(&mut flat, 4, &p, &us, EntropyMode::Compute).unwrap();
    for ((row, u), b) in rows.iter().zip(us).zip(&batched) {
        let mut r = row.to_vec();
        assert_eq!(&sample_row(&mut r, &p, u, EntropyMode::Compute).unwrap(), b);
    }
    assert!(matches!(
        sample_rows(&mut flat, 3, &p, &us, EntropyMode::Skip),
        Err(LogitsError::Shape(_))
    ));
}
