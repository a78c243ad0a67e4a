//! Tree-packed loss and gradient == the per-leaf ones, on random trees with clipping active.

use proptest::prelude::*;
use treepo_trainer::rl::packed::packed_token_loss;
use treepo_trainer::rl::{
    ClipConfig, ClipRegion, KlPenalty, LossAggregation, PackedAdvantage, PackedLeaf, PackedTokens,
    PolicyLossConfig, SequenceTokens, clipped_token_loss, pack_advantages, packed_loss,
    per_leaf_loss,
};

/// splitmix64: a tiny deterministic generator so one proptest seed fixes a whole tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A random forest of segments, DFS-free packing (tokens numbered segment by segment), with
/// per-packed-token log-probs and per-leaf-token advantages.
struct Case {
    num_tokens: usize,
    logp: Vec<f64>,
    logp_old: Vec<f64>,
    logp_ref: Vec<f64>,
    entropy: Vec<f64>,
    /// Per leaf: packed token indices (root to leaf) and the advantage at each.
    leaves: Vec<(Vec<usize>, Vec<f64>)>,
}

fn random_case(seed: u64) -> Case {
    let mut rng = Rng(seed);
    let num_segments = 1 + rng.below(24);
    let num_roots = 1 + rng.below(3);
    // Segment s has parent segment parent[s] (< s) or hangs under a query root (None).
    let mut parent = Vec::new();
    let mut tokens_of = Vec::new();
    let mut next_token = 0;
    for s in 0..num_segments {
        let p = if s < num_roots || rng.below(4) == 0 { None } else { Some(rng.below(s)) };
        parent.push(p);
        let len = 1 + rng.below(4);
        tokens_of.push((next_token..next_token + len).collect::<Vec<usize>>());
        next_token += len;
    }
    let num_tokens = next_token;
    let has_child: Vec<bool> = (0..num_segments).map(|s| parent.contains(&Some(s))).collect();
    // Ratios spread over every region: clipped low, unclipped, clipped high, dual clipped and
    // beyond the log-ratio clamp.
    let mut logp = Vec::new();
    let mut logp_old = Vec::new();
    for _ in 0..num_tokens {
        let old = rng.range(-6.0, -0.01);
        let log_ratio = match rng.below(6) {
            0 => rng.range(-1.5, -0.3),
            1 => rng.range(-0.2, 0.2),
            2 => rng.range(0.3, 2.0),
            3 => rng.range(2.4, 4.0),
            4 => rng.range(-25.0, 25.0),
            _ => 0.0,
        };
        logp_old.push(old);
        logp.push(old + log_ratio);
    }
    let logp_ref: Vec<f64> = logp.iter().map(|l| l + rng.range(-3.0, 1.0)).collect();
    let entropy: Vec<f64> = (0..num_tokens).map(|_| rng.range(0.0, 3.0)).collect();
    let per_token_advantages = rng.below(2) == 0;
    let mut leaves = Vec::new();
    for s in (0..num_segments).filter(|&s| !has_child[s]) {
        let mut chain = vec![s];
        while let Some(p) = parent[*chain.last().unwrap_or(&s)] {
            chain.push(p);
        }
        chain.reverse();
        let tokens: Vec<usize> = chain.iter().flat_map(|&c| tokens_of[c].clone()).collect();
        let leaf_adv = match rng.below(5) {
            0 => 0.0,
            _ => rng.range(-2.0, 2.0),
        };
        let adv = tokens
            .iter()
            .map(|_| if per_token_advantages { rng.range(-2.0, 2.0) } else { leaf_adv })
            .collect();
        leaves.push((tokens, adv));
    }
    Case { num_tokens, logp, logp_old, logp_ref, entropy, leaves }
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-12 * scale.max(a.abs()).max(b.abs()) + 1e-300
}

fn check_case(case: &Case, cfg: &PolicyLossConfig) -> Result<(), TestCaseError> {
    let gather = |v: &[f64], toks: &[usize]| -> Vec<f64> { toks.iter().map(|&t| v[t]).collect() };
    let per_leaf_inputs: Vec<[Vec<f64>; 4]> = case
        .leaves
        .iter()
        .map(|(toks, _)| {
            [
                gather(&case.logp, toks),
                gather(&case.logp_old, toks),
                gather(&case.logp_ref, toks),
                gather(&case.entropy, toks),
            ]
        })
        .collect();
    let seqs: Vec<SequenceTokens<'_>> = case
        .leaves
        .iter()
        .zip(&per_leaf_inputs)
        .map(|((_, adv), [lp, old, lr, h])| SequenceTokens {
            logp: lp,
            logp_old: old,
            advantages: adv,
            logp_ref: Some(lr),
            entropy: Some(h),
        })
        .collect();
    let per_leaf = per_leaf_loss(&seqs, cfg).unwrap();

    let lens: Vec<usize> = case.leaves.iter().map(|(t, _)| t.len()).collect();
    let weights = cfg.aggregation.sequence_weights(&lens).unwrap();
    let packed_leaves: Vec<PackedLeaf<'_>> =
        case.leaves.iter().map(|(tokens, advantages)| PackedLeaf { tokens, advantages }).collect();
    let sums = pack_advantages(case.num_tokens, &packed_leaves, &weights).unwrap();
    let packed = packed_loss(
        &PackedTokens {
            logp: &case.logp,
            logp_old: &case.logp_old,
            advantages: &sums,
            logp_ref: Some(&case.logp_ref),
            entropy: Some(&case.entropy),
        },
        cfg,
    )
    .unwrap();

    // Per packed token: the sum of the per-leaf derivatives, and its scale for the tolerance.
    let mut grad = vec![0.0; case.num_tokens];
    let mut scale = vec![0.0; case.num_tokens];
    for ((toks, _), g) in case.leaves.iter().zip(&per_leaf.dloss_dlogp) {
        for (&t, &gt) in toks.iter().zip(g) {
            grad[t] += gt;
            scale[t] += gt.abs();
        }
    }
    for t in 0..case.num_tokens {
        prop_assert!(
            close(packed.dloss_dlogp[t], grad[t], scale[t]),
            "token {t}: packed {} vs per-leaf {}",
            packed.dloss_dlogp[t],
            grad[t]
        );
    }
    // Tolerance scales: the sums of the absolute per-(leaf, token) terms bound the rounding of
    // both summation orders. KL and entropy terms have one sign, so their sums are their scales.
    let (mut pg_scale, mut kl_scale) = (0.0, 0.0);
    for (((toks, adv), seq), w) in case.leaves.iter().zip(&seqs).zip(&weights) {
        for (j, &t) in toks.iter().enumerate() {
            let tok = clipped_token_loss(seq.logp[j], seq.logp_old[j], adv[j], *w, &cfg.clip);
            pg_scale += tok.loss.abs();
            kl_scale += (case.logp_old[t] - case.logp[t]).abs();
        }
    }
    let (p, q) = (&packed.stats, &per_leaf.stats);
    for (name, a, b, scale) in [
        ("pg", p.pg_loss, q.pg_loss, pg_scale),
        ("kl", p.kl_loss, q.kl_loss, q.kl_loss),
        ("entropy", p.entropy_loss, q.entropy_loss, q.entropy_loss),
        ("ppo_kl", p.old_minus_new_logp, q.old_minus_new_logp, kl_scale),
    ] {
        prop_assert!(close(a, b, scale), "{name}: packed {a} vs per-leaf {b}");
    }
    prop_assert_eq!(
        (p.num_tokens, p.clipped_low, p.clipped_high, p.dual_clipped),
        (q.num_tokens, q.clipped_low, q.clipped_high, q.dual_clipped)
    );
    Ok(())
}

fn configs() -> Vec<PolicyLossConfig> {
    let mut out = Vec::new();
    for aggregation in [
        LossAggregation::TokenMean,
        LossAggregation::SeqMeanTokenMean,
        LossAggregation::SeqMeanTokenSumNorm { constant: 13.0 },
    ] {
        for clip_ratio_c in [Some(10.0), Some(3.0), None] {
            out.push(PolicyLossConfig {
                clip: ClipConfig { clip_ratio_c, ..ClipConfig::default() },
                aggregation,
                kl: Some(KlPenalty { coef: 0.01 }),
                entropy_coef: 0.003,
            });
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn packed_equals_per_leaf_on_random_trees(seed in any::<u64>()) {
        let case = random_case(seed);
        for cfg in configs() {
            check_case(&case, &cfg)?;
        }
    }
}

#[test]
fn random_cases_exercise_every_region() {
    // Guard against a generator that never clips: over fixed seeds, every region occurs.
    let mut seen = [false; 4];
    let cfg = PolicyLossConfig::default();
    for seed in 0..64 {
        let case = random_case(seed);
        let lens: Vec<usize> = case.leaves.iter().map(|(t, _)| t.len()).collect();
        let weights = cfg.aggregation.sequence_weights(&lens).unwrap();
        let leaves: Vec<PackedLeaf<'_>> = case
            .leaves
            .iter()
            .map(|(tokens, advantages)| PackedLeaf { tokens, advantages })
            .collect();
        let sums = pack_advantages(case.num_tokens, &leaves, &weights).unwrap();
        for ((lp, old), sum) in case.logp.iter().zip(&case.logp_old).zip(&sums) {
            let l = packed_token_loss(*lp, *old, sum, &cfg.clip);
            if sum.n_pos > 0 {
                seen[usize::from(l.positive == ClipRegion::ClippedHigh)] = true;
            }
            if sum.n_neg > 0 {
                match l.negative {
                    ClipRegion::ClippedLow => seen[2] = true,
                    ClipRegion::DualClipped => seen[3] = true,
                    _ => seen[0] = true,
                }
            }
        }
    }
    assert_eq!(seen, [true; 4]);
}

#[test]
fn shared_token_with_opposite_advantages() {
    // One token on two leaves, A = +1 and −1, unit weights, ρ = 20 (> c = 10): the positive leaf is
    // clipped high (−1.28), the negative one dual clipped (+10); no gradient flows.
    let adv = PackedAdvantage {
        s_pos: 1.0,
        s_neg: -1.0,
        weight_sum: 2.0,
        n_pos: 1,
        n_neg: 1,
        multiplicity: 2,
    };
    let clip = ClipConfig::default();
    let l = packed_token_loss(20f64.ln(), 0.0, &adv, &clip);
    assert!((l.loss - (-1.28 + 10.0)).abs() < 1e-12);
    assert_eq!(l.dloss_dlogp, 0.0);
    assert_eq!((l.positive, l.negative), (ClipRegion::ClippedHigh, ClipRegion::DualClipped));
    // ρ = 1.1: both unclipped, the gradients cancel: −ρ·(1 − 1) = 0; with weights 3 and 1 they
    // do not: −ρ·(3·1 + 1·(−1)).
    let l = packed_token_loss(1.1f64.ln(), 0.0, &adv, &clip);
    assert!(l.dloss_dlogp.abs() < 1e-15);
    let weighted = PackedAdvantage { s_pos: 3.0, weight_sum: 4.0, ..adv };
    let l = packed_token_loss(1.1f64.ln(), 0.0, &weighted, &clip);
    assert!((l.dloss_dlogp + 1.1 * 2.0).abs() < 1e-12);
}

#[test]
fn pack_advantages_rejects_bad_input() {
    let tokens = [0, 5];
    let advantages = [1.0, 1.0];
    let leaf = PackedLeaf { tokens: &tokens, advantages: &advantages };
    assert!(pack_advantages(3, &[leaf], &[1.0]).is_err());
    assert!(pack_advantages(6, &[leaf], &[]).is_err());
    assert!(pack_advantages(6, &[leaf], &[f64::INFINITY]).is_err());
    let short = PackedLeaf { tokens: &tokens, advantages: &advantages[..1] };
    assert!(pack_advantages(6, &[short], &[1.0]).is_err());
    let nan = [PackedAdvantage { s_pos: f64::NAN, ..PackedAdvantage::default() }];
    let tokens = PackedTokens {
        logp: &[-1.0],
        logp_old: &[-1.0],
        advantages: &nan,
        logp_ref: None,
        entropy: None,
    };
    assert!(packed_loss(&tokens, &PolicyLossConfig::default()).is_err());
}
