//! Training the classifier: minibatch Adam on softmax cross-entropy over held-out shapes.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Classifier;
use crate::data::{DIM, NUM_CLASSES, Split, dataset};
use crate::{FlowError, Result};

/// How to train a [`Classifier`].
///
/// The default (6000 samples, 20 epochs of 32, Adam at 2e-3, 64 hidden units) trains in
/// ≈ 0.4 s (release, one core) and is 100% accurate on a fresh draw of 1200 `Split::Train`
/// images (the `classifier_separates_classes` test; ≥ 97% is required).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// Images drawn from [`Split::Heldout`] (balanced over the classes).
    pub samples: usize,
    /// Passes over the samples, each in a fresh shuffled order.
    pub epochs: usize,
    /// Minibatch size (the last batch of an epoch may be smaller).
    pub batch: usize,
    /// Adam step size.
    pub lr: f32,
    /// Width of the hidden layer.
    pub hidden: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self { samples: 6000, epochs: 20, batch: 32, lr: 2e-3, hidden: 64 }
    }
}

impl ClassifierConfig {
    /// Checks every field: counts positive, `lr` finite and positive.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("samples", self.samples),
            ("epochs", self.epochs),
            ("batch", self.batch),
            ("hidden", self.hidden),
        ] {
            if v == 0 {
                return Err(FlowError::Config(format!("classifier {key} must be > 0")));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(FlowError::Config(format!(
                "classifier lr must be finite and > 0, got {}",
                self.lr
            )));
        }
        if self.hidden.checked_mul(DIM).is_none() {
            return Err(FlowError::Config(format!(
                "classifier hidden {} is too large",
                self.hidden
            )));
        }
        Ok(())
    }
}

/// Adam moments of one parameter tensor.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    const B1: f32 = 0.9;
    const B2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    fn new(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n] }
    }

    /// One step on `p` with gradient `g`; `c1`, `c2` are the bias corrections `1 − βᵗ`.
    fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32, c1: f32, c2: f32) {
        for (((p, g), m), v) in p.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m = Self::B1 * *m + (1.0 - Self::B1) * g;
            *v = Self::B2 * *v + (1.0 - Self::B2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + Self::EPS);
        }
    }
}

impl Classifier {
    /// Trains a classifier on `cfg.samples` images of `dataset(Split::Heldout, _, seed)`.
    ///
    /// Deterministic in `(cfg, seed)`: the data, the initialisation (He-uniform for the hidden
    /// layer, Glorot-uniform for the output, zero biases) and the per-epoch shuffles all come
    /// from ChaCha8 streams of `seed`, and the arithmetic is single-threaded in a fixed order.
    ///
    /// Errors: an invalid `cfg` ([`FlowError::Config`]); a weight that turns non-finite
    /// ([`FlowError::NonFinite`], e.g. from a far too large `lr`; checked after every epoch).
    pub fn train(cfg: &ClassifierConfig, seed: u64) -> Result<Classifier> {
        cfg.validate()?;
        let data = dataset(Split::Heldout, cfg.samples, seed)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Stream 2: disjoint from both data splits drawn with this seed.
        rng.set_stream(2);
        let h = cfg.hidden;
        let mut uniform = |n: usize, bound: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
        };
        let mut net = Classifier {
            hidden: h,
            w1: uniform(h * DIM, (6.0 / DIM as f32).sqrt()),
            b1: vec![0.0; h],
            w2: uniform(NUM_CLASSES * h, (6.0 / (h + NUM_CLASSES) as f32).sqrt()),
            b2: vec![0.0; NUM_CLASSES],
        };
        let mut adam = [
            Adam::new(net.w1.len()),
            Adam::new(h),
            Adam::new(net.w2.len()),
            Adam::new(NUM_CLASSES),
        ];
        let (mut gw1, mut gb1) = (vec![0.0; h * DIM], vec![0.0; h]);
        let (mut gw2, mut gb2) = (vec![0.0; NUM_CLASSES * h], vec![0.0; NUM_CLASSES]);
        let (mut hidden, mut dh) = (vec![0.0; h], vec![0.0; h]);
        let mut order: Vec<usize> = (0..cfg.samples).collect();
        // β₁ᵗ and β₂ᵗ, carried multiplicatively (no integer step count to overflow).
        let (mut b1t, mut b2t) = (1.0f32, 1.0f32);
        for epoch in 0..cfg.epochs {
            order.shuffle(&mut rng);
            for idx in order.chunks(cfg.batch) {
                for g in [&mut gw1, &mut gb1, &mut gw2, &mut gb2] {
                    g.fill(0.0);
                }
                for &i in idx {
                    let x = &data.images[i * DIM..(i + 1) * DIM];
                    let mut p = [0.0; NUM_CLASSES];
                    net.forward(x, &mut hidden, &mut p);
                    let label = data.labels[i];
                    // d(loss)/d(logits) = p − onehot(label).
                    p[label] -= 1.0;
                    dh.fill(0.0);
                    for (c, &d) in p.iter().enumerate() {
                        gb2[c] += d;
                        let row = c * h..(c + 1) * h;
                        for ((g, &a), (w, dh)) in gw2[row.clone()]
                            .iter_mut()
                            .zip(&hidden)
                            .zip(net.w2[row].iter().zip(&mut dh))
                        {
                            *g += d * a;
                            *dh += d * w;
                        }
                    }
                    for (j, (&a, &d)) in hidden.iter().zip(&dh).enumerate() {
                        if a > 0.0 {
                            gb1[j] += d;
                            for (g, &xv) in gw1[j * DIM..(j + 1) * DIM].iter_mut().zip(x) {
                                *g += d * xv;
                            }
                        }
                    }
                }
                let scale = 1.0 / idx.len() as f32;
                b1t *= Adam::B1;
                b2t *= Adam::B2;
                let (c1, c2) = (1.0 - b1t, 1.0 - b2t);
                for ((p, g), a) in [&mut net.w1, &mut net.b1, &mut net.w2, &mut net.b2]
                    .into_iter()
                    .zip([&mut gw1, &mut gb1, &mut gw2, &mut gb2])
                    .zip(&mut adam)
                {
                    g.iter_mut().for_each(|v| *v *= scale);
                    a.step(p, g, cfg.lr, c1, c2);
                }
            }
            let params = [&net.w1, &net.b1, &net.w2, &net.b2];
            if let Some(v) = params.iter().flat_map(|p| p.iter()).find(|v| !v.is_finite()) {
                return Err(FlowError::NonFinite(format!(
                    "classifier weight is {v} after epoch {epoch} (lr {} too large?)",
                    cfg.lr
                )));
            }
        }
        Ok(net)
    }
}
