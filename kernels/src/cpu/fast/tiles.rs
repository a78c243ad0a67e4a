//! The register tiles of the in-place decode tile, written once over the SIMD width
//! ([`Lanes`]): 8 f32 lanes (AVX2 + FMA, `__m256`) or 16 (AVX-512F, `__m512`). Two products,
//! with K and V rows read in place from their pages:
//!
//! * [`qk8`]/[`qk16`]: `S = Q·Kᵀ`, `s[t][i] = Σ_p qt[i / L][p][i % L] · K[off[t] + p]`;
//! * [`pv8`]/[`pv16`]: `Oᵀ += Pᵀ·V`, `ot[p][i] += Σ_t pt[t][i] · V[off[t] + p]`.
//!
//! Layouts (`L` = lanes, `np` panels, `mp = np·L`): query panels `qt [np × d × L]`, scores and
//! probabilities `s`/`pt [tokens × mp]` token-major, the accumulated output `ot [d × mp]`.
//!
//! A register tile holds `P` panels × 6 tokens (or head-dim columns) of accumulators: per
//! head-dim element (per token) `P` panel loads and 6 broadcasts from the page feed `6·P` FMAs.
//! AVX2 has 16 registers, so `P ≤ 2` (12 accumulators); AVX-512 has 32, so `P ≤ 4` (24):
//! 64 query vectors per K/V load. Remainders run smaller tiles (panels 2/1, tokens and columns
//! 2/1).

use std::arch::x86_64::{
    __m256, __m512, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
    _mm256_storeu_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_storeu_ps,
};

/// One SIMD register of f32 lanes and the operations the tiles use. Every method needs the
/// CPU features of its width; they are `#[inline(always)]` into the `#[target_feature]`
/// entry points ([`qk8`], [`qk16`], [`pv8`], [`pv16`]), which have them.
pub(crate) trait Lanes: Copy {
    /// f32 lanes per register (query vectors per panel).
    const N: usize;
    /// Most panels per register tile (`6·MAX_PANELS + MAX_PANELS + 1` registers in use).
    const MAX_PANELS: usize;
    /// All lanes zero.
    ///
    /// # Safety
    /// The CPU features of the width.
    unsafe fn zero() -> Self;
    /// `N` floats from `p` (unaligned).
    ///
    /// # Safety
    /// The CPU features of the width; `p..p + N` readable.
    unsafe fn load(p: *const f32) -> Self;
    /// `*p` in every lane.
    ///
    /// # Safety
    /// The CPU features of the width; `p` readable.
    unsafe fn splat(p: *const f32) -> Self;
    /// `a·b + c`, fused, per lane.
    ///
    /// # Safety
    /// The CPU features of the width.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// Stores the `N` lanes at `p` (unaligned).
    ///
    /// # Safety
    /// The CPU features of the width; `p..p + N` writable.
    unsafe fn store(self, p: *mut f32);
}

impl Lanes for __m256 {
    const N: usize = 8;
    const MAX_PANELS: usize = 2;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: AVX (the caller's AVX2 + FMA).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: forwarded (features, 8 readable floats).
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: forwarded (features, `p` readable).
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: FMA (the caller's).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: forwarded (features, 8 writable floats).
        unsafe { _mm256_storeu_ps(p, self) }
    }
}

impl Lanes for __m512 {
    const N: usize = 16;
    const MAX_PANELS: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: AVX-512F (the caller's).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: forwarded (features, 16 readable floats).
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: forwarded (features, `p` readable).
        unsafe { _mm512_set1_ps(*p) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512F (the caller's).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: forwarded (features, 16 writable floats).
        unsafe { _mm512_storeu_ps(p, self) }
    }
}

/// Whether this CPU runs the 16-lane tiles (AVX-512F; AVX2 + FMA for the shared softmax step).
pub fn avx512_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

/// [`qk`] on 8-lane panels.
///
/// # Safety
/// AVX2 + FMA, and [`qk`]'s contract with `L = 8`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn qk8(
    qt: &[f32],
    np: usize,
    d: usize,
    kd: *const f32,
    off: &[usize],
    s: &mut [f32],
) {
    // SAFETY: forwarded.
    unsafe { qk::<__m256>(qt, np, d, kd, off, s) }
}

/// [`qk`] on 16-lane panels.
///
/// # Safety
/// AVX-512F, and [`qk`]'s contract with `L = 16`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn qk16(
    qt: &[f32],
    np: usize,
    d: usize,
    kd: *const f32,
    off: &[usize],
    s: &mut [f32],
) {
    // SAFETY: forwarded.
    unsafe { qk::<__m512>(qt, np, d, kd, off, s) }
}

/// [`pv`] on 8-lane panels.
///
/// # Safety
/// AVX2 + FMA, and [`pv`]'s contract with `L = 8`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn pv8(
    pt: &[f32],
    np: usize,
    d: usize,
    vd: *const f32,
    off: &[usize],
    ot: &mut [f32],
) {
    // SAFETY: forwarded.
    unsafe { pv::<__m256>(pt, np, d, vd, off, ot) }
}

/// [`pv`] on 16-lane panels.
///
/// # Safety
/// AVX-512F, and [`pv`]'s contract with `L = 16`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn pv16(
    pt: &[f32],
    np: usize,
    d: usize,
    vd: *const f32,
    off: &[usize],
    ot: &mut [f32],
) {
    // SAFETY: forwarded.
    unsafe { pv::<__m512>(pt, np, d, vd, off, ot) }
}

/// Calls `tile::<V, P, N>(args)` for the runtime tile shape `(p, n)`: `p` panels in {4, 2, 1},
/// `n` tokens or columns in {6, 2, 1} (what [`step`] returns).
macro_rules! by_shape {
    ($tile:ident::<$v:ident>($p:expr, $n:expr)($($arg:expr),*)) => {
        match ($p, $n) {
            (4, 6) => $tile::<$v, 4, 6>($($arg),*),
            (4, 2) => $tile::<$v, 4, 2>($($arg),*),
            (4, _) => $tile::<$v, 4, 1>($($arg),*),
            (2, 6) => $tile::<$v, 2, 6>($($arg),*),
            (2, 2) => $tile::<$v, 2, 2>($($arg),*),
            (2, _) => $tile::<$v, 2, 1>($($arg),*),
            (_, 6) => $tile::<$v, 1, 6>($($arg),*),
            (_, 2) => $tile::<$v, 1, 2>($($arg),*),
            _ => $tile::<$v, 1, 1>($($arg),*),
        }
    };
}

/// The widest step of a remainder: `wide`, else 2, else 1.
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

/// `s[t][i] = Σ_p qt[i / L][p][i % L] · K[off[t] + p]` for every token `t < off.len()` and
/// query vector `i < np·L` (`s` is `[bl × np·L]`).
///
/// # Safety
/// The CPU features of `V`; `kd[off[t] .. off[t] + d]` readable for every `t`;
/// `qt.len() >= np·d·L`; `s.len() == np·L·off.len()`.
#[inline(always)]
unsafe fn qk<V: Lanes>(
    qt: &[f32],
    np: usize,
    d: usize,
    kd: *const f32,
    off: &[usize],
    s: &mut [f32],
) {
    let bl = off.len();
    debug_assert!(qt.len() >= np * d * V::N && s.len() == np * V::N * bl);
    let mut t = 0;
    // Tokens outer, panels inner: the K rows of a token group stay in L1 across panels.
    while t < bl {
        let nt = step(bl - t, 6);
        let mut pn = 0;
        while pn < np {
            let p = step(np - pn, V::MAX_PANELS);
            let offs = &off[t..t + nt];
            // SAFETY: forwarded from the caller; `pn + p <= np`, `t + nt <= bl`.
            unsafe { by_shape!(qk_tile::<V>(p, nt)(qt, pn, d, kd, offs, s, bl, t)) }
            pn += p;
        }
        t += nt;
    }
}

/// One `(P panels × NT tokens)` register tile of [`qk`], panels from `pn`, tokens from `t`.
///
/// # Safety
/// As [`qk`], with `offs.len() == NT`, `pn + P <= np`, `t + NT <= bl`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
// The register tiles index the accumulators by (panel, token) counters on purpose.
#[allow(clippy::needless_range_loop)]
unsafe fn qk_tile<V: Lanes, const P: usize, const NT: usize>(
    qt: &[f32],
    pn: usize,
    d: usize,
    kd: *const f32,
    offs: &[usize],
    s: &mut [f32],
    bl: usize,
    t: usize,
) {
    let l = V::N;
    // SAFETY: the CPU features of `V` (caller).
    let zero = unsafe { V::zero() };
    let mut acc = [[zero; NT]; P];
    let panels = &qt[pn * d * l..(pn + P) * d * l];
    let mut rows = [kd; NT];
    for (r, &k) in rows.iter_mut().zip(offs) {
        // SAFETY: `kd + k` is the start of a K row of `d` readable elements (caller).
        *r = unsafe { kd.add(k) };
    }
    // Pointer increments only in the hot loop (no checked index arithmetic).
    let mut qp = [panels.as_ptr(); P];
    for (k, ptr) in qp.iter_mut().enumerate() {
        // SAFETY: panel `pn + k < np` starts inside `qt`.
        *ptr = unsafe { panels.as_ptr().add(k * d * l) };
    }
    for _ in 0..d {
        let mut a = [zero; P];
        for k in 0..P {
            // SAFETY: element `p < d` of panel `pn + k`: `L` floats inside `qt`; the pointer
            // moves on by `L` floats per element, ending one past the panel.
            unsafe {
                a[k] = V::load(qp[k]);
                qp[k] = qp[k].add(l);
            }
        }
        for j in 0..NT {
            // SAFETY: element `p < d` of token `t + j`'s K row; the pointer moves on by one,
            // ending one past the row.
            let b = unsafe {
                let b = V::splat(rows[j]);
                rows[j] = rows[j].add(1);
                b
            };
            for k in 0..P {
                // SAFETY: the CPU features of `V` (caller).
                acc[k][j] = unsafe { V::fma(a[k], b, acc[k][j]) };
            }
        }
    }
    let mp = s.len() / bl;
    for (k, acck) in acc.iter().enumerate() {
        for (j, &v) in acck.iter().enumerate() {
            let i = (t + j) * mp + (pn + k) * l;
            // SAFETY: token `t + j < bl`, panel `pn + k < np`: `L` floats inside `s`.
            unsafe { v.store(s[i..i + l].as_mut_ptr()) };
        }
    }
}

/// `ot[p][i] += Σ_t pt[t][i] · V[off[t] + p]` (`pt` = the probabilities `[bl × np·L]`) for every
/// head-dim column `p < d` and query vector `i < np·L`.
///
/// # Safety
/// The CPU features of `V`; `vd[off[t] .. off[t] + d]` readable for every `t`;
/// `pt.len() >= off.len()·np·L`; `ot.len() >= d·np·L`.
#[inline(always)]
unsafe fn pv<V: Lanes>(
    pt: &[f32],
    np: usize,
    d: usize,
    vd: *const f32,
    off: &[usize],
    ot: &mut [f32],
) {
    let mp = np * V::N;
    debug_assert!(pt.len() >= off.len() * mp && ot.len() >= d * mp);
    let mut c = 0;
    // Columns outer, panels inner: the V lines of a column group stay in L1 across panels.
    while c < d {
        let nd = step(d - c, 6);
        let mut pn = 0;
        while pn < np {
            let p = step(np - pn, V::MAX_PANELS);
            // SAFETY: forwarded from the caller; `pn + p <= np`, `c + nd <= d`.
            unsafe { by_shape!(pv_tile::<V>(p, nd)(pt, pn, mp, vd, off, ot, c)) }
            pn += p;
        }
        c += nd;
    }
}

/// One `(P panels × ND columns)` register tile of [`pv`], panels from `pn`, columns from `c0`.
///
/// # Safety
/// As [`pv`], with `pn + P <= np`, `c0 + ND <= d`.
#[inline(always)]
// The register tiles index the accumulators by (panel, column) counters on purpose.
#[allow(clippy::needless_range_loop)]
unsafe fn pv_tile<V: Lanes, const P: usize, const ND: usize>(
    pt: &[f32],
    pn: usize,
    mp: usize,
    vd: *const f32,
    off: &[usize],
    ot: &mut [f32],
    c0: usize,
) {
    let l = V::N;
    // SAFETY: the CPU features of `V` (caller).
    let zero = unsafe { V::zero() };
    let mut acc = [[zero; ND]; P];
    for (k, acck) in acc.iter_mut().enumerate() {
        for (j, a) in acck.iter_mut().enumerate() {
            let i = (c0 + j) * mp + (pn + k) * l;
            // SAFETY: column `c0 + j < d`, panel `pn + k < np`: `L` floats inside `ot`.
            *a = unsafe { V::load(ot[i..i + l].as_ptr()) };
        }
    }
    // SAFETY: panel `pn < np` of token 0 is inside `pt`.
    let mut pp = unsafe { pt.as_ptr().add(pn * l) };
    for &v in off {
        let mut a = [zero; P];
        for (k, ak) in a.iter_mut().enumerate() {
            // SAFETY: token `t < off.len()`, panel `pn + k < np`: `L` floats inside `pt`.
            *ak = unsafe { V::load(pp.add(k * l)) };
        }
        // The next token's panels (wrapping: past the end after the last token, never read).
        pp = pp.wrapping_add(mp);
        // SAFETY: `vd + v` starts token `t`'s V row of `d` readable elements (caller).
        let row = unsafe { vd.add(v + c0) };
        for j in 0..ND {
            // SAFETY: `c0 + j < d`: inside the V row.
            let b = unsafe { V::splat(row.add(j)) };
            for k in 0..P {
                // SAFETY: the CPU features of `V` (caller).
                acc[k][j] = unsafe { V::fma(a[k], b, acc[k][j]) };
            }
        }
    }
    for (k, acck) in acc.iter().enumerate() {
        for (j, &a) in acck.iter().enumerate() {
            let i = (c0 + j) * mp + (pn + k) * l;
            // SAFETY: as the load above.
            unsafe { a.store(ot[i..i + l].as_mut_ptr()) };
        }
    }
}
