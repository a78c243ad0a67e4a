//! Rewards nobody tunes to: a classifier trained on held-out data ([`Classifier`]) and an
//! analytic cleanliness score ([`Aesthetic`]).
//!
//! Both score a batch of `[n, DIM]` images against the class each image was prompted with;
//! higher is better. Neither is fitted to the generator's data or to the policy being trained,
//! so a rising reward is evidence of better samples rather than of a reward fitted to them.

mod aesthetic;
mod classifier;

pub use aesthetic::Aesthetic;
pub use classifier::{Classifier, ClassifierConfig};

use crate::data::{DIM, NUM_CLASSES};
use crate::{FlowError, Result};

/// A scalar score per image, higher is better.
///
/// Contract of [`Reward::score`]: `images` is `[n, DIM]` row-major with `n = classes.len()`,
/// `classes[i]` is the class image `i` was prompted with; the result has `n` finite values.
/// Errors (checked before any scoring, see [`check_batch`]): a length mismatch is a
/// [`FlowError::Shape`], a non-finite pixel a [`FlowError::NonFinite`] naming the image, a class
/// `>= NUM_CLASSES` a [`FlowError::Config`].
pub trait Reward: Send + Sync {
    /// A short stable name (used as a metric key).
    fn name(&self) -> &'static str;
    /// Scores each image against its prompted class.
    fn score(&self, images: &[f32], classes: &[usize]) -> Result<Vec<f64>>;
}

/// Validates a batch for [`Reward::score`] and returns its size `n = classes.len()`.
///
/// Errors: `images.len() != n * DIM` → [`FlowError::Shape`]; a NaN or infinite pixel →
/// [`FlowError::NonFinite`] naming the image and pixel index; a class `>= NUM_CLASSES` →
/// [`FlowError::Config`] naming the image.
pub fn check_batch(images: &[f32], classes: &[usize]) -> Result<usize> {
    let n = classes.len();
    if Some(images.len()) != n.checked_mul(DIM) {
        return Err(FlowError::Shape(format!(
            "{} pixels for {n} classes; expected {n} × DIM ({DIM})",
            images.len()
        )));
    }
    crate::data::check_finite(images)?;
    if let Some(i) = classes.iter().position(|&c| c >= NUM_CLASSES) {
        return Err(FlowError::Config(format!(
            "class {} of image {i} is out of range (NUM_CLASSES = {NUM_CLASSES})",
            classes[i]
        )));
    }
    Ok(n)
}

/// Scores the batch with every reward: one vector of `classes.len()` values per reward, in the
/// order of `rewards`.
///
/// Besides the errors of [`check_batch`], a reward that returns the wrong number of scores is
/// a [`FlowError::Shape`] and a non-finite score a [`FlowError::NonFinite`], both naming the
/// reward, so a broken reward cannot slip NaNs into the advantages.
pub fn score_all(
    rewards: &[&dyn Reward],
    images: &[f32],
    classes: &[usize],
) -> Result<Vec<Vec<f64>>> {
    let n = check_batch(images, classes)?;
    rewards
        .iter()
        .map(|r| {
            let scores = r.score(images, classes)?;
            if scores.len() != n {
                return Err(FlowError::Shape(format!(
                    "reward {} returned {} scores for {n} images",
                    r.name(),
                    scores.len()
                )));
            }
            if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
                return Err(FlowError::NonFinite(format!(
                    "reward {} scored image {i} as {}",
                    r.name(),
                    scores[i]
                )));
            }
            Ok(scores)
        })
        .collect()
}
