//! Tree-packed training equals per-leaf training exactly: same loss statistics and the same
//! parameter gradients on random trees, with clipping active on some tokens; the on-policy
//! first step is the plain policy gradient.

use crate::common::{per_leaf_batch, random_tree, tiny_config, trainer};
use treepo_kernels::Device;
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_trainer::model::ModelType;
use treepo_trainer::rl::{ClipConfig, LossAggregation, PolicyLossConfig};
use treepo_trainer::train::{OptimConfig, TrainBatch};

fn loss_config(aggregation: LossAggregation) -> PolicyLossConfig {
    PolicyLossConfig { clip: ClipConfig::default(), aggregation, kl: None, entropy_coef: 0.0 }
}

#[test]
fn packed_gradients_equal_per_leaf_gradients() {
    let dev = Device::cpu();
    for (seed, agg) in [
        (1u64, LossAggregation::TokenMean),
        (2, LossAggregation::SeqMeanTokenMean),
        (3, LossAggregation::SeqMeanTokenSumNorm { constant: 16.0 }),
    ] {
        let mut rng = Rng::new(seed);
        let trees = vec![random_tree(&mut rng, 11, 3, 4), random_tree(&mut rng, 11, 4, 3)];
        let packed = TrainBatch::from_trees(&trees).unwrap();
        let flat = per_leaf_batch(&trees);
        assert!(
            packed.len() < flat.len(),
            "packing shares prefixes: {} vs {}",
            packed.len(),
            flat.len()
        );
        assert_eq!(packed.leaf_tokens(), flat.leaf_tokens());
        // One advantage per leaf, broadcast over its tokens.
        let adv: Vec<Vec<f64>> =
            packed.leaf_targets.iter().map(|t| vec![rng.normal(); t.len()]).collect();
        let mut tr = trainer(&dev, tiny_config(false, ModelType::Qwen2), 9, OptimConfig::default());
        // Old log-probs away from the current ones so the ratios leave the clip window.
        let lp_packed = tr.logprobs(&packed, 1.0).unwrap().logp;
        let old_packed: Vec<f32> =
            lp_packed.iter().map(|&l| l + (rng.normal() * 0.4) as f32).collect();
        // The same old log-prob per (leaf, position) in the flat layout.
        let mut old_flat = vec![0f32; flat.num_targets()];
        for (lp, lf) in packed.leaf_targets.iter().zip(&flat.leaf_targets) {
            for (&kp, &kf) in lp.iter().zip(lf) {
                old_flat[kf] = old_packed[kp];
            }
        }
        let cfg = loss_config(agg);
        let (gp, _, sp, _) = tr.rl_gradient(&packed, &adv, &old_packed, &cfg, 1.0).unwrap();
        let (gf, _, sf, _) = tr.rl_gradient(&flat, &adv, &old_flat, &cfg, 1.0).unwrap();
        assert!(
            sp.clipped_low + sp.clipped_high + sp.dual_clipped > 0,
            "some tokens must clip: {sp:?}"
        );
        assert_eq!(
            (sp.num_tokens, sp.clipped_low, sp.clipped_high, sp.dual_clipped),
            (sf.num_tokens, sf.clipped_low, sf.clipped_high, sf.dual_clipped)
        );
        assert!(
            (sp.pg_loss - sf.pg_loss).abs() <= 1e-5 * sf.pg_loss.abs().max(1.0),
            "{} vs {}",
            sp.pg_loss,
            sf.pg_loss
        );
        let mut grads = Vec::new();
        for (batch, g) in [(&packed, &gp), (&flat, &gf)] {
            tr.optim.zero_grad(&dev).unwrap();
            tr.accumulate(batch, g, None, 1.0).unwrap();
            grads.push(dev.download(&tr.optim.grads).unwrap());
        }
        let want: Vec<f64> = grads[1].iter().map(|&g| g as f64).collect();
        let scale = want.iter().fold(0f64, |m, g| m.max(g.abs()));
        let err = assert_close(
            &format!("packed vs per-leaf gradients ({agg:?})"),
            &grads[0],
            &want,
            Tol { atol: 2e-5 * scale, rtol: 1e-4 },
        );
        eprintln!(
            "{agg:?}: {} packed vs {} flat tokens, max grad error {err:e} of {scale:e}",
            packed.len(),
            flat.len()
        );
    }
}

#[test]
fn on_policy_step_is_the_plain_policy_gradient() {
    let dev = Device::cpu();
    let mut rng = Rng::new(4);
    let trees = vec![random_tree(&mut rng, 11, 3, 3)];
    let batch = TrainBatch::from_trees(&trees).unwrap();
    let adv: Vec<Vec<f64>> =
        batch.leaf_targets.iter().map(|t| vec![rng.normal(); t.len()]).collect();
    let mut tr = trainer(&dev, tiny_config(true, ModelType::Llama), 3, OptimConfig::default());
    let old = tr.logprobs(&batch, 1.0).unwrap().logp;
    let (g, _, stats, _) =
        tr.rl_gradient(&batch, &adv, &old, &loss_config(LossAggregation::TokenMean), 1.0).unwrap();
    assert_eq!(stats.clipped_low + stats.clipped_high + stats.dual_clipped, 0);
    // REINFORCE with token-mean weights: dL/dlogπ_k = −Σ_{leaves through k} A / N.
    let n = batch.leaf_tokens() as f64;
    let mut want = vec![0f64; batch.num_targets()];
    for (t, a) in batch.leaf_targets.iter().zip(&adv) {
        for (&k, &ak) in t.iter().zip(a) {
            want[k] -= ak / n;
        }
    }
    assert_close("on-policy dL/dlogπ", &g, &want, Tol { atol: 1e-7, rtol: 1e-6 });
}

#[test]
fn non_finite_gradients_stop_the_step_before_the_update() {
    let dev = Device::cpu();
    let mut rng = Rng::new(8);
    let trees = vec![random_tree(&mut rng, 11, 3, 2)];
    let batch = TrainBatch::from_trees(&trees).unwrap();
    let mut tr = trainer(&dev, tiny_config(false, ModelType::Qwen2), 1, OptimConfig::default());
    let mut p = tr.model.params_host().unwrap();
    let i = tr.model.layout().get("model.layers.1.mlp.down_proj.weight").unwrap().range.start;
    p[i] = f32::NAN;
    dev.write(tr.model.params_mut(), &p).unwrap();
    let err = tr.sft_step(&batch).unwrap_err().to_string();
    assert!(err.contains("not finite") && err.contains("before the optimizer"), "{err}");
    let after = tr.model.params_host().unwrap();
    assert!(after.iter().zip(&p).all(|(a, b)| a.to_bits() == b.to_bits()), "weights changed");
    assert_eq!(tr.optim.steps(), 0);
    // A NaN that only reaches the gradients is caught per tensor, by name.
    p[i] = 0.0;
    dev.write(tr.model.params_mut(), &p).unwrap();
    let mut g = vec![0f32; batch.num_targets()];
    g[0] = 1.0;
    tr.optim.zero_grad(&dev).unwrap();
    tr.accumulate(&batch, &g, None, 1.0).unwrap();
    let mut grads = dev.download(&tr.optim.grads).unwrap();
    let k = tr.model.layout().get("model.norm.weight").unwrap().range.start;
    grads[k] = f32::INFINITY;
    dev.write(&mut tr.optim.grads, &grads).unwrap();
    let err = tr.optim.step(&mut tr.model).unwrap_err().to_string();
    assert!(err.contains("gradient of `model.norm.weight`"), "{err}");
    let g_bad = vec![f32::NAN; batch.num_targets()];
    assert!(
        tr.accumulate(&batch, &g_bad, None, 1.0)
            .unwrap_err()
            .to_string()
            .contains("loss gradient of target 0")
    );
}
