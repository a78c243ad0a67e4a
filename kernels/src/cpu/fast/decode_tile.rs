//! The fast twin of [`cpu::decode_tile`](crate::cpu::decode_tile): the same contract
//! ([`Tile::attend`]), but K and V are read **in place** from their pages — no block is
//! gathered into a contiguous copy — by register-tiled AVX2 + FMA micro-kernels. On a CPU
//! without AVX2 and FMA (or another architecture) it runs the reference tile.
//!
//! Layout of one block of up to [`BLOCK`] tokens (`mp` = `m` rounded up to 8, the query vectors
//! in panels of 8 — one AVX2 register — padded with zero queries):
//!
//! * `qt [panels × head_dim × 8]`: `scale · Q`, transposed per panel (packed once per task);
//! * `off [tokens]`: the element offset of each token's K row in the cache (V = `+ stride_kv`);
//! * `S = Q·Kᵀ` by a kernel over (2 panels × 6 tokens) of accumulators: per `d`, two panel
//!   loads and six broadcasts of `K[token][d]` straight from the pages; stored token-major,
//!   `s [bl × mp]`, one vector store per accumulator;
//! * the online softmax vectorized across query vectors (mask past each vector's limit, running
//!   max, the polynomial `exp` of the reference's `exp_shifted`, running sum, `alpha` rescale of
//!   the accumulated output): `s` becomes the probabilities in place, still token-major;
//! * `Oᵀ += Pᵀ·V` by a kernel over (2 panels × 6 head-dim columns): per token, two panel loads
//!   of the probabilities and six broadcasts of `V[token][d]` from the pages, accumulated in
//!   `ot [head_dim × mp]`.
//!
//! Each K/V element is loaded once per pair of panels (16 query vectors) from L1, and never
//! copied: the cache lines of a shared page are read where they lie.
//!
//! On a CPU with AVX-512F, a tile of more than 8 query vectors runs the same steps on panels of
//! 16 (`tiles.rs`: 4 panels × 6 tokens of accumulators, 64 vectors per K/V
//! load); with 1–3 query vectors (one leaf's GQA group) the row tile (`rows.rs`) runs instead,
//! lanes along `head_dim` so that none is padding; [`Kernels::for_vectors`] picks.

#[cfg(target_arch = "x86_64")]
use super::tiles;
#[cfg(target_arch = "x86_64")]
use crate::cpu::decode_tile::fast_exp;
use crate::cpu::decode_tile::{self, Chunk, KvHead, Tile};

/// Tokens per block (the scores of a block for 64 query vectors are 32 KiB).
pub const BLOCK: usize = 128;

/// The in-place tile (see the [module docs](self)).
#[derive(Clone, Copy, Debug)]
pub struct InPlace;

/// Reusable buffers of [`InPlace`].
#[derive(Default, Debug)]
pub struct Scratch {
    pub(super) qt: Vec<f32>,
    pub(super) off: Vec<usize>,
    pub(super) s: Vec<f32>,
    ot: Vec<f32>,
    mx: Vec<f32>,
    pub(super) m: Vec<f32>,
    pub(super) l: Vec<f32>,
    alpha: Vec<f32>,
    reference: decode_tile::Scratch,
}

impl Tile for InPlace {
    type Scratch = Scratch;
    fn attend(
        kv: &KvHead<'_>,
        chunk: &Chunk<'_>,
        q: &[f32],
        lim: &[i64],
        scale: f32,
        o: &mut [f32],
        lse: &mut [f32],
        sc: &mut Scratch,
    ) {
        attend(kv, chunk, q, lim, scale, o, lse, sc);
    }
}

/// Whether this CPU runs the in-place kernels (else [`attend`] runs the reference tile).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which register tiles run a tile call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The reference tile (gather copy + GEMM): any CPU.
    Reference,
    /// The in-place row tile (`cpu/fast/rows.rs`: lanes along `head_dim`, for 1–3 query
    /// vectors): AVX2 + FMA. Runs the reference where `head_dim` is not a multiple of 8.
    Rows,
    /// The in-place 8-lane tiles: AVX2 + FMA.
    Avx2,
    /// The in-place 16-lane tiles (`cpu/fast/tiles.rs`): AVX-512F.
    Avx512,
}

impl Kernels {
    /// Whether this CPU runs these kernels.
    pub fn available(self) -> bool {
        match self {
            Kernels::Reference => true,
            Kernels::Rows | Kernels::Avx2 => available(),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => super::tiles::avx512_available(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Avx512 => false,
        }
    }

    /// The kernels [`attend`] runs for `m` query vectors on this CPU: the 16-lane tiles for more
    /// than one 8-lane panel (from 9 vectors on both widths pad to 16 lanes, and the 16-lane
    /// tiles do more work per load), the 8-lane tiles from half an 8-lane panel on, else the
    /// row tile (the reference without AVX2).
    ///
    /// Fewer than half a panel of query vectors (a single leaf's GQA group of 1–3): padded lanes
    /// cost more than the reference's gather copy saves (the engine's per-leaf decode of 64
    /// leaves over a 480-token prompt, group 2: 123–141 ms per segment on the panels, 80–81 ms
    /// on the reference), and the row tile beats both (46–47 ms on another host where the
    /// reference ran 54–55; `docs/engine.md`).
    /// The width thresholds are measured per `m` by the `TILE_WIDTHS` table of
    /// `cargo bench -p treepo-benches --bench tree_decode` (see `docs/tree-attn.md`, "CPU
    /// tiles"): at m = 4 and 8 the 8-lane tiles are fastest, from 12 on the 16-lane ones.
    pub fn for_vectors(m: usize) -> Kernels {
        if m > 8 && Kernels::Avx512.available() {
            Kernels::Avx512
        } else if 2 * m >= 8 && Kernels::Avx2.available() {
            Kernels::Avx2
        } else if Kernels::Rows.available() {
            Kernels::Rows
        } else {
            Kernels::Reference
        }
    }
}

/// Attends `q` (`[m × head_dim]`) to `chunk` for one KV head: the contract of
/// [`decode_tile::attend`], reading K/V in place, on the kernels
/// [`Kernels::for_vectors`]`(m)` picks.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    kv: &KvHead<'_>,
    chunk: &Chunk<'_>,
    q: &[f32],
    lim: &[i64],
    scale: f32,
    o: &mut [f32],
    lse: &mut [f32],
    sc: &mut Scratch,
) {
    attend_on(Kernels::for_vectors(lim.len()), kv, chunk, q, lim, scale, o, lse, sc);
}

/// [`attend`] on the given kernels (tests and benches compare the widths on one CPU).
///
/// # Panics
/// If `kernels` is not [available](Kernels::available) on this CPU.
#[allow(clippy::too_many_arguments)]
pub fn attend_on(
    kernels: Kernels,
    kv: &KvHead<'_>,
    chunk: &Chunk<'_>,
    q: &[f32],
    lim: &[i64],
    scale: f32,
    o: &mut [f32],
    lse: &mut [f32],
    sc: &mut Scratch,
) {
    assert!(kernels.available(), "{kernels:?} kernels are not available on this CPU");
    #[cfg(target_arch = "x86_64")]
    let panels = match kernels {
        Kernels::Rows if kv.head_dim.is_multiple_of(8) => {
            // SAFETY: the CPU supports AVX2 and FMA (`Rows` is available, asserted above) and
            // `head_dim` is a multiple of 8 (the guard).
            return unsafe { super::rows::attend_rows(kv, chunk, q, lim, scale, o, lse, sc) };
        }
        Kernels::Reference | Kernels::Rows => {
            return decode_tile::attend(kv, chunk, q, lim, scale, o, lse, &mut sc.reference);
        }
        Kernels::Avx2 => Panels::AVX2,
        Kernels::Avx512 => Panels::AVX512,
    };
    #[cfg(not(target_arch = "x86_64"))]
    return decode_tile::attend(kv, chunk, q, lim, scale, o, lse, &mut sc.reference);
    // At most GROUP query vectors per pass over the range, in near-equal groups of whole
    // panels: the scores of a block and the query panels of more would spill out of L1
    // (measured: 16-lane tiles at m = 64 run 109 GFLOP/s on one thread, at m = 128 in one pass
    // 64; the `TILE_WIDTHS` table of `--bench tree_decode`). A group re-reads the range's K/V
    // from L2/L3, cheap next to its FLOPs.
    #[cfg(target_arch = "x86_64")]
    {
        let (m, d, lanes) = (lim.len(), kv.head_dim, panels.lanes);
        let size = m.div_ceil(m.div_ceil(GROUP).max(1)).next_multiple_of(lanes).max(lanes);
        let mut g0 = 0;
        while g0 < m {
            let g1 = (g0 + size).min(m);
            let (q, lim) = (&q[g0 * d..g1 * d], &lim[g0..g1]);
            let (o, lse) = (&mut o[g0 * d..g1 * d], &mut lse[g0..g1]);
            // SAFETY: the CPU supports AVX2 and FMA, and AVX-512F where the panels are the
            // 16-lane ones (`kernels` is available, asserted above): the features
            // `attend_panels` and the panels' products are compiled for.
            unsafe { attend_panels(panels, kv, chunk, q, lim, scale, o, lse, sc) };
            g0 = g1;
        }
    }
}

/// Most query vectors of one pass of the in-place tiles over a range (see [`attend_on`]).
#[cfg(target_arch = "x86_64")]
const GROUP: usize = 64;

/// A block product of one panel width: `S = Q·Kᵀ` or `Oᵀ += Pᵀ·V` (the signatures of
/// [`tiles::qk8`] and [`tiles::pv8`]).
#[cfg(target_arch = "x86_64")]
pub(crate) type Product = unsafe fn(&[f32], usize, usize, *const f32, &[usize], &mut [f32]);

/// The register tiles of one panel width: `lanes` query vectors per panel and the two block
/// products on such panels. Calling a product needs the CPU features of its width (AVX2 + FMA
/// for [`Panels::AVX2`], AVX-512F for [`Panels::AVX512`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Panels {
    /// Query vectors per panel.
    pub lanes: usize,
    /// `S = Q·Kᵀ` at this width.
    pub qk: Product,
    /// `Oᵀ += Pᵀ·V` at this width.
    pub pv: Product,
}

#[cfg(target_arch = "x86_64")]
impl Panels {
    /// The 8-lane AVX2 + FMA tiles.
    pub(crate) const AVX2: Panels = Panels { lanes: 8, qk: tiles::qk8, pv: tiles::pv8 };
    /// The 16-lane AVX-512F tiles.
    pub(crate) const AVX512: Panels = Panels { lanes: 16, qk: tiles::qk16, pv: tiles::pv16 };

    /// The panels for `m` query vectors on a CPU with AVX2 + FMA: the 16-lane ones where
    /// [`Kernels::for_vectors`] picks them, else the 8-lane ones.
    pub(crate) fn for_vectors(m: usize) -> Panels {
        if Kernels::for_vectors(m) == Kernels::Avx512 { Panels::AVX512 } else { Panels::AVX2 }
    }
}

/// The in-place tile on `panels` (see the [module docs](self)).
///
/// # Safety
/// The CPU must support AVX2, FMA and the features of `panels`' products.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_panels(
    panels: Panels,
    kv: &KvHead<'_>,
    chunk: &Chunk<'_>,
    q: &[f32],
    lim: &[i64],
    scale: f32,
    o: &mut [f32],
    lse: &mut [f32],
    sc: &mut Scratch,
) {
    let Panels { lanes, qk, pv } = panels;
    let (m, d) = (lim.len(), kv.head_dim);
    let np = m.div_ceil(lanes);
    let mp = np * lanes;
    let q = &q[..m * d];
    let (o, lse) = (&mut o[..m * d], &mut lse[..m]);
    // Qᵀ per panel, scaled; padding query vectors are zero (their scores are ignored).
    sc.qt.clear();
    sc.qt.resize(np * d * lanes, 0.0);
    for (i, row) in q.chunks_exact(d.max(1)).enumerate() {
        let panel = &mut sc.qt[(i / lanes) * d * lanes..][..d * lanes];
        for (p, &x) in row.iter().enumerate() {
            panel[p * lanes + i % lanes] = x * scale;
        }
    }
    sc.ot.clear();
    sc.ot.resize(d * mp, 0.0);
    sc.m.clear();
    sc.m.resize(mp, f32::NEG_INFINITY);
    sc.l.clear();
    sc.l.resize(mp, 0.0);
    sc.alpha.clear();
    sc.alpha.resize(mp, 1.0);
    let hi = chunk.seen_end(lim);
    let mut t0 = chunk.kv_start;
    while t0 < hi {
        let bl = BLOCK.min(hi - t0);
        row_offsets(kv, chunk, t0, bl, &mut sc.off);
        sc.s.clear();
        sc.s.resize(bl * mp, 0.0);
        // SAFETY: every offset in `off` has its K row in `kv.data` (asserted above); `qt` holds
        // `np` panels of `d × lanes`; `s` holds `bl × mp`; the CPU features are the caller's.
        unsafe { qk(&sc.qt, np, d, kv.data.as_ptr(), &sc.off, &mut sc.s) };
        softmax_block(&mut sc.s, bl, mp, lim, t0, &mut sc.m, &mut sc.l, &mut sc.alpha, &mut sc.mx);
        if sc.alpha.iter().any(|&a| a != 1.0) {
            for orow in sc.ot.chunks_exact_mut(mp) {
                for (x, a) in orow.iter_mut().zip(&sc.alpha) {
                    *x *= a;
                }
            }
        }
        // SAFETY: every offset in `off` has its V row (`+ stride_kv`) in `kv.data` (asserted
        // above); `s` holds `bl × mp`, `ot` holds `d × mp`; the CPU features are the caller's.
        unsafe {
            pv(&sc.s, np, d, kv.data.as_ptr().add(kv.stride_kv), &sc.off, &mut sc.ot);
        }
        t0 += bl;
    }
    for i in 0..m {
        let l = sc.l[i];
        let orow = &mut o[i * d..(i + 1) * d];
        if l > 0.0 {
            let inv = 1.0 / l;
            for (p, x) in orow.iter_mut().enumerate() {
                *x = sc.ot[p * mp + i] * inv;
            }
            lse[i] = sc.m[i] + l.ln();
        } else {
            orow.fill(0.0);
            lse[i] = f32::NEG_INFINITY;
        }
    }
}

/// `off[t]` = the element offset in `kv.data` of the K row of position `t0 + t`, for `t` in
/// `0..bl` (the V row is at `+ stride_kv`).
///
/// # Panics
/// If a K or V row does not lie inside `kv.data`: the in-place kernels read `[k, k + d)` and
/// `[k + stride_kv, k + stride_kv + d)` without bounds checks.
pub(crate) fn row_offsets(
    kv: &KvHead<'_>,
    chunk: &Chunk<'_>,
    t0: usize,
    bl: usize,
    off: &mut Vec<usize>,
) {
    let (d, len) = (kv.head_dim, kv.data.len());
    off.clear();
    // Page by page: one division for the block, not two per token.
    let (mut rel, end) = (t0 - chunk.kv_start, t0 + bl - chunk.kv_start);
    while rel < end {
        let (page, slot) = (chunk.pages[rel / kv.page_size] as usize, rel % kv.page_size);
        let n = (kv.page_size - slot).min(end - rel);
        // Checked: the rows in between lie between the first and the last only without wrap.
        let first = page
            .checked_mul(kv.stride_page)
            .and_then(|p| p.checked_add(kv.base))
            .and_then(|p| p.checked_add(slot.checked_mul(kv.stride_token)?));
        let last = first.and_then(|f| f.checked_add((n - 1).checked_mul(kv.stride_token)?));
        let v_end = last.and_then(|l| l.checked_add(kv.stride_kv)?.checked_add(d));
        let (Some(first), Some(v_end)) = (first, v_end) else { panic!("K/V row out of the cache") };
        assert!(v_end <= len, "K/V row out of the cache");
        off.extend((0..n).map(|i| first + i * kv.stride_token));
        rel += n;
    }
}

/// The online-softmax step of one block, vectorized across query vectors: `s` holds the scores
/// `[bl × mp]` of positions `t0..t0 + bl` and becomes the probabilities (0 where masked:
/// position `> lim[i]`, or a padding vector `i >= lim.len()`). Updates the running max `m` and
/// sum `l` per vector and sets `alpha`, the factor the accumulated output must be scaled by.
/// Same arithmetic as the reference row loop (`exp_shifted`'s polynomial, `f32::exp` for
/// `alpha`); only the summation order of a block's probabilities differs.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn softmax_block(
    s: &mut [f32],
    bl: usize,
    mp: usize,
    lim: &[i64],
    t0: usize,
    m: &mut [f32],
    l: &mut [f32],
    alpha: &mut [f32],
    mx: &mut Vec<f32>,
) {
    // Mask: positions past each vector's limit (all of a padding vector's) score -inf.
    for i in 0..mp {
        let nvalid = lim.get(i).map_or(0, |&x| (x + 1 - t0 as i64).clamp(0, bl as i64) as usize);
        for t in nvalid..bl {
            s[t * mp + i] = f32::NEG_INFINITY;
        }
    }
    mx.clear();
    mx.resize(mp, f32::NEG_INFINITY);
    for row in s.chunks_exact(mp) {
        for (a, &x) in mx.iter_mut().zip(row) {
            *a = a.max(x);
        }
    }
    // `mx` becomes the shift: the new running max, or 0 for a vector that has seen no key yet
    // (its scores are all -inf and give 0; -inf - -inf would be NaN).
    for i in 0..mp {
        let m_new = m[i].max(mx[i]);
        if m_new == f32::NEG_INFINITY {
            alpha[i] = 1.0;
            mx[i] = 0.0;
        } else {
            alpha[i] = (m[i] - m_new).exp();
            m[i] = m_new;
            mx[i] = m_new;
        }
    }
    exp_rows(s, mx, mp, l, alpha);
}

/// `s[t][i] = exp(s[t][i] - shift[i])` (the polynomial of
/// [`exp_shifted`](crate::cpu::decode_tile::exp_shifted)) and
/// `l[i] = l[i]·alpha[i] + Σ_t s[t][i]`, on AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
fn exp_rows(s: &mut [f32], shift: &[f32], mp: usize, l: &mut [f32], alpha: &[f32]) {
    // SAFETY: `attend_avx2`, the only caller, runs on a CPU with AVX2 and FMA.
    unsafe { exp_rows_avx2(s, shift, mp, l, alpha) }
}

/// [`exp_rows`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_rows_avx2(s: &mut [f32], shift: &[f32], mp: usize, l: &mut [f32], alpha: &[f32]) {
    let shift = &shift[..mp];
    let mut sum = [0f32; 256];
    let mut i0 = 0;
    // Query vectors in groups of up to 256 (a sum buffer on the stack); tokens inner.
    while i0 < mp {
        let n = (mp - i0).min(256);
        let (sh, acc) = (&shift[i0..i0 + n], &mut sum[..n]);
        acc.fill(0.0);
        for row in s.chunks_exact_mut(mp) {
            for ((x, &c), a) in row[i0..i0 + n].iter_mut().zip(sh).zip(acc.iter_mut()) {
                let e = fast_exp(*x - c);
                *x = e;
                *a += e;
            }
        }
        for ((li, &al), &a) in l[i0..i0 + n].iter_mut().zip(&alpha[i0..i0 + n]).zip(acc.iter()) {
            *li = *li * al + a;
        }
        i0 += n;
    }
}
