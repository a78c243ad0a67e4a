//! The per-token clipped loss: clip masks on hand-made ratios, the literal formula as an oracle,
//! finite differences, the on-policy identity, aggregation weights, micro-batching, KL k3.

use treepo_trainer::rl::loss::{K3_MAX, kl_k3, ratio};
use treepo_trainer::rl::{
    ClipConfig, ClipRegion, KlPenalty, LossAggregation, LossStats, PolicyLossConfig, RlError,
    SequenceTokens, clipped_token_loss, per_leaf_loss, sequence_loss,
};

const CLIP: ClipConfig =
    ClipConfig { clip_ratio_low: 0.2, clip_ratio_high: 0.28, clip_ratio_c: Some(10.0) };

/// The formula of docs/treepo.md §3.1, written literally: max(−Aρ, −A·clip(ρ)), then min(·, −A·c) for A < 0.
fn literal_loss(rho: f64, a: f64, clip: &ClipConfig) -> f64 {
    let clipped = rho.clamp(1.0 - clip.clip_ratio_low, 1.0 + clip.clip_ratio_high);
    let l_clip = (-a * rho).max(-a * clipped);
    match clip.clip_ratio_c {
        Some(c) if a < 0.0 => l_clip.min(-a * c),
        _ => l_clip,
    }
}

#[test]
fn clip_masks_on_hand_made_ratios() {
    use ClipRegion::*;
    let no_dual = ClipConfig { clip_ratio_c: None, ..CLIP };
    // (ρ, A, region with dual clip c = 10, region without dual clip)
    let cases = [
        (0.5, 1.0, Unclipped, Unclipped),
        (0.9, 1.0, Unclipped, Unclipped),
        (1.2, 1.0, Unclipped, Unclipped),
        (1.5, 1.0, ClippedHigh, ClippedHigh),
        (20.0, 1.0, ClippedHigh, ClippedHigh),
        (0.5, -1.0, ClippedLow, ClippedLow),
        (0.9, -1.0, Unclipped, Unclipped),
        (1.5, -1.0, Unclipped, Unclipped),
        (9.5, -1.0, Unclipped, Unclipped),
        (20.0, -1.0, DualClipped, Unclipped),
        (0.5, 0.0, Unclipped, Unclipped),
        (20.0, 0.0, Unclipped, Unclipped),
    ];
    let w = 0.25;
    for (rho, a, with_dual, without_dual) in cases {
        let logp_old = -2.0;
        let logp = logp_old + f64::ln(rho);
        for (clip, region) in [(CLIP, with_dual), (no_dual, without_dual)] {
            let t = clipped_token_loss(logp, logp_old, a, w, &clip);
            assert_eq!(t.region, region, "ρ = {rho}, A = {a}, c = {:?}", clip.clip_ratio_c);
            let r = t.ratio;
            assert!((r - rho).abs() < 1e-12);
            let want_grad = if region == Unclipped { -w * a * r } else { 0.0 };
            assert_eq!(t.dloss_dlogp, want_grad, "ρ = {rho}, A = {a}");
            assert!((t.loss - w * literal_loss(r, a, &clip)).abs() < 1e-12);
        }
    }
}

#[test]
fn loss_equals_the_literal_formula_on_a_grid() {
    let no_dual = ClipConfig { clip_ratio_c: None, ..CLIP };
    for clip in [CLIP, no_dual, ClipConfig { clip_ratio_low: 0.0, clip_ratio_high: 0.0, ..CLIP }] {
        for i in -300..=300 {
            let log_ratio = i as f64 * 0.01 + 0.003;
            for a in [-2.5, -0.3, 0.0, 0.4, 1.7] {
                let t = clipped_token_loss(log_ratio - 1.0, -1.0, a, 1.0, &clip);
                let want = literal_loss(log_ratio.exp(), a, &clip);
                assert!((t.loss - want).abs() <= 1e-12 * want.abs().max(1.0), "{log_ratio} {a}");
            }
        }
    }
}

/// True when `rho` is within `margin` (relative) of a kink of the clipped loss.
fn near_kink(rho: f64, clip: &ClipConfig, margin: f64) -> bool {
    let mut kinks = vec![1.0 - clip.clip_ratio_low, 1.0 + clip.clip_ratio_high];
    kinks.extend(clip.clip_ratio_c);
    kinks.iter().any(|k| (rho / k - 1.0).abs() < margin)
}

#[test]
fn gradient_matches_central_differences() {
    let h = 1e-6;
    let cfg =
        PolicyLossConfig { kl: Some(KlPenalty { coef: 0.05 }), ..PolicyLossConfig::default() };
    let mut checked = 0;
    for i in 0..400 {
        let log_ratio = -3.0 + i as f64 * 0.0151;
        let rho = log_ratio.exp();
        if near_kink(rho, &cfg.clip, 1e-4) {
            continue;
        }
        for a in [-1.3, -0.2, 0.0, 0.6, 2.1] {
            let (logp_old, logp_ref, w) = (-1.7, -1.5 + 0.3 * (i as f64).sin(), 0.37);
            let loss = |logp: f64| {
                let seq = SequenceTokens {
                    logp: &[logp],
                    logp_old: &[logp_old],
                    advantages: &[a],
                    logp_ref: Some(&[logp_ref]),
                    entropy: None,
                };
                sequence_loss(&seq, w, &cfg).unwrap()
            };
            let x = logp_old + log_ratio;
            let fd = (loss(x + h).stats.total() - loss(x - h).stats.total()) / (2.0 * h);
            let analytic = loss(x).dloss_dlogp[0];
            assert!(
                (fd - analytic).abs() <= 1e-6 * analytic.abs().max(1.0),
                "log ratio {log_ratio}, A {a}: fd {fd} vs analytic {analytic}"
            );
            checked += 1;
        }
    }
    assert!(checked > 1800, "only {checked} points checked");
}

#[test]
fn log_ratio_clamp_is_flat() {
    // Beyond ±20 the clamped ratio does not move: derivative 0, in the loss too.
    let r = ratio(25.0, 0.0);
    assert_eq!((r.value, r.derivative), (20f64.exp(), 0.0));
    let r = ratio(-25.0, 0.0);
    assert_eq!((r.value, r.derivative), ((-20f64).exp(), 0.0));
    let no_dual = ClipConfig { clip_ratio_c: None, ..CLIP };
    let t = clipped_token_loss(25.0, 0.0, -1.0, 1.0, &no_dual);
    assert_eq!((t.region, t.dloss_dlogp), (ClipRegion::Unclipped, 0.0));
    assert_eq!(t.loss, 20f64.exp());
}

#[test]
fn on_policy_gradient_is_the_plain_policy_gradient() {
    // ρ = 1 on every token: dL/dlogπ = −w·A exactly, the gradient of −Σ w·A·logπ; the KL term
    // vanishes when the reference equals the policy.
    let logp = [-0.3, -2.0, -1.1, -0.05, -4.0];
    let adv = [0.8, 0.8, -1.2, -1.2, -1.2];
    let adv2 = [0.0, 0.0, 0.0];
    let seqs = [
        SequenceTokens {
            logp: &logp[..2],
            logp_old: &logp[..2],
            advantages: &adv[..2],
            logp_ref: Some(&logp[..2]),
            entropy: None,
        },
        SequenceTokens {
            logp: &logp[2..],
            logp_old: &logp[2..],
            advantages: &adv[2..],
            logp_ref: Some(&logp[2..]),
            entropy: None,
        },
        SequenceTokens {
            logp: &logp[..3],
            logp_old: &logp[..3],
            advantages: &adv2,
            logp_ref: Some(&logp[..3]),
            entropy: None,
        },
    ];
    for aggregation in [
        LossAggregation::TokenMean,
        LossAggregation::SeqMeanTokenMean,
        LossAggregation::SeqMeanTokenSumNorm { constant: 7.0 },
    ] {
        let cfg = PolicyLossConfig {
            aggregation,
            kl: Some(KlPenalty { coef: 0.1 }),
            ..PolicyLossConfig::default()
        };
        let out = per_leaf_loss(&seqs, &cfg).unwrap();
        let weights = aggregation.sequence_weights(&[2, 3, 3]).unwrap();
        for (s, seq) in seqs.iter().enumerate() {
            for (t, &a) in seq.advantages.iter().enumerate() {
                assert_eq!(out.dloss_dlogp[s][t], -weights[s] * a, "{aggregation:?} seq {s}");
            }
        }
        assert_eq!(out.stats.clip_fractions(), (0.0, 0.0, 0.0));
        assert_eq!(out.stats.kl_loss, 0.0);
        assert_eq!(out.stats.ppo_kl(), 0.0);
    }
}

#[test]
fn aggregation_weights_sum_correctly() {
    let lens = [3, 1, 0, 4];
    let total = |w: &[f64]| -> f64 { w.iter().zip(&lens).map(|(w, &l)| w * l as f64).sum() };
    let tm = LossAggregation::TokenMean.sequence_weights(&lens).unwrap();
    assert_eq!(tm, vec![0.125; 4]);
    assert!((total(&tm) - 1.0).abs() < 1e-15);
    let sm = LossAggregation::SeqMeanTokenMean.sequence_weights(&lens).unwrap();
    assert_eq!(sm, vec![1.0 / 9.0, 1.0 / 3.0, 0.0, 1.0 / 12.0]);
    assert!((total(&sm) - 1.0).abs() < 1e-15);
    let sn = LossAggregation::SeqMeanTokenSumNorm { constant: 16.0 }.sequence_weights(&lens);
    assert!((total(&sn.unwrap()) - 0.5).abs() < 1e-15);
    assert!(LossAggregation::TokenMean.sequence_weights(&[0, 0]).is_err());
    assert!(LossAggregation::SeqMeanTokenMean.sequence_weights(&[]).is_err());
    let bad = LossAggregation::SeqMeanTokenSumNorm { constant: 0.0 };
    assert!(matches!(bad.sequence_weights(&lens), Err(RlError::InvalidConfig(_))));
}

#[test]
fn micro_batches_merge_to_the_mini_batch() {
    let lp = [-1.0, -0.5, -2.0, -0.1, -0.7, -3.0];
    let old = [-1.1, -0.2, -2.5, -0.1, -0.2, -1.0];
    let adv = [1.0, 1.0, -0.5, -0.5, 2.0, -1.0];
    let seq = |r: std::ops::Range<usize>| SequenceTokens {
        logp: &lp[r.clone()],
        logp_old: &old[r.clone()],
        advantages: &adv[r],
        logp_ref: None,
        entropy: None,
    };
    let seqs = [seq(0..2), seq(2..4), seq(4..6)];
    let cfg = PolicyLossConfig {
        aggregation: LossAggregation::SeqMeanTokenMean,
        ..PolicyLossConfig::default()
    };
    let whole = per_leaf_loss(&seqs, &cfg).unwrap();
    let weights = cfg.aggregation.sequence_weights(&[2, 2, 2]).unwrap();
    let mut merged = LossStats::default();
    for (s, w) in seqs.iter().zip(&weights).rev() {
        merged.merge(&sequence_loss(s, *w, &cfg).unwrap().stats);
    }
    assert!((merged.total() - whole.stats.total()).abs() < 1e-15);
    assert_eq!(merged.num_tokens, 6);
    assert_eq!(merged.clip_fractions(), whole.stats.clip_fractions());
    // Token 2: A < 0, ρ = e^0.5 ≈ 1.65 unclipped; token 5: A < 0, ρ = e^-2 clipped low;
    // token 4: A > 0, ρ = e^-0.5 unclipped; none clipped high.
    assert_eq!((merged.clipped_low, merged.clipped_high, merged.dual_clipped), (1, 0, 0));
    let ppo_kl = old.iter().zip(&lp).map(|(o, l)| o - l).sum::<f64>() / 6.0;
    assert!((whole.stats.ppo_kl() - ppo_kl).abs() < 1e-15);
}

#[test]
fn kl_k3_values_and_clamps() {
    let k = kl_k3(-1.0, -1.3);
    let d: f64 = -0.3;
    assert!((k.value - (d.exp() - d - 1.0)).abs() < 1e-15);
    assert!((k.dvalue_dlogp - (1.0 - d.exp())).abs() < 1e-15);
    assert_eq!(kl_k3(-2.0, -2.0).value, 0.0);
    // logπ_ref − logπ = −15: k3 = e^-15 + 14 > 10, clamped, flat.
    let k = kl_k3(0.0, -15.0);
    assert_eq!((k.value, k.dvalue_dlogp), (K3_MAX, 0.0));
    let k = kl_k3(-30.0, 0.0);
    assert_eq!((k.value, k.dvalue_dlogp), (K3_MAX, 0.0));
}

#[test]
fn entropy_bonus_lowers_the_loss_without_touching_dlogp() {
    let seq = SequenceTokens {
        logp: &[-1.0, -2.0],
        logp_old: &[-1.0, -2.0],
        advantages: &[0.5, 0.5],
        logp_ref: None,
        entropy: Some(&[1.5, 0.5]),
    };
    let cfg = PolicyLossConfig { entropy_coef: 0.01, ..PolicyLossConfig::default() };
    let out = sequence_loss(&seq, 0.5, &cfg).unwrap();
    assert!((out.stats.entropy_loss + 0.01 * 0.5 * 2.0).abs() < 1e-15);
    assert_eq!(out.dloss_dlogp, vec![-0.25, -0.25]);
}

#[test]
fn bad_input_is_an_error() {
    let cfg = PolicyLossConfig::default();
    let ok = SequenceTokens {
        logp: &[-1.0, -2.0],
        logp_old: &[-1.0, -2.0],
        advantages: &[0.5, 0.5],
        logp_ref: None,
        entropy: None,
    };
    assert!(sequence_loss(&ok, 1.0, &cfg).is_ok());
    let short = SequenceTokens { advantages: &[0.5], ..ok };
    assert!(matches!(sequence_loss(&short, 1.0, &cfg), Err(RlError::LengthMismatch { .. })));
    let nan = SequenceTokens { logp: &[f64::NAN, -2.0], ..ok };
    assert!(matches!(sequence_loss(&nan, 1.0, &cfg), Err(RlError::NonFinite { .. })));
    let with_kl = PolicyLossConfig { kl: Some(KlPenalty::default()), ..cfg };
    assert!(matches!(sequence_loss(&ok, 1.0, &with_kl), Err(RlError::InvalidConfig(_))));
    for clip in [
        ClipConfig { clip_ratio_low: 1.0, ..CLIP },
        ClipConfig { clip_ratio_high: -0.1, ..CLIP },
        ClipConfig { clip_ratio_c: Some(1.0), ..CLIP },
        ClipConfig { clip_ratio_c: Some(f64::NAN), ..CLIP },
    ] {
        let bad = PolicyLossConfig { clip, ..cfg };
        assert!(matches!(sequence_loss(&ok, 1.0, &bad), Err(RlError::InvalidConfig(_))));
    }
    assert!(per_leaf_loss(&[], &cfg).is_err());
}
