//! `x[i] *= s` in place.

use rayon::prelude::*;

/// Multiplies every element of `x` by `s`.
pub fn scale(x: &mut [f32], s: f32) {
    super::regions::enter();
    x.par_chunks_mut(1 << 16).for_each(|c| c.iter_mut().for_each(|v| *v *= s));
}
