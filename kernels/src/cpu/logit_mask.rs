//! Top-k and top-p (nucleus) filtering of logits, in place: dropped entries become −∞.
//!
//! Both are **threshold searches**: find the largest value `t` such that the entries `>= t`
//! carry enough weight (a count for top-k, probability mass for top-p), then drop everything
//! below `t`. Entries tied with `t` are kept together (HF keeps boundary ties for top-k; here
//! top-p does too). Values are compared through [`ordered_key`], a `u32` whose order is the
//! float order (−0 and +0 are one value), and `t` is built four bits at a time from the most
//! significant end ([`threshold_key`]) — the same search the CUDA and wgpu kernels run, block-
//! wide, without sorting.

use rayon::prelude::*;

use super::softmax::max_sum;

/// A `u32` whose unsigned order is the order of non-NaN floats, with `−0` mapped to `+0`.
pub fn ordered_key(x: f32) -> u32 {
    let b = if x == 0.0 { 0 } else { x.to_bits() };
    if b & 0x8000_0000 != 0 { !b } else { b | 0x8000_0000 }
}

/// The largest key `t` with `W(t) = Σ_{keys[i] >= t} weight(i) >= target`, searched four bits
/// at a time from the top (8 passes, each a 16-bin histogram of the entries at or above the
/// current prefix). Returns 0 when even `W(0)` (the total) is below `target`.
pub fn threshold_key(keys: &[u32], weight: impl Fn(usize) -> f64, target: f64) -> u32 {
    let mut t = 0u32;
    for step in 0..8 {
        let shift = 28 - 4 * step;
        // bins[d]: weight of keys in [t + d·2^shift, t + (d+1)·2^shift); keys above the
        // current window land in bin 15 (they count for every candidate digit).
        let mut bins = [0f64; 16];
        for (i, &k) in keys.iter().enumerate() {
            if k >= t {
                bins[(((k - t) >> shift).min(15)) as usize] += weight(i);
            }
        }
        // W(t + c·2^shift) = Σ_{d >= c} bins[d]; take the largest c that reaches the target.
        let mut above = 0f64;
        for c in (1..16u32).rev() {
            above += bins[c as usize];
            if above >= target {
                t += c << shift;
                break;
            }
        }
    }
    t
}

/// Top-k on each row of `cols` logits: keeps every entry `>=` the `k`-th largest value of its
/// row (ties at the boundary are kept, as HF's `TopKLogitsWarper`), sets the rest to −∞.
/// `k == 0` or `k >= cols` leaves the rows unchanged.
pub fn top_k_mask(x: &mut [f32], cols: usize, k: usize) {
    if k == 0 || k >= cols {
        return;
    }
    super::regions::enter();
    x.par_chunks_mut(cols).for_each(|row| {
        let keys: Vec<u32> = row.iter().map(|&v| ordered_key(v)).collect();
        let t = threshold_key(&keys, |_| 1.0, k as f64);
        drop_below(row, &keys, t);
    });
}

/// Top-p on each row of `cols` logits: with `p = softmax(scale·x)`, keeps the smallest set of
/// highest-probability entries whose mass is `>= top_p`, plus every entry tied (equal logit)
/// with the smallest kept one; the top entry is always kept; the rest become −∞.
/// `top_p >= 1` leaves the rows unchanged; a row of only −∞ is left as it is.
///
/// Numerics: `e_i = exp(fl(scale·x_i) − fl(scale·max x))` in f32 (as [`super::softmax`]), masses
/// summed in f64, threshold `top_p · Σ e`.
pub fn top_p_mask(x: &mut [f32], cols: usize, scale: f32, top_p: f32) {
    if top_p >= 1.0 {
        return;
    }
    super::regions::enter();
    x.par_chunks_mut(cols).for_each(|row| {
        let (m, _) = max_sum(row, scale);
        if m == f32::NEG_INFINITY {
            return;
        }
        let e: Vec<f64> = row
            .iter()
            .map(|&v| if v == f32::NEG_INFINITY { 0.0 } else { f64::from((scale * v - m).exp()) })
            .collect();
        let total: f64 = e.iter().sum();
        let keys: Vec<u32> = row.iter().map(|&v| ordered_key(v)).collect();
        let top = keys.iter().copied().max().unwrap_or(0);
        let t = threshold_key(&keys, |i| e[i], f64::from(top_p) * total).min(top);
        drop_below(row, &keys, t);
    });
}

fn drop_below(row: &mut [f32], keys: &[u32], t: u32) {
    for (v, &k) in row.iter_mut().zip(keys) {
        if k < t {
            *v = f32::NEG_INFINITY;
        }
    }
}
