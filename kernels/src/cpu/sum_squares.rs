//! `Σ x[i]²` in f64.
//!
//! Deterministic for any thread count: the chunks are fixed-size and their sums are added in
//! chunk order. NaN and Inf propagate.

use rayon::prelude::*;

/// Elements per chunk of the parallel sum.
const CHUNK: usize = 1 << 16;

/// The sum of squares of `x`, accumulated in f64.
pub fn sum_squares(x: &[f32]) -> f64 {
    super::regions::enter();
    let partial: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
        .collect();
    partial.iter().sum()
}
