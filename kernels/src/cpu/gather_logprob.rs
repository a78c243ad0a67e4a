//! Log-probability of a chosen token (and the entropy) under `softmax(scale · logits)`.

use rayon::prelude::*;

/// For each row of `cols` logits: `out[r] = log_softmax(scale·x[r])[tokens[r]]` and, when
/// given, `entropy[r] = −Σ p log p` (with `0·log 0 = 0`: masked and underflowed entries add
/// nothing). Same numerics as [`super::softmax::log_softmax`]: a masked (−∞) token gives −∞; a
/// row of only −∞, or a token outside `[0, cols)` (the `-1` of an empty categorical draw),
/// gives NaN.
pub fn gather_logprob(
    x: &[f32],
    tokens: &[i32],
    out: &mut [f32],
    entropy: Option<&mut [f32]>,
    cols: usize,
    scale: f32,
) {
    let rows = out.len();
    let mut h = vec![0f32; rows];
    super::regions::enter();
    out.par_iter_mut()
        .zip(h.par_iter_mut())
        .zip(x.par_chunks(cols))
        .zip(tokens.par_iter())
        .for_each(|(((o, hr), row), &tok)| (*o, *hr) = one_row(row, tok, scale));
    if let Some(e) = entropy {
        e[..rows].copy_from_slice(&h);
    }
}

/// (log-prob of `tok`, entropy) of one row.
pub fn one_row(row: &[f32], tok: i32, scale: f32) -> (f32, f32) {
    let (m, s) = super::softmax::max_sum(row, scale);
    if m == f32::NEG_INFINITY {
        return (f32::NAN, f32::NAN);
    }
    let ln_s = s.ln();
    let weighted: f64 = row
        .iter()
        .filter(|v| **v != f32::NEG_INFINITY)
        .map(|&v| {
            let z = scale * v - m;
            let e = z.exp();
            if e > 0.0 { f64::from(e) * f64::from(z) } else { 0.0 }
        })
        .sum();
    let entropy = ln_s - (weighted / f64::from(s)) as f32;
    let lp = match usize::try_from(tok).ok().and_then(|t| row.get(t)) {
        None => f32::NAN,
        Some(&v) if v == f32::NEG_INFINITY => f32::NEG_INFINITY,
        Some(&v) => (scale * v - m) - ln_s,
    };
    (lp, entropy)
}
