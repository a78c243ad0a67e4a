//! GEMM through the `gemm` crate (runtime SIMD dispatch: AVX2/AVX-512 where present).

use gemm::Parallelism;
use rayon::prelude::*;

/// Products of fewer multiply-adds than this run on the calling thread (a quarter of it while
/// the workers poll: [`super::regions::PollingWorkers`]).
const THREAD_MIN_WORK: usize = 1 << 18;

/// Most rows of a product split into row blocks across workers (see `gemm_batched`).
const ROW_SPLIT_MAX: usize = 256;

/// Whether row blocks of `rows` give the same bits as the whole `m`-row product. With A and B
/// both row-major (`a_cs == b_cs == 1`: the engine's activations times a `[k, n]` weight) the
/// crate computes each output as `alpha·C + beta·Σₚ a·b`, summed in `p` order by its
/// micro-kernel whatever the block, as long as the k-block `kc` is the whole `k` (the crate's
/// `kc` is `min(k, 512)` for small products and at least 512 otherwise: `k <= 512` makes both
/// `k`), no block is a single row (the crate's GEMV adds into C one `p` at a time) and `k > 2`
/// (its outer-product path). Other layouts can reach the crate's dot-product path for small
/// blocks, which sums in lanes. `tests/gemm.rs` compares the bits with and without the split.
fn row_split_keeps_bits(
    m: usize,
    (n, k): (usize, usize),
    a_cs: usize,
    b_cs: usize,
    rows: usize,
) -> bool {
    (32..=ROW_SPLIT_MAX).contains(&m)
        && a_cs == 1
        && b_cs == 1
        && n >= 2
        && (3..=512).contains(&k)
        && m % rows != 1
}

/// [`THREAD_MIN_WORK`] now.
fn thread_min_work() -> usize {
    if super::regions::polling() { THREAD_MIN_WORK / 4 } else { THREAD_MIN_WORK }
}

/// One f32 GEMM `C = alpha·op(A)·op(B) + beta·C` with explicit strides (in elements):
/// element `(i, p)` of `op(A)` is `a[i*a_rs + p*a_cs]`, `(p, j)` of `op(B)` is
/// `b[p*b_rs + j*b_cs]`, C is row-major `m×n` with leading dimension `n`.
/// `beta == 0` ignores C's previous contents (NaN-safe).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    c: &mut [f32],
    alpha: f32,
    beta: f32,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for v in c[..m * n].iter_mut() {
            *v = if beta == 0.0 { 0.0 } else { beta * *v };
        }
        return;
    }
    let par = if threads > 1 {
        super::regions::enter();
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the caller's slices cover every index the strides reach (checked by
    // `ops::gemm`: a.len() >= (m-1)*a_rs + (k-1)*a_cs + 1, likewise b, and c.len() >= m*n);
    // `c` is exclusively borrowed, so the destination does not alias the sources.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// Batched form: `batch` independent GEMMs whose A, B, C start `stride_*` elements apart (a
/// stride of 0 shares one operand across the batch, as the engine's fused q|k|v and gate|up
/// launches do); `b_panels`: each B in panel order ([`super::weight_gemm`]). Several batches
/// run in parallel, each single-threaded — one fork-join for the call — unless their total
/// work is below `THREAD_MIN_WORK`: then they run one after the other on the calling thread (a
/// fork-join costs more than such products).
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_strides: (usize, usize),
    stride_a: usize,
    b: &[f32],
    b_strides: (usize, usize),
    b_panels: bool,
    stride_b: usize,
    c: &mut [f32],
    stride_c: usize,
    alpha: f32,
    beta: f32,
) {
    if batch == 1 {
        let big = m * n * k >= thread_min_work();
        let threads = if big { rayon::current_num_threads() } else { 1 };
        let rows = m.div_ceil(threads).next_multiple_of(16);
        if threads > 1
            && !b_panels
            && row_split_keeps_bits(m, (n, k), a_strides.1, b_strides.1, rows)
            && super::regions::polling()
        {
            // Row blocks, one per worker, each a single-threaded product: the crate's own split
            // of a short product leaves one worker idle for much of it.
            super::regions::enter();
            c[..m * n].par_chunks_mut(rows * n).enumerate().for_each(|(i, cb)| {
                let (i0, mi) = (i * rows, cb.len() / n);
                let ab = &a[i0 * a_strides.0..];
                one(mi, n, k, ab, a_strides, b, (b_strides, false), cb, alpha, beta, 1);
            });
            return;
        }
        one(m, n, k, a, a_strides, b, (b_strides, b_panels), c, alpha, beta, threads);
        return;
    }
    if batch == 0 || m * n == 0 {
        return;
    }
    if batch.saturating_mul(m * n).saturating_mul(k) < thread_min_work() {
        for i in 0..batch {
            let (ab, bb) = (&a[(i * stride_a).min(a.len())..], &b[(i * stride_b).min(b.len())..]);
            let cb = &mut c[i * stride_c..i * stride_c + m * n];
            one(m, n, k, ab, a_strides, bb, (b_strides, b_panels), cb, alpha, beta, 1);
        }
        return;
    }
    // stride_c >= m*n is validated, so the chunks are disjoint.
    super::regions::enter();
    c.par_chunks_mut(stride_c).take(batch).enumerate().for_each(|(i, cb)| {
        let ab = &a[(i * stride_a).min(a.len())..];
        let bb = &b[(i * stride_b).min(b.len())..];
        one(m, n, k, ab, a_strides, bb, (b_strides, b_panels), cb, alpha, beta, 1);
    });
}

/// One product of `ops::gemm`: with B in panel order (`b_panels`) the weight GEMM
/// ([`super::fast::weight_gemm`] where the CPU has AVX-512F, else its twin
/// [`super::weight_gemm`]), else the `gemm` crate.
#[allow(clippy::too_many_arguments)]
fn one(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    (b_strides, b_panels): ((usize, usize), bool),
    c: &mut [f32],
    alpha: f32,
    beta: f32,
    threads: usize,
) {
    if !b_panels {
        gemm_strided(m, n, k, a, a_strides, b, b_strides, c, alpha, beta, threads);
        return;
    }
    debug_assert_eq!(a_strides.1, 1, "ops::gemm checks trans_a = N with b_panels");
    #[cfg(target_arch = "x86_64")]
    if super::fast::weight_gemm::available() {
        let a = (a, a_strides.0);
        super::fast::weight_gemm::gemm(m, n, k, a, b, c, alpha, beta, threads);
        return;
    }
    super::weight_gemm::gemm(m, n, k, (a, a_strides.0), b, c, alpha, beta);
}
