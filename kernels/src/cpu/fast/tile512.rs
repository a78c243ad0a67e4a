//! The 16-lane (AVX-512F) register tiles of the in-place decode tile: the same two products as
//! the 8-lane AVX2 kernels of [`decode_tile`](super::decode_tile) (`S = Q·Kᵀ` and
//! `Oᵀ += Pᵀ·V`, K and V read in place from their pages), on panels of 16 query vectors.
//!
//! Why a second width: a wide tile (a shared prefix's many leaves × the GQA group) fills 16-lane
//! panels, and AVX-512 has 32 registers, so a tile holds 4 panels × 6 tokens (or columns) = 24
//! accumulators: per head-dim element (per token) 4 panel loads and 6 broadcasts feed 24 FMAs of
//! 16 lanes, where the AVX2 tile feeds 12 FMAs of 8 lanes with 8 loads. A leaf's own group of
//! 1–8 vectors gains nothing (a 16-lane panel would be half padding or more): the caller picks the
//! width by the number of query vectors ([`Kernels::for_vectors`](super::decode_tile::Kernels::for_vectors)).
//!
//! Layouts are those of the AVX2 kernels with `LANES = 16`: `qt [np × d × 16]`, `s`/`pt`
//! `[bl × np·16]` token-major, `ot [d × np·16]`.

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

/// Query vectors per panel (one zmm register of f32).
pub(crate) const LANES: usize = 16;

/// Whether this CPU runs these kernels (AVX-512F; AVX2 + FMA for the shared softmax step).
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

/// The widest tile count of a remainder: 4, 2 or 1 panels (6, 2 or 1 tokens/columns).
#[inline(always)]
fn step(left: usize, wide: usize) -> usize {
    if left >= wide {
        wide
    } else if left >= 2 {
        2
    } else {
        1
    }
}

/// `s[t][i] = Σ_p qt[i / 16][p][i % 16] · K[off[t] + p]` for every token `t < off.len()` and
/// query vector `i < np·16` (`s` is `[bl × np·16]`).
///
/// # Safety
/// AVX-512F; `kd[off[t] .. off[t] + d]` readable for every `t`; `qt.len() >= np·d·16`;
/// `s.len() == np·16·off.len()`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn qk(
    qt: &[f32],
    np: usize,
    d: usize,
    kd: *const f32,
    off: &[usize],
    s: &mut [f32],
) {
    let bl = off.len();
    debug_assert!(qt.len() >= np * d * LANES && s.len() == np * LANES * bl);
    let mut t = 0;
    // Tokens outer, panels inner: the K rows of a token group stay in L1 across panels.
    while t < bl {
        let nt = step(bl - t, 6);
        let mut pn = 0;
        while pn < np {
            let p = step(np - pn, 4);
            let offs = &off[t..t + nt];
            // SAFETY: forwarded from the caller; `pn + p <= np`, `t + nt <= bl`.
            unsafe {
                match (p, nt) {
                    (4, 6) => qk_tile::<4, 6>(qt, pn, d, kd, offs, s, bl, t),
                    (4, 2) => qk_tile::<4, 2>(qt, pn, d, kd, offs, s, bl, t),
                    (4, _) => qk_tile::<4, 1>(qt, pn, d, kd, offs, s, bl, t),
                    (2, 6) => qk_tile::<2, 6>(qt, pn, d, kd, offs, s, bl, t),
                    (2, 2) => qk_tile::<2, 2>(qt, pn, d, kd, offs, s, bl, t),
                    (2, _) => qk_tile::<2, 1>(qt, pn, d, kd, offs, s, bl, t),
                    (_, 6) => qk_tile::<1, 6>(qt, pn, d, kd, offs, s, bl, t),
                    (_, 2) => qk_tile::<1, 2>(qt, pn, d, kd, offs, s, bl, t),
                    _ => qk_tile::<1, 1>(qt, pn, d, kd, offs, s, bl, t),
                }
            }
            pn += p;
        }
        t += nt;
    }
}

/// One `(P panels × NT tokens)` register tile of [`qk`], panels from `pn`, tokens from `t`.
///
/// # Safety
/// As [`qk`], with `offs.len() == NT`, `pn + P <= np`, `t + NT <= bl`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
// The register tiles index the accumulators by (panel, token) counters on purpose.
#[allow(clippy::needless_range_loop)]
#[inline]
unsafe fn qk_tile<const P: usize, const NT: usize>(
    qt: &[f32],
    pn: usize,
    d: usize,
    kd: *const f32,
    offs: &[usize],
    s: &mut [f32],
    bl: usize,
    t: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NT]; P];
    let panels = &qt[pn * d * LANES..(pn + P) * d * LANES];
    let mut rows = [kd; NT];
    for (r, &k) in rows.iter_mut().zip(offs) {
        // SAFETY: `kd + k` is the start of a K row of `d` readable elements (caller).
        *r = unsafe { kd.add(k) };
    }
    let mut qp = [panels.as_ptr(); P];
    for (k, ptr) in qp.iter_mut().enumerate() {
        // SAFETY: panel `pn + k < np` starts inside `qt`.
        *ptr = unsafe { panels.as_ptr().add(k * d * LANES) };
    }
    for _ in 0..d {
        let mut a: [__m512; P] = [_mm512_setzero_ps(); P];
        for k in 0..P {
            // SAFETY: element `p < d` of panel `pn + k`: 16 floats inside `qt`; the pointer
            // moves on by 16 floats per element, ending one past the panel.
            unsafe {
                a[k] = _mm512_loadu_ps(qp[k]);
                qp[k] = qp[k].add(LANES);
            }
        }
        for j in 0..NT {
            // SAFETY: element `p < d` of token `t + j`'s K row; the pointer moves on by one,
            // ending one past the row.
            let b = unsafe {
                let b = _mm512_set1_ps(*rows[j]);
                rows[j] = rows[j].add(1);
                b
            };
            for k in 0..P {
                acc[k][j] = _mm512_fmadd_ps(a[k], b, acc[k][j]);
            }
        }
    }
    let mp = s.len() / bl;
    for (k, acck) in acc.iter().enumerate() {
        for (j, &v) in acck.iter().enumerate() {
            let i = (t + j) * mp + (pn + k) * LANES;
            // SAFETY: token `t + j < bl`, panel `pn + k < np`: 16 floats inside `s`.
            unsafe { _mm512_storeu_ps(s[i..i + LANES].as_mut_ptr(), v) };
        }
    }
}

/// `ot[p][i] += Σ_t pt[t][i] · V[off[t] + p]` (`pt` = the probabilities `[bl × np·16]`) for
/// every head-dim column `p < d` and query vector `i < np·16`.
///
/// # Safety
/// AVX-512F; `vd[off[t] .. off[t] + d]` readable for every `t`; `pt.len() >= off.len()·np·16`;
/// `ot.len() >= d·np·16`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn pv(
    pt: &[f32],
    np: usize,
    d: usize,
    vd: *const f32,
    off: &[usize],
    ot: &mut [f32],
) {
    let mp = np * LANES;
    debug_assert!(pt.len() >= off.len() * mp && ot.len() >= d * mp);
    let mut c = 0;
    // Columns outer, panels inner: the V lines of a column group stay in L1 across panels.
    while c < d {
        let nd = step(d - c, 6);
        let mut pn = 0;
        while pn < np {
            let p = step(np - pn, 4);
            // SAFETY: forwarded from the caller; `pn + p <= np`, `c + nd <= d`.
            unsafe {
                match (p, nd) {
                    (4, 6) => pv_tile::<4, 6>(pt, pn, mp, vd, off, ot, c),
                    (4, 2) => pv_tile::<4, 2>(pt, pn, mp, vd, off, ot, c),
                    (4, _) => pv_tile::<4, 1>(pt, pn, mp, vd, off, ot, c),
                    (2, 6) => pv_tile::<2, 6>(pt, pn, mp, vd, off, ot, c),
                    (2, 2) => pv_tile::<2, 2>(pt, pn, mp, vd, off, ot, c),
                    (2, _) => pv_tile::<2, 1>(pt, pn, mp, vd, off, ot, c),
                    (_, 6) => pv_tile::<1, 6>(pt, pn, mp, vd, off, ot, c),
                    (_, 2) => pv_tile::<1, 2>(pt, pn, mp, vd, off, ot, c),
                    _ => pv_tile::<1, 1>(pt, pn, mp, vd, off, ot, c),
                }
            }
            pn += p;
        }
        c += nd;
    }
}

/// One `(P panels × ND columns)` register tile of [`pv`], panels from `pn`, columns from `c0`.
///
/// # Safety
/// As [`pv`], with `pn + P <= np`, `c0 + ND <= d`.
#[target_feature(enable = "avx512f")]
// The register tiles index the accumulators by (panel, column) counters on purpose.
#[allow(clippy::needless_range_loop)]
#[inline]
unsafe fn pv_tile<const P: usize, const ND: usize>(
    pt: &[f32],
    pn: usize,
    mp: usize,
    vd: *const f32,
    off: &[usize],
    ot: &mut [f32],
    c0: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); ND]; P];
    for (k, acck) in acc.iter_mut().enumerate() {
        for (j, a) in acck.iter_mut().enumerate() {
            let i = (c0 + j) * mp + (pn + k) * LANES;
            // SAFETY: column `c0 + j < d`, panel `pn + k < np`: 16 floats inside `ot`.
            *a = unsafe { _mm512_loadu_ps(ot[i..i + LANES].as_ptr()) };
        }
    }
    // SAFETY: panel `pn < np` of token 0 is inside `pt`.
    let mut pp = unsafe { pt.as_ptr().add(pn * LANES) };
    for &v in off {
        let mut a: [__m512; P] = [_mm512_setzero_ps(); P];
        for (k, ak) in a.iter_mut().enumerate() {
            // SAFETY: token `t < off.len()`, panel `pn + k < np`: 16 floats inside `pt`.
            *ak = unsafe { _mm512_loadu_ps(pp.add(k * LANES)) };
        }
        // The next token's panels (wrapping: past the end after the last token, never read).
        pp = pp.wrapping_add(mp);
        // SAFETY: `vd + v` starts token `t`'s V row of `d` readable elements (caller).
        let row = unsafe { vd.add(v + c0) };
        for j in 0..ND {
            // SAFETY: `c0 + j < d`: inside the V row.
            let b = unsafe { _mm512_set1_ps(*row.add(j)) };
            for k in 0..P {
                acc[k][j] = _mm512_fmadd_ps(a[k], b, acc[k][j]);
            }
        }
    }
    for (k, acck) in acc.iter().enumerate() {
        for (j, &a) in acck.iter().enumerate() {
            let i = (c0 + j) * mp + (pn + k) * LANES;
            // SAFETY: as the load above.
            unsafe { _mm512_storeu_ps(ot[i..i + LANES].as_mut_ptr(), a) };
        }
    }
}
