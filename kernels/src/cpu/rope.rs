//! Rotary position embedding (HF half-split pairing), in place, and HF's `inv_freq`.

use rayon::prelude::*;

use crate::ops::{RopeDirection, RopeShape};

/// Rotates every head of every token of `x` (laid out as `shape` says, starting at `x[0]`):
/// pair `j < D/2` of a head is `(x[j], x[j + D/2])`, rotated by
/// `angle = (positions[t] as f32) * inv_freq[j]` (f32) — by `−angle` for
/// [`RopeDirection::Inverse`]. `sin`/`cos` are libm's f32 functions.
pub fn rope(
    x: &mut [f32],
    positions: &[i32],
    inv_freq: &[f32],
    shape: &RopeShape,
    direction: RopeDirection,
) {
    let (half, sign) = (shape.head_dim / 2, sign(direction));
    // Each chunk starts at one token (the last one may be shorter than token_stride). A
    // `sin_cos` costs about what 16 elements of a plain pass do.
    let work = shape.tokens * (16 * half + shape.num_heads * shape.head_dim);
    let min = super::regions::min_len(work);
    x.par_chunks_mut(shape.token_stride.max(extent(shape)))
        .zip(&positions[..shape.tokens])
        .with_min_len(min)
        .for_each(|(xt, &pos)| {
            for (j, &f) in inv_freq[..half].iter().enumerate() {
                let (s, c) = (pos as f32 * f).sin_cos();
                let s = sign * s;
                for h in 0..shape.num_heads {
                    let k = h * shape.head_stride + j;
                    let (a, b) = (xt[k], xt[k + half]);
                    xt[k] = a * c - b * s;
                    xt[k + half] = b * c + a * s;
                }
            }
        });
}

/// Elements from a token's first head to the end of its last: `(num_heads − 1)·head_stride +
/// head_dim`, at least 1 (`ops::rope` checks `token_stride` against it when there are several
/// tokens).
pub(crate) fn extent(shape: &RopeShape) -> usize {
    (shape.num_heads.saturating_sub(1) * shape.head_stride + shape.head_dim).max(1)
}

/// The factor on `sin`: 1 for [`RopeDirection::Forward`], −1 for [`RopeDirection::Inverse`].
pub(crate) fn sign(direction: RopeDirection) -> f32 {
    match direction {
        RopeDirection::Forward => 1.0,
        RopeDirection::Inverse => -1.0,
    }
}
