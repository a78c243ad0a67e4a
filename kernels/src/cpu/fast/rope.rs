//! The fast twin of [`cpu::rope`](crate::cpu::rope): the same rotation by the same libm
//! `sin`/`cos` of the same f32 angles — bit for bit the twin's results — with two changes:
//!
//! * the sin/cos table of a call (`[tokens × head_dim/2]`) is kept, per thread, and reused by
//!   the next call with the same positions and frequencies. A forward pass rotates q and k of
//!   every layer at the same positions: the engine's token step of the demo model made 8 calls
//!   where one table serves (under `perf`, libm's `sin_cos` was most of RoPE's time, and RoPE
//!   a twelfth of the step: `docs/engine.md`). A hit costs a comparison of the positions and
//!   frequencies; a miss what the twin costs, plus the table's writes. The table
//!   (`8 · tokens · head_dim / 2` bytes) stays allocated on its thread until the next call;
//! * the rotation of a head runs as contiguous loops over its pairs, which vectorize.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::cpu::rope::{extent, sign};
use crate::ops::{RopeDirection, RopeShape};

/// The sin/cos of the last call on this thread, and what they were computed for.
#[derive(Default)]
struct Table {
    positions: Vec<i32>,
    inv_freq_bits: Vec<u32>,
    sin: Vec<f32>,
    cos: Vec<f32>,
}

impl Table {
    /// Whether the table holds `positions × inv_freq`.
    fn holds(&self, positions: &[i32], inv_freq: &[f32]) -> bool {
        self.positions == positions
            && self.inv_freq_bits.len() == inv_freq.len()
            && self.inv_freq_bits.iter().zip(inv_freq).all(|(&b, f)| b == f.to_bits())
    }

    /// Makes the table hold `positions × inv_freq` (the twin's `(pos as f32 * f).sin_cos()`).
    fn fill(&mut self, positions: &[i32], inv_freq: &[f32]) {
        if self.holds(positions, inv_freq) {
            return;
        }
        let half = inv_freq.len();
        // The key is written last: a panic in between leaves an empty key, never a stale one.
        self.positions.clear();
        self.inv_freq_bits.clear();
        self.sin.resize(positions.len() * half, 0.0);
        self.cos.resize(positions.len() * half, 0.0);
        if half > 0 {
            self.compute(positions, inv_freq);
        }
        self.positions.extend_from_slice(positions);
        self.inv_freq_bits.extend(inv_freq.iter().map(|f| f.to_bits()));
    }

    /// The table's values for `positions × inv_freq` (sized already).
    fn compute(&mut self, positions: &[i32], inv_freq: &[f32]) {
        let half = inv_freq.len();
        // A `sin_cos` costs about what 16 elements of a plain pass do.
        let min = crate::cpu::regions::min_len(16 * positions.len() * half);
        self.sin
            .par_chunks_mut(half)
            .zip(self.cos.par_chunks_mut(half))
            .zip(positions)
            .with_min_len(min)
            .for_each(|((sn, cs), &pos)| {
                for ((s, c), &f) in sn.iter_mut().zip(cs.iter_mut()).zip(inv_freq) {
                    (*s, *c) = (pos as f32 * f).sin_cos();
                }
            });
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// Rotates every head of every token of `x` (contract of
/// [`cpu::rope::rope`](crate::cpu::rope::rope)).
pub fn rope(
    x: &mut [f32],
    positions: &[i32],
    inv_freq: &[f32],
    shape: &RopeShape,
    direction: RopeDirection,
) {
    let half = shape.head_dim / 2;
    let (positions, inv_freq) = (&positions[..shape.tokens], &inv_freq[..half]);
    TABLE.with(|t| match t.try_borrow_mut() {
        Ok(mut t) => {
            t.fill(positions, inv_freq);
            rotate(x, &t.sin, &t.cos, shape, direction);
        }
        // A rope call nested inside this thread's own (rayon runs stolen work while it waits):
        // a table of its own.
        Err(_) => {
            let mut own = Table::default();
            own.fill(positions, inv_freq);
            rotate(x, &own.sin, &own.cos, shape, direction);
        }
    });
}

/// Rotates `x` by the table `sin`/`cos` (`[tokens × half]`).
fn rotate(x: &mut [f32], sin: &[f32], cos: &[f32], shape: &RopeShape, direction: RopeDirection) {
    let half = shape.head_dim / 2;
    if half == 0 {
        return;
    }
    let sign = sign(direction);
    let min = crate::cpu::regions::min_len(shape.tokens * shape.num_heads * shape.head_dim);
    // Each chunk starts at one token (the last one may be shorter than token_stride; a single
    // token's stride may be anything, even 0: its chunk is then its heads' extent).
    x.par_chunks_mut(shape.token_stride.max(extent(shape)))
        .zip(sin.par_chunks(half).zip(cos.par_chunks(half)))
        .with_min_len(min)
        .for_each(|(xt, (sn, cs))| {
            for h in 0..shape.num_heads {
                let at = h * shape.head_stride;
                let (lo, hi) = xt[at..at + 2 * half].split_at_mut(half);
                for j in 0..half {
                    let (a, b, s, c) = (lo[j], hi[j], sign * sn[j], cs[j]);
                    lo[j] = a * c - b * s;
                    hi[j] = b * c + a * s;
                }
            }
        });
}
