//! Variable-length merge of attention states: for each row `r`, the states
//! `indptr[r]..indptr[r+1]` of `(o [heads, head_dim], lse [heads])` combine into
//! `o = Σ exp(lse_i - M)·o_i / Σ exp(lse_i - M)`, `lse = M + ln Σ exp(lse_i - M)` with
//! `M = max lse_i`, written to output row `out_rows[r]`.
//!
//! NATURAL log throughout (FlashInfer's `merge_state` uses base 2: multiply by ln 2 to convert).
//! NaN-safe: a state with `lse = -inf` is empty and skipped (its `o` is never read, so even a
//! NaN there is a no-op); a row whose states are all empty (or that has none) gets `o = 0`,
//! `lse = -inf`. With `skip_single`, rows with exactly one state are left untouched (the
//! decode kernel already wrote them).

/// Merges every row; `out` `[R, heads, head_dim]`, `lse` `[R, heads]`.
#[allow(clippy::too_many_arguments)]
pub fn merge_states(
    partial_o: &[f32],
    partial_lse: &[f32],
    indptr: &[i32],
    out_rows: &[i32],
    heads: usize,
    head_dim: usize,
    skip_single: bool,
    out: &mut [f32],
    mut lse: Option<&mut [f32]>,
) {
    let d = head_dim;
    for (r, w) in indptr.windows(2).enumerate() {
        let (b, e) = (w[0] as usize, w[1] as usize);
        if skip_single && e - b == 1 {
            continue;
        }
        let c = out_rows[r] as usize;
        for h in 0..heads {
            let dst = &mut out[(c * heads + h) * d..][..d];
            let mx = (b..e)
                .map(|s| partial_lse[s * heads + h])
                .filter(|l| *l != f32::NEG_INFINITY)
                .fold(f32::NEG_INFINITY, f32::max);
            let merged_lse = if mx == f32::NEG_INFINITY {
                dst.fill(0.0);
                f32::NEG_INFINITY
            } else {
                dst.fill(0.0);
                let mut sum = 0f32;
                for s in b..e {
                    let l = partial_lse[s * heads + h];
                    if l == f32::NEG_INFINITY {
                        continue;
                    }
                    let wgt = (l - mx).exp();
                    sum += wgt;
                    let src = &partial_o[(s * heads + h) * d..][..d];
                    dst.iter_mut().zip(src).for_each(|(o, &v)| *o += wgt * v);
                }
                let inv = 1.0 / sum;
                dst.iter_mut().for_each(|o| *o *= inv);
                mx + sum.ln()
            };
            if let Some(lse) = lse.as_deref_mut() {
                lse[c * heads + h] = merged_lse;
            }
        }
    }
}
