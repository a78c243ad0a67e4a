//! RMSNorm backward (forward `y = x·r·w`, `r = rstd[row] = 1/sqrt(mean(x²) + eps)`), ACCUMULATING:
//! `dx += r·(g − x·r²·mean(g⊙x))` with `g = w⊙dy`, and `dw += Σ_rows dy⊙x·r`.
//!
//! Rows are processed in parallel in fixed chunks of [`ROWS_PER_CHUNK`]; each chunk sums its
//! rows' `dy⊙x·r` into a partial `dw`, and the partials are added in chunk order, so the result
//! does not depend on the thread count.

use rayon::prelude::*;

/// Rows per parallel chunk (and per partial `dw`).
pub const ROWS_PER_CHUNK: usize = 32;

/// `dy`, `x`, `dx`: `[rows, dim]`; `w`, `dw`: `[dim]`; `rstd`: `[rows]`.
pub fn rmsnorm_bwd(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    dim: usize,
) {
    let chunk = ROWS_PER_CHUNK * dim;
    super::regions::enter();
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(chunk)
        .zip(dy.par_chunks(chunk).zip(x.par_chunks(chunk)))
        .zip(rstd.par_chunks(ROWS_PER_CHUNK))
        .map(|((dxc, (dyc, xc)), rc)| {
            let mut part = vec![0f32; dim];
            for (((dxr, dyr), xr), &r) in
                dxc.chunks_mut(dim).zip(dyc.chunks(dim)).zip(xc.chunks(dim)).zip(rc)
            {
                let s: f32 = dyr.iter().zip(xr).zip(w).map(|((d, xv), wv)| wv * d * xv).sum();
                let c = r * r * r * (s / dim as f32);
                for j in 0..dim {
                    dxr[j] += r * (w[j] * dyr[j]) - xr[j] * c;
                    part[j] += dyr[j] * xr[j] * r;
                }
            }
            part
        })
        .collect();
    for part in &partials {
        for (d, p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
}
