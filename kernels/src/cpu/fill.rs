//! `x[i] = value`.

use rayon::prelude::*;

/// Sets every element of `x` to `value`.
pub fn fill(x: &mut [f32], value: f32) {
    super::regions::enter();
    x.par_chunks_mut(1 << 16).for_each(|c| c.fill(value));
}
