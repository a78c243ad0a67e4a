//! Helpers shared by the flow acceptance tests: seeded random inputs, tiny networks, hand-built
//! rollouts and an `atol + rtol·|ref|` comparison that reports its worst error.
#![allow(dead_code)]

use std::fmt::Display;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use treepo_flow::data::DIM;
use treepo_flow::net::{NetConfig, VelocityNet};
use treepo_flow::rollout::{Leaf, Rollouts, Transition};
use treepo_kernels::Device;

/// A seeded generator.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` standard-normal f32 values times `scale`.
pub fn normal(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            z * scale
        })
        .collect()
}

/// The tiny network of the shape and determinism tests.
pub const TINY: NetConfig = NetConfig { hidden: 16, ffn: 32, blocks: 1 };
/// The tiny two-block network of the gradient checks.
pub const TINY2: NetConfig = NetConfig { hidden: 16, ffn: 32, blocks: 2 };

/// A freshly initialised network on the CPU.
pub fn net(cfg: NetConfig, seed: u64) -> VelocityNet {
    VelocityNet::init(&Device::cpu(), cfg, seed).expect("init")
}

/// Worst error of a batch of comparisons against `atol + rtol·|ref|`.
pub struct Errors {
    what: String,
    atol: f64,
    rtol: f64,
    /// Largest `|got − ref|`.
    pub max_abs: f64,
    /// Largest `|got − ref| / (atol + rtol·|ref|)` (≤ 1 passes).
    pub worst: f64,
    worst_at: String,
    count: usize,
}

impl Errors {
    /// An empty record of comparisons named `what`.
    pub fn new(what: impl Into<String>, atol: f64, rtol: f64) -> Self {
        Errors {
            what: what.into(),
            atol,
            rtol,
            max_abs: 0.0,
            worst: 0.0,
            worst_at: String::new(),
            count: 0,
        }
    }

    /// Records one comparison (`at` names it in the failure message).
    pub fn add(&mut self, got: f64, want: f64, at: impl Display) {
        self.count += 1;
        let err = (got - want).abs();
        // A NaN or infinite value is the worst error there is.
        let err = if err.is_finite() { err } else { f64::INFINITY };
        let ratio = if err.is_finite() { err / (self.atol + self.rtol * want.abs()) } else { err };
        self.max_abs = self.max_abs.max(err);
        if ratio > self.worst || self.worst_at.is_empty() {
            self.worst = ratio;
            self.worst_at = format!("{at}: got {got:e}, want {want:e}");
        }
    }

    /// Asserts every comparison passed (and that there was at least one); prints the maximum.
    pub fn check(&self) {
        assert!(self.count > 0, "{}: nothing was compared", self.what);
        eprintln!(
            "{}: {} values, max |err| = {:.3e}, worst err/tol = {:.3e} (atol {:e}, rtol {:e})",
            self.what, self.count, self.max_abs, self.worst, self.atol, self.rtol
        );
        assert!(
            self.worst <= 1.0,
            "{}: max |err| = {:e}, worst err/tol = {:e} (atol {:e}, rtol {:e}) at {}",
            self.what,
            self.max_abs,
            self.worst,
            self.atol,
            self.rtol,
            self.worst_at
        );
    }
}

/// A transition for a hand-built rollout (zero states: only the topology and `logp_old` matter).
pub fn transition(prompt: usize, step: usize, parent: Option<usize>, logp_old: f64) -> Transition {
    Transition { prompt, step, parent, x: vec![0.0; DIM], next: vec![0.0; DIM], logp_old }
}

/// A hand-built rollout with zero images.
pub fn rollouts(
    classes: &[usize],
    transitions: Vec<Transition>,
    paths: &[(usize, &[usize])],
) -> Rollouts {
    let leaves: Vec<Leaf> =
        paths.iter().map(|&(prompt, path)| Leaf { prompt, path: path.to_vec() }).collect();
    Rollouts {
        classes: classes.to_vec(),
        transitions,
        images: vec![0.0; leaves.len() * DIM],
        leaves,
        nfe: 0,
    }
}

/// `n` values' mean.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}
