//! Categorical draw by inverse CDF, one row per leaf, with the uniform given as an argument.

use rayon::prelude::*;

/// For each row of `cols` non-negative weights `p` (not necessarily normalized) and its uniform
/// `u ∈ [0, 1)`: the smallest index `i` with `p[i] > 0` and `Σ_{j<=i} p[j] > u·total`
/// (`total = Σ p`), in index order. If rounding leaves no such index (`u·total` at or past the
/// last partial sum), the last index with `p > 0`. A row with no positive weight, or a
/// non-finite total (NaN from an all-−∞ softmax), gives `-1`. An index with `p = 0` is never
/// returned. Sums are f64 here; the GPU kernels use f32 block prefix sums, so a draw whose
/// `u·total` lies within float rounding of a CDF step may pick the neighbouring index.
pub fn categorical(probs: &[f32], uniforms: &[f32], tokens: &mut [i32], cols: usize) {
    super::regions::enter();
    tokens
        .par_iter_mut()
        .zip(probs.par_chunks(cols))
        .zip(uniforms.par_iter())
        .for_each(|((tok, row), &u)| *tok = draw(row, u));
}

/// One row of [`categorical`].
pub fn draw(row: &[f32], u: f32) -> i32 {
    let total: f64 = row.iter().map(|&p| f64::from(p)).sum();
    if !(total > 0.0 && total.is_finite()) {
        return -1;
    }
    let target = f64::from(u) * total;
    let mut cum = 0f64;
    let mut last = -1;
    for (i, &p) in row.iter().enumerate() {
        if p > 0.0 {
            cum += f64::from(p);
            last = i as i32;
            if cum > target {
                return i as i32;
            }
        }
    }
    last
}
