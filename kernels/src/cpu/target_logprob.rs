//! Log-probs of target tokens under `softmax(scale·logits[row])`, several targets per row in
//! CSR form (`row_ptr`, `tokens`), and the entropy of each row.
//!
//! Numerics: `z = scale·logit` in f32, the row max `m`, then `S = Σ exp(z − m)` and
//! `T = Σ exp(z − m)·(z − m)` accumulated in f64 over f32 exponentials; `log p = (z − m) − log S`
//! and `H = log S − T/S`. Masked logits (−inf) contribute nothing (`0·log 0 = 0`); a NaN logit
//! makes its whole row NaN.

use rayon::prelude::*;

/// Per-row softmax statistics.
#[derive(Clone, Copy, Debug)]
pub struct RowStats {
    /// `max_j scale·logits[j]`.
    pub max: f32,
    /// `log Σ_j exp(scale·logits[j] − max)`.
    pub log_sum: f32,
    /// `−Σ p log p` (only when asked for; else 0).
    pub entropy: f32,
}

impl RowStats {
    /// `log p_j` of a scaled logit `z = scale·logit`.
    pub fn logp(&self, z: f32) -> f32 {
        (z - self.max) - self.log_sum
    }
}

/// Statistics of one row of logits.
pub fn row_stats(row: &[f32], scale: f32, with_entropy: bool) -> RowStats {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(scale * l));
    let (mut s, mut t) = (0f64, 0f64);
    for &l in row {
        let z = scale * l;
        if z != f32::NEG_INFINITY {
            let d = z - max;
            let e = d.exp();
            s += f64::from(e);
            if with_entropy {
                t += f64::from(e) * f64::from(d);
            }
        }
    }
    let log_sum = s.ln();
    let entropy = if with_entropy { (log_sum - t / s) as f32 } else { 0.0 };
    RowStats { max, log_sum: log_sum as f32, entropy }
}

/// `logits`: `[rows, vocab]`; `row_ptr`: `[rows + 1]`; `tokens`, `logp`: `[n_targets]`;
/// `entropy` (optional): `[rows]`.
pub fn target_logprob(
    logits: &[f32],
    row_ptr: &[i32],
    tokens: &[i32],
    logp: &mut [f32],
    entropy: Option<&mut [f32]>,
    vocab: usize,
    scale: f32,
) {
    let with_entropy = entropy.is_some();
    super::regions::enter();
    let stats: Vec<RowStats> =
        logits.par_chunks(vocab).map(|row| row_stats(row, scale, with_entropy)).collect();
    for (r, st) in stats.iter().enumerate() {
        let row = &logits[r * vocab..(r + 1) * vocab];
        for i in row_ptr[r] as usize..row_ptr[r + 1] as usize {
            logp[i] = st.logp(scale * row[tokens[i] as usize]);
        }
    }
    if let Some(h) = entropy {
        for (h, st) in h.iter_mut().zip(&stats) {
            *h = st.entropy;
        }
    }
}
