//! Backward of [`target_logprob`](super::target_logprob), OVERWRITING `dlogits`:
//! `dlogits[r, j] = scale·(Σ_{i∈row r} g_i·([j = tok_i] − p_j)) − ge_r·scale·p_j·(log p_j + H_r)`
//! with `p = softmax(scale·logits[r])`, `H_r` its entropy (the second term only with
//! `grad_entropy`). Masked logits (−inf) have `p = 0` and get only their one-hot terms.

use rayon::prelude::*;

use super::target_logprob::row_stats;

/// `logits`, `dlogits`: `[rows, vocab]`; `row_ptr`: `[rows + 1]`; `tokens`, `grad_logp`:
/// `[n_targets]`; `grad_entropy` (optional): `[rows]`.
#[allow(clippy::too_many_arguments)]
pub fn target_logprob_bwd(
    logits: &[f32],
    row_ptr: &[i32],
    tokens: &[i32],
    grad_logp: &[f32],
    grad_entropy: Option<&[f32]>,
    dlogits: &mut [f32],
    vocab: usize,
    scale: f32,
) {
    super::regions::enter();
    dlogits.par_chunks_mut(vocab).zip(logits.par_chunks(vocab)).enumerate().for_each(
        |(r, (dl, row))| {
            let st = row_stats(row, scale, grad_entropy.is_some());
            let targets = row_ptr[r] as usize..row_ptr[r + 1] as usize;
            let g_sum: f32 = grad_logp[targets.clone()].iter().sum();
            let ge = grad_entropy.map(|g| g[r]);
            for (d, &l) in dl.iter_mut().zip(row) {
                let z = scale * l;
                *d = if z != f32::NEG_INFINITY {
                    let lp = st.logp(z);
                    let p = lp.exp();
                    let mut v = -scale * g_sum * p;
                    if let Some(ge) = ge {
                        v += ge * (-scale * p * (lp + st.entropy));
                    }
                    v
                } else {
                    0.0
                };
            }
            for i in targets {
                dl[tokens[i] as usize] += scale * grad_logp[i];
            }
        },
    );
}
