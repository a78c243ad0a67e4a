//! The classifier reward: a one-hidden-layer MLP trained on held-out shapes; the reward is the
//! probability it assigns to the prompted class.
//!
//! Plain single-threaded f32 loops: at `DIM → 64 → NUM_CLASSES` the model is ~10k parameters
//! and trains in a couple of seconds, so it needs neither the kernels nor threads, and its
//! training is bit-for-bit deterministic given the seed.

mod io;
mod train;

pub use train::ClassifierConfig;

use super::{Reward, check_batch};
use crate::data::{DIM, Dataset, NUM_CLASSES};
use crate::{FlowError, Result};

/// An MLP `DIM → hidden (ReLU) → NUM_CLASSES (softmax)` over raw pixels in `[-1, 1]`.
///
/// Weights are row-major `[out, in]` (the PyTorch `Linear` layout), which is also how
/// [`Classifier::save`] writes them. Build one with [`Classifier::train`] or
/// [`Classifier::load`].
#[derive(Clone, Debug, PartialEq)]
pub struct Classifier {
    hidden: usize,
    /// `[hidden, DIM]`.
    w1: Vec<f32>,
    /// `[hidden]`.
    b1: Vec<f32>,
    /// `[NUM_CLASSES, hidden]`.
    w2: Vec<f32>,
    /// `[NUM_CLASSES]`.
    b2: Vec<f32>,
}

impl Classifier {
    /// Width of the hidden layer.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Class probabilities, `[n, NUM_CLASSES]` row-major, for `images` `[n, DIM]`; each row
    /// sums to 1 (up to rounding).
    ///
    /// Errors: a length that is not a multiple of `DIM` → [`FlowError::Shape`]; a non-finite
    /// pixel → [`FlowError::NonFinite`] naming the image.
    pub fn probs(&self, images: &[f32]) -> Result<Vec<f32>> {
        if !images.len().is_multiple_of(DIM) {
            return Err(FlowError::Shape(format!(
                "{} pixels is not a whole number of {DIM}-pixel images",
                images.len()
            )));
        }
        crate::data::check_finite(images)?;
        let mut hidden = vec![0.0; self.hidden];
        let mut out = Vec::with_capacity(images.len() / DIM * NUM_CLASSES);
        for x in images.chunks_exact(DIM) {
            let mut p = [0.0; NUM_CLASSES];
            self.forward(x, &mut hidden, &mut p);
            out.extend_from_slice(&p);
        }
        Ok(out)
    }

    /// Fraction of `ds` whose most probable class is the label (ties go to the lower class).
    ///
    /// Errors: those of [`Classifier::probs`], a `ds.images` length that is not
    /// `ds.labels.len() * DIM` ([`FlowError::Shape`]), and an empty `ds` ([`FlowError::Config`]:
    /// accuracy is undefined there).
    pub fn accuracy(&self, ds: &Dataset) -> Result<f64> {
        if ds.is_empty() {
            return Err(FlowError::Config("accuracy of an empty dataset".into()));
        }
        if Some(ds.images.len()) != ds.labels.len().checked_mul(DIM) {
            return Err(FlowError::Shape(format!(
                "dataset holds {} pixels for {} labels (DIM = {DIM})",
                ds.images.len(),
                ds.labels.len()
            )));
        }
        let probs = self.probs(&ds.images)?;
        let correct = probs
            .chunks_exact(NUM_CLASSES)
            .zip(&ds.labels)
            .filter(|(p, label)| argmax(p) == **label)
            .count();
        Ok(correct as f64 / ds.len() as f64)
    }

    /// Forward pass of one image: fills `hidden` (post-ReLU) and `probs` (softmax).
    fn forward(&self, x: &[f32], hidden: &mut [f32], probs: &mut [f32; NUM_CLASSES]) {
        for ((h, w), b) in hidden.iter_mut().zip(self.w1.chunks_exact(DIM)).zip(&self.b1) {
            *h = (b + dot(w, x)).max(0.0);
        }
        for ((p, w), b) in probs.iter_mut().zip(self.w2.chunks_exact(self.hidden)).zip(&self.b2) {
            *p = b + dot(w, hidden);
        }
        softmax(probs);
    }
}

impl Reward for Classifier {
    fn name(&self) -> &'static str {
        "classifier"
    }

    /// The probability of the prompted class, in `[0, 1]`.
    fn score(&self, images: &[f32], classes: &[usize]) -> Result<Vec<f64>> {
        check_batch(images, classes)?;
        let probs = self.probs(images)?;
        Ok(probs.chunks_exact(NUM_CLASSES).zip(classes).map(|(p, &c)| f64::from(p[c])).collect())
    }
}

/// Dot product with eight independent accumulators, so the loop vectorises (a single f32
/// accumulator cannot be reordered by the compiler). The summation order is fixed, so results
/// are deterministic.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// In-place softmax, shifted by the maximum so no exponent overflows.
fn softmax(z: &mut [f32; NUM_CLASSES]) {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// Index of the largest value (the first on ties).
fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
}
