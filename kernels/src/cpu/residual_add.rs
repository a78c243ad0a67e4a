//! `y += x`, element-wise.

use rayon::prelude::*;

/// `y[i] += x[i]` for every `i`.
pub fn residual_add(y: &mut [f32], x: &[f32]) {
    const CHUNK: usize = 1 << 14;
    let min = super::regions::min_len(y.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).with_min_len(min).for_each(|(yc, xc)| {
        for (yv, xv) in yc.iter_mut().zip(xc) {
            *yv += xv;
        }
    });
}
