//! The whole model's backward pass against central finite differences (every tensor, both
//! the log-prob and the entropy paths), and every backend's gradients against the CPU's.

use crate::common::{random_tree, tiny_config, trainer};
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, per_backend};
use treepo_trainer::model::ModelType;
use treepo_trainer::train::{OptimConfig, TrainBatch, Trainer};

/// `L = Σ_k c_k·logπ_k + Σ_r e_r·H_r` at temperature `t`.
fn loss(tr: &mut Trainer, batch: &TrainBatch, c: &[f32], e: &[f32], t: f32) -> f64 {
    let lp = tr.logprobs(batch, t).unwrap();
    let mut l: f64 = lp.logp.iter().zip(c).map(|(&a, &b)| a as f64 * b as f64).sum();
    // Per-row entropy: every row with targets reports it once per target; take it once per row.
    for (r, w) in batch.row_ptr.windows(2).enumerate() {
        if w[0] < w[1] {
            l += e[r] as f64 * lp.entropy[w[0] as usize] as f64;
        }
    }
    l
}

fn gradcheck(tied: bool, ty: ModelType, seed: u64) {
    let dev = Device::cpu();
    let cfg = tiny_config(tied, ty);
    let mut tr = trainer(&dev, cfg.clone(), seed, OptimConfig::default());
    let mut rng = Rng::new(seed);
    let trees = vec![random_tree(&mut rng, 11, 3, 3), random_tree(&mut rng, 11, 2, 2)];
    let batch = TrainBatch::from_trees(&trees).unwrap();
    let c: Vec<f32> = (0..batch.num_targets()).map(|_| rng.normal() as f32).collect();
    // Entropy weights only on rows that carry targets (H is reported through them).
    let e: Vec<f32> = (0..batch.len())
        .map(|r| {
            if batch.row_ptr[r] < batch.row_ptr[r + 1] { (rng.normal() * 0.5) as f32 } else { 0.0 }
        })
        .collect();
    let temp = 0.8;
    tr.optim.zero_grad(&dev).unwrap();
    tr.accumulate(&batch, &c, Some(&e), temp).unwrap();
    let grads = dev.download(&tr.optim.grads).unwrap();
    let params = tr.model.params_host().unwrap();
    let layout = tr.model.layout().clone();
    let h = 3e-3f32;
    let mut worst = 0f64;
    for t in &layout.tensors {
        for _ in 0..3 {
            let i = t.range.start + rng.below(t.range.len());
            let mut p = params.clone();
            p[i] = params[i] + h;
            dev.write(tr.model.params_mut(), &p).unwrap();
            let up = loss(&mut tr, &batch, &c, &e, temp);
            p[i] = params[i] - h;
            dev.write(tr.model.params_mut(), &p).unwrap();
            let down = loss(&mut tr, &batch, &c, &e, temp);
            let fd = (up - down) / (2.0 * h as f64);
            let an = grads[i] as f64;
            let err = (fd - an).abs();
            assert!(
                err <= 2e-3 + 3e-2 * fd.abs().max(an.abs()),
                "{} [{i}]: analytic {an} vs finite difference {fd}",
                t.name
            );
            worst = worst.max(err);
        }
    }
    dev.write(tr.model.params_mut(), &params).unwrap();
    eprintln!("gradcheck tied={tied} {ty:?}: worst |analytic - fd| = {worst:e}");
}

#[test]
fn whole_model_matches_finite_differences_qwen2_untied() {
    gradcheck(false, ModelType::Qwen2, 11);
}

#[test]
fn whole_model_matches_finite_differences_llama_tied() {
    gradcheck(true, ModelType::Llama, 12);
}

/// Every backend's gradients equal the CPU's (CUDA on a GPU machine, wgpu on lavapipe here).
fn gradients_match_cpu(dev: &Device) {
    let cfg = tiny_config(false, ModelType::Qwen2);
    let mut rng = Rng::fresh("gradients_match_cpu");
    let trees = vec![random_tree(&mut rng, 11, 3, 3)];
    let batch = TrainBatch::from_trees(&trees).unwrap();
    let c: Vec<f32> = (0..batch.num_targets()).map(|_| rng.normal() as f32).collect();
    let mut grads = Vec::new();
    for d in [Device::cpu(), dev.clone()] {
        let mut tr = trainer(&d, cfg.clone(), 5, OptimConfig::default());
        tr.optim.zero_grad(&d).unwrap();
        tr.accumulate(&batch, &c, None, 1.0).unwrap();
        grads.push(d.download(&tr.optim.grads).unwrap());
    }
    let want: Vec<f64> = grads[0].iter().map(|&g| g as f64).collect();
    let scale = want.iter().fold(0f64, |m, g| m.max(g.abs()));
    let err = assert_close(
        &format!("gradients on {}", dev.kind()),
        &grads[1],
        &want,
        Tol { atol: 1e-4 * scale, rtol: 1e-3 },
    );
    eprintln!("{} gradients vs cpu: max abs error {err:e} (max |g| {scale:e})", dev.kind());
}

per_backend!(gradients_match_cpu);
