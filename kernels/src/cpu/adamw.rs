//! One AdamW step with decoupled weight decay, in place (see `ops::adamw` for the formula).

use rayon::prelude::*;

/// The per-step scalars of an AdamW update, bias corrections already inverted (computed in f64
/// by the caller).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// `1 / (1 − β1^t)`.
    pub inv_bc1: f32,
    /// `1 / (1 − β2^t)`.
    pub inv_bc2: f32,
}

/// All slices hold the same number of elements; `decay[i] == 1.0` marks decayed parameters.
pub fn adamw(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    decay: &[f32],
    s: &AdamWStep,
) {
    const CHUNK: usize = 1 << 14;
    super::regions::enter();
    params
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grads.par_chunks(CHUNK).zip(decay.par_chunks(CHUNK)))
        .for_each(|(((p, m), v), (g, d))| {
            for i in 0..p.len() {
                let gi = g[i];
                let mi = s.beta1 * m[i] + (1.0 - s.beta1) * gi;
                let vi = s.beta2 * v[i] + (1.0 - s.beta2) * (gi * gi);
                m[i] = mi;
                v[i] = vi;
                let (mhat, vhat) = (mi * s.inv_bc1, vi * s.inv_bc2);
                let mut upd = mhat / (vhat.sqrt() + s.eps);
                if d[i] == 1.0 {
                    upd += s.weight_decay * p[i];
                }
                p[i] -= s.lr * upd;
            }
        });
}
