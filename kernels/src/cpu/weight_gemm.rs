//! GEMM with a constant weight stored in panel order: the readable twin of
//! [`fast::weight_gemm`](super::fast::weight_gemm), which the CPU backend runs where the CPU
//! has AVX-512F.
//!
//! *Panel order* ([`pack`]): a row-major `B[k, n]` (`n % 16 == 0`) cut into panels of
//! [`PANEL`] = 32 columns (the last one 16 wide when `n % 32 == 16`), stored one after the other,
//! each as `k` rows of its width. The panel that starts at column `j` starts at element `j·k`.
//! A micro-kernel then reads one contiguous run of B per k, and B is never repacked per call —
//! the `gemm` crate repacks its B on every call, and has no API to keep a packed operand.

/// Columns of one panel.
pub const PANEL: usize = 32;

/// `B[k, n]` (row-major, row stride `n`) in panel order (see the module docs).
///
/// # Panics
/// If `n % 16 != 0` or `b.len() < k·n` (callers check: `ops::pack_panels` returns an error).
pub fn pack(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert!(
        n.is_multiple_of(16) && b.len() >= k * n,
        "pack: n = {n} not a multiple of 16 or B short"
    );
    let mut out = Vec::with_capacity(k * n);
    for j in (0..n).step_by(PANEL) {
        let w = (n - j).min(PANEL);
        for p in 0..k {
            out.extend_from_slice(&b[p * n + j..p * n + j + w]);
        }
    }
    out
}

/// Element `(p, j)` of a `k × n` matrix in panel order.
pub fn at(bp: &[f32], k: usize, n: usize, p: usize, j: usize) -> f32 {
    let j0 = j / PANEL * PANEL;
    let w = (n - j0).min(PANEL);
    bp[j0 * k + p * w + (j - j0)]
}

/// `C = alpha·A·B + beta·C` (`beta == 0` ignores C's previous contents): A is `m × k` with row
/// stride `lda`, B is `k × n` in panel order, C is `m × n` row-major. Each output is one f32
/// sum over k in order.
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
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for p in 0..k {
                acc += a[i * lda + p] * at(bp, k, n, p, j);
            }
            let prev = if beta == 0.0 { 0.0 } else { beta * c[i * n + j] };
            c[i * n + j] = alpha * acc + prev;
        }
    }
}
