//! GEMM with a constant weight in panel order, register-tiled for AVX-512F: what the CPU
//! backend runs for `ops::gemm` with `b_panels` (the CPU engine's linear layers). Twin:
//! [`cpu::weight_gemm`](crate::cpu::weight_gemm) (its module docs define the panel order);
//! `tests/cpu_fast_gemm.rs` compares the two, and both against f64.
//!
//! *Why.* At the engine's shapes (m = 1–64 rows, k, n = 128–3 072) the `gemm` crate repacks
//! the whole weight on every call. For a weight that streams from L3 or memory (the big model's
//! 0.25–3 MB matrices; 100 MB per token step) that pack reads it twice; packed once, at engine
//! construction, it is read once. For weights that stay in cache the crate's micro-kernel is as
//! fast or faster, so the engine packs only matrices of at least 2¹⁷ elements
//! (`engine::weights`). Both cases, and the big model's token step with and without panel
//! order, are printed by `cargo bench -p treepo-benches --bench engine_step`; the figures are
//! in `docs/engine.md`.
//!
//! *Tile.* `MR ≤ 8` rows × `16·NV` columns (`NV` ∈ {2, 1}) of C in `MR·NV ≤ 16` accumulators;
//! per k: `NV` loads of B, `MR` broadcasts of A, `MR·NV` FMAs.
//!
//! *Blocking.* Rows in chunks of 64 (`MC`: A's chunk stays in L2), then panel by panel, then
//! 256 k at a time (`KC`: the panel's block, 256 × 32 floats = 32 KB, stays in L1 across the
//! chunk's 8-row blocks; the first block prefetches it, 8 rows ahead), then 8 rows at a
//! time. The k-blocks of one output add up in order, so each output is the same sum as
//! the twin's, but `alpha` and `beta` apply per k-block: results agree to rounding.
//!
//! *Threads.* The columns split into one contiguous run of panels per thread (one
//! fork-join): each thread reads only its share of the weight.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::cpu::weight_gemm::PANEL;

/// Rows per chunk: A's chunk (`MC × k`) stays in L2 while the panels stream past it.
const MC: usize = 64;

/// k per block: a panel's block of B is `KC × 32` floats = 32 KB (L1 holds 32–48 KB).
const KC: usize = 256;

/// Rows of B the first row block of a k-block prefetches ahead of its loads, past the block's
/// and the panel's end (panels are contiguous, so that is the next block's start). Chosen on
/// the big model's token step (`engine_step -- big`): 8 and 16 rows ran alike and faster than
/// none; 64 rows ran slower than none (the prefetches evict the block in use).
const PREFETCH: usize = 8;

/// Whether this CPU runs the kernel (AVX-512F).
pub fn available() -> bool {
    super::tiles::avx512_available()
}

/// `C = alpha·A·B + beta·C` (`beta == 0` ignores C's previous contents): A is `m × k` with row
/// stride `lda`, B is `k × n` in panel order (`n % 16 == 0`), C is `m × n` row-major. Runs on
/// `threads` threads (≥ 1).
///
/// # Panics
/// Without AVX-512F ([`available`]), if `n % 16 != 0`, or if a slice is shorter than the
/// shape needs (callers' bugs: `ops::gemm` validates the operands and picks the twin where
/// AVX-512F is absent).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    (a, lda): (&[f32], usize),
    bp: &[f32],
    c: &mut [f32],
    alpha: f32,
    beta: f32,
    threads: usize,
) {
    assert!(available(), "weight_gemm needs AVX-512F");
    assert!(n.is_multiple_of(16), "weight_gemm: n = {n} is not a multiple of 16");
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * lda + k - 1, "A too short");
    assert!(bp.len() >= k * n && c.len() >= m * n, "B or C too short");
    if m == 0 || n == 0 {
        return;
    }
    let ops = Operands { a: a.as_ptr(), lda, b: bp.as_ptr(), c: c.as_mut_ptr(), m, n, k };
    let panels = n.div_ceil(PANEL);
    let parts = threads.clamp(1, panels);
    let run = |part: usize| {
        let cols = |q: usize| (q * panels / parts * PANEL).min(n);
        // SAFETY: AVX-512F is present (asserted); the asserts above bound every index of A, B
        // and C the shape reaches; the parts write disjoint column ranges of C.
        unsafe { columns(&ops, cols(part), cols(part + 1), alpha, beta) }
    };
    if parts == 1 {
        run(0);
    } else {
        crate::cpu::regions::enter();
        (0..parts).into_par_iter().for_each(run);
    }
}

/// The operands, shared by the column parts (each writes its own columns of C).
struct Operands {
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    m: usize,
    n: usize,
    k: usize,
}
// SAFETY: the parts only read A and B and write disjoint column ranges of C (see `gemm`).
unsafe impl Sync for Operands {}

/// Columns `j0..j1` of C (panel-aligned `j0`), blocked as the module docs say.
///
/// # Safety
/// AVX-512F; the operands cover the shape; `j0` is a multiple of [`PANEL`], `j1 ≤ n`.
#[target_feature(enable = "avx512f")]
unsafe fn columns(o: &Operands, j0: usize, j1: usize, alpha: f32, beta: f32) {
    let k = o.k;
    for i0 in (0..o.m).step_by(MC) {
        let i1 = (i0 + MC).min(o.m);
        let mut j = j0;
        while j < j1 {
            let w = (j1 - j).min(PANEL);
            let mut p0 = 0;
            loop {
                let kc = (k - p0).min(KC);
                // The first k-block scales C by beta; later ones add to it.
                let beta = if p0 == 0 { beta } else { 1.0 };
                let mut i = i0;
                while i < i1 {
                    let rows = (i1 - i).min(8);
                    // SAFETY: in bounds by the contract: rows i..i+rows, k p0..p0+kc, columns
                    // j..j+w of a panel of width w.
                    unsafe {
                        let t = Tile {
                            k: kc,
                            a: o.a.add(i * o.lda + p0),
                            lda: o.lda,
                            b: o.b.add(j * k + p0 * w),
                            ldb: w,
                            c: o.c.add(i * o.n + j),
                            ldc: o.n,
                            alpha,
                            beta,
                            fetch: i == i0,
                        };
                        if w == PANEL { by_rows::<2>(rows, &t) } else { by_rows::<1>(rows, &t) }
                    }
                    i += rows;
                }
                p0 += kc;
                if p0 >= k {
                    break;
                }
            }
            j += w;
        }
    }
}

/// One tile's operands: `C[..MR, ..16·NV] = alpha·A[..MR, ..k]·B[..k, ..16·NV] + beta·C`.
struct Tile {
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    /// Prefetch B [`PREFETCH`] rows ahead (the first row block of a k-block).
    fetch: bool,
}

/// [`tile`] for a runtime row count `rows` ∈ 1..=8.
///
/// # Safety
/// As [`tile`].
#[inline(always)]
unsafe fn by_rows<const NV: usize>(rows: usize, t: &Tile) {
    // SAFETY: forwarded.
    unsafe {
        match rows {
            8 => tile::<8, NV>(t),
            7 => tile::<7, NV>(t),
            6 => tile::<6, NV>(t),
            5 => tile::<5, NV>(t),
            4 => tile::<4, NV>(t),
            3 => tile::<3, NV>(t),
            2 => tile::<2, NV>(t),
            _ => tile::<1, NV>(t),
        }
    }
}

/// The micro-kernel: `MR × 16·NV` accumulators, k in order.
///
/// # Safety
/// AVX-512F; `t`'s pointers cover `MR` rows of A (`k` each), `k` rows of B (`16·NV` each) and
/// `MR` rows of C (`16·NV` each) at their strides.
#[inline(always)]
unsafe fn tile<const MR: usize, const NV: usize>(t: &Tile) {
    // SAFETY: in bounds by the contract; AVX-512F by the caller's `target_feature`.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut b = t.b;
        for p in 0..t.k {
            if t.fetch {
                // `wrapping_add`: past the last panel the address leaves B (a prefetch of it
                // reads nothing and cannot fault).
                let ahead = b.wrapping_add(PREFETCH * t.ldb) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                if NV == 2 {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                }
            }
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(16 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*t.a.add(r * t.lda + p));
                for (v, y) in row.iter_mut().enumerate() {
                    *y = _mm512_fmadd_ps(x, bv[v], *y);
                }
            }
            b = b.add(t.ldb);
        }
        let alpha = _mm512_set1_ps(t.alpha);
        let beta = _mm512_set1_ps(t.beta);
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                let c = t.c.add(r * t.ldc + 16 * v);
                let y = if t.beta == 0.0 {
                    _mm512_mul_ps(alpha, *x)
                } else {
                    _mm512_fmadd_ps(alpha, *x, _mm512_mul_ps(beta, _mm512_loadu_ps(c)))
                };
                _mm512_storeu_ps(c, y);
            }
        }
    }
}
