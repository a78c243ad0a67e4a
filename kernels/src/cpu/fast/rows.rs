//! The in-place decode tile for a handful of query vectors (one leaf's GQA group of 1–3): SIMD
//! lanes run along `head_dim` instead of across query vectors, so no lane is padding.
//!
//! The panel tiles (`tiles.rs`) put query vectors in the lanes; with 2 vectors an 8-lane panel
//! is three-quarters padding, so below 4 vectors the reference gather tile (copy each block's
//! K/V rows into a scratch, two small GEMMs) used to run instead. Under perf that copy was a
//! third of a sequential-sampling run on the demo model (`docs/engine.md`): every leaf reads
//! its whole context every token, from memory, and wrote it again into the scratch.
//!
//! Per block of up to [`BLOCK`] tokens, per query vector `i` (AVX2 + FMA, 8 lanes):
//!
//! * scores `s[t] = (scale·q_i)·K[off[t]]` for the positions vector `i` sees: eight tokens at a
//!   time, eight accumulators of `head_dim / 8` FMAs each, reduced to one vector of eight
//!   scores by a `hadd` tree; a single trailing token by a horizontal sum; the row's max kept
//!   in lanes as the scores are stored;
//! * the reference's online softmax on that row (running max, `exp_shifted` over the row
//!   padded to whole vectors with `-inf`, running sum, `alpha` rescale of the accumulated
//!   output);
//! * `o_i += Σ_t p[t]·V[off[t]]`: per 32-column stripe of `o_i`, two sets of four accumulators
//!   (even and odd tokens) held in registers over the block's tokens, one broadcast of `p[t]`
//!   and four FMAs per token.
//!
//! `head_dim` must be a multiple of 8 ([`attend_on`](super::decode_tile::attend_on) runs the
//! reference tile otherwise). Same numerics as the reference apart from the summation order of
//! the dot products, of the probabilities and of `P·V`.

use std::arch::x86_64::{
    __m256, _mm_add_ps, _mm_cvtss_f32, _mm_hadd_ps, _mm256_add_ps, _mm256_castps256_ps128,
    _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_hadd_ps, _mm256_loadu_ps, _mm256_max_ps,
    _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
};

use super::decode_tile::{BLOCK, Scratch, row_offsets};
use crate::cpu::decode_tile::{Chunk, KvHead, finish, softmax_row_max};

/// The row tile (see the [module docs](self)): the contract of
/// [`decode_tile::attend`](crate::cpu::decode_tile::attend).
///
/// # Safety
/// The CPU must support AVX2 and FMA; `kv.head_dim` must be a multiple of 8.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn attend_rows(
    kv: &KvHead<'_>,
    chunk: &Chunk<'_>,
    q: &[f32],
    lim: &[i64],
    scale: f32,
    o: &mut [f32],
    lse: &mut [f32],
    sc: &mut Scratch,
) {
    let (m, d) = (lim.len(), kv.head_dim);
    debug_assert!(d.is_multiple_of(8));
    let (o, lse) = (&mut o[..m * d], &mut lse[..m]);
    // Scaled queries (the reference scales the product, the same value up to rounding).
    sc.qt.clear();
    sc.qt.extend(q[..m * d].iter().map(|&x| x * scale));
    o.fill(0.0);
    sc.m.clear();
    sc.m.resize(m, f32::NEG_INFINITY);
    sc.l.clear();
    sc.l.resize(m, 0.0);
    let hi = chunk.seen_end(lim);
    let (k_base, v_base) = (kv.data.as_ptr(), kv.data.as_ptr().wrapping_add(kv.stride_kv));
    let mut t0 = chunk.kv_start;
    while t0 < hi {
        let bl = BLOCK.min(hi - t0);
        row_offsets(kv, chunk, t0, bl, &mut sc.off);
        sc.s.clear();
        sc.s.resize(bl.next_multiple_of(8), 0.0);
        for i in 0..m {
            let nvalid = (lim[i] + 1 - t0 as i64).clamp(0, bl as i64) as usize;
            if nvalid == 0 {
                continue;
            }
            let (off, s) = (&sc.off[..nvalid], &mut sc.s[..nvalid]);
            // SAFETY: every offset has its K and V rows (`+ stride_kv`) of `d` values inside
            // `kv.data` (`row_offsets` asserts it); `qt` holds `m × d`; AVX2 + FMA are the
            // caller's.
            let mx = unsafe { scores(&sc.qt[i * d..(i + 1) * d], k_base, off, s) };
            let orow = &mut o[i * d..(i + 1) * d];
            // Padded to whole vectors with `-inf` (probability 0, adding nothing to the sum):
            // the exponential's scalar tail cost as much as its vector body at 16–32 tokens.
            let padded = nvalid.next_multiple_of(8);
            sc.s[nvalid..padded].fill(f32::NEG_INFINITY);
            softmax_row_max(&mut sc.s[..padded], mx, &mut sc.m[i], &mut sc.l[i], orow);
            let s = &sc.s[..nvalid];
            // SAFETY: as above, for the V rows; `orow` holds `d`.
            unsafe { accumulate(s, v_base, off, orow) };
        }
        t0 += bl;
    }
    finish(o, lse, &sc.m, &sc.l, d);
}

/// `s[t] = q · K[off[t]..off[t] + d]` with `d = q.len()`, a multiple of 8; returns the largest
/// score, as `f32::max` folds it (NaN ignored; `-inf` for no token), found as the scores are
/// stored instead of in a second, serial pass (a chain of dependent `max`es, a fifth of the
/// tile's `perf` samples at 64 leaves of 16–32 tokens).
///
/// # Safety
/// AVX2 + FMA; `base + off[t] .. + d` readable for every `t`; `s.len() == off.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn scores(q: &[f32], base: *const f32, off: &[usize], s: &mut [f32]) -> f32 {
    let d = q.len();
    let qp = q.as_ptr();
    // `max_ps(new, run)` keeps `run` where `new` is NaN, as `f32::max` does.
    let mut run = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut t = 0;
    while t + 8 <= off.len() {
        // SAFETY: each row start lies in the cache (caller).
        let rows: [*const f32; 8] = std::array::from_fn(|j| unsafe { base.add(off[t + j]) });
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut c = 0;
        while c < d {
            // SAFETY: `c + 8 <= d` (d is a multiple of 8); the rows are readable (caller).
            unsafe {
                let qv = _mm256_loadu_ps(qp.add(c));
                for (a, row) in acc.iter_mut().zip(rows) {
                    *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(row.add(c)), *a);
                }
            }
            c += 8;
        }
        let sv = sum8(acc);
        run = _mm256_max_ps(sv, run);
        // SAFETY: `t + 8 <= s.len()`.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr().add(t), sv) };
        t += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), run) };
    let mut mx = lanes.into_iter().fold(f32::NEG_INFINITY, f32::max);
    while t < off.len() {
        let mut acc = _mm256_setzero_ps();
        let mut c = 0;
        while c < d {
            // SAFETY: as above.
            acc = unsafe {
                _mm256_fmadd_ps(
                    _mm256_loadu_ps(qp.add(c)),
                    _mm256_loadu_ps(base.add(off[t] + c)),
                    acc,
                )
            };
            c += 8;
        }
        s[t] = hsum(acc);
        mx = mx.max(s[t]);
        t += 1;
    }
    mx
}

/// `o += Σ_t p[t] · V[off[t]..off[t] + d]` with `d = o.len()`, a multiple of 8.
///
/// Per 32-column stripe of `o`, even and odd tokens go to two sets of four accumulators (eight
/// independent FMA chains, what two FMA ports of latency 4 need; one set of four left this
/// loop latency-bound), added at the end of the stripe.
///
/// # Safety
/// AVX2 + FMA; `base + off[t] .. + d` readable for every `t`; `p.len() == off.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate(p: &[f32], base: *const f32, off: &[usize], o: &mut [f32]) {
    let d = o.len();
    let op = o.as_mut_ptr();
    let pairs = p.len() / 2;
    let mut c = 0;
    while c + 32 <= d {
        // SAFETY: `c + 32 <= d`; the V rows are readable (caller).
        unsafe {
            let mut even = [0, 8, 16, 24].map(|k| _mm256_loadu_ps(op.add(c + k)));
            let mut odd = [_mm256_setzero_ps(); 4];
            for j in 0..pairs {
                let (t0, t1) = (2 * j, 2 * j + 1);
                let (p0, p1) = (_mm256_set1_ps(p[t0]), _mm256_set1_ps(p[t1]));
                let (r0, r1) = (base.add(off[t0] + c), base.add(off[t1] + c));
                for k in 0..4 {
                    even[k] = _mm256_fmadd_ps(p0, _mm256_loadu_ps(r0.add(8 * k)), even[k]);
                    odd[k] = _mm256_fmadd_ps(p1, _mm256_loadu_ps(r1.add(8 * k)), odd[k]);
                }
            }
            if p.len() % 2 == 1 {
                let t = p.len() - 1;
                let (pt, row) = (_mm256_set1_ps(p[t]), base.add(off[t] + c));
                for (k, a) in even.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row.add(8 * k)), *a);
                }
            }
            for k in 0..4 {
                _mm256_storeu_ps(op.add(c + 8 * k), _mm256_add_ps(even[k], odd[k]));
            }
        }
        c += 32;
    }
    while c < d {
        // SAFETY: `c + 8 <= d`; as above.
        unsafe {
            let mut a = _mm256_loadu_ps(op.add(c));
            for (&pt, &ot) in p.iter().zip(off) {
                a = _mm256_fmadd_ps(_mm256_set1_ps(pt), _mm256_loadu_ps(base.add(ot + c)), a);
            }
            _mm256_storeu_ps(op.add(c), a);
        }
        c += 8;
    }
}

/// The eight horizontal sums of `a[0..8]`, in order, as one vector.
#[target_feature(enable = "avx2,fma")]
fn sum8(a: [__m256; 8]) -> __m256 {
    // Pairwise: after two rounds each 128-bit half holds the half-sums of four inputs.
    let t0 = _mm256_hadd_ps(a[0], a[1]);
    let t1 = _mm256_hadd_ps(a[2], a[3]);
    let t2 = _mm256_hadd_ps(a[4], a[5]);
    let t3 = _mm256_hadd_ps(a[6], a[7]);
    let u0 = _mm256_hadd_ps(t0, t1);
    let u1 = _mm256_hadd_ps(t2, t3);
    // Low halves of inputs 0–7 plus their high halves.
    _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31))
}

/// The horizontal sum of `a`.
#[target_feature(enable = "avx2,fma")]
fn hsum(a: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    let s = _mm_hadd_ps(s, s);
    _mm_cvtss_f32(_mm_hadd_ps(s, s))
}
