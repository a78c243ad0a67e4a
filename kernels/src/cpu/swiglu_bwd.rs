//! SwiGLU backward: `out = silu(a) ⊙ b` (a = gate, b = up) gives, overwriting the outputs,
//! `dgate = dout ⊙ b ⊙ σ(a)(1 + a(1 − σ(a)))` and `dup = dout ⊙ silu(a)`.

use rayon::prelude::*;

/// σ(a) without overflow for any finite `a`: exp only of a non-positive argument.
pub fn stable_sigmoid(a: f32) -> f32 {
    let e = (-a.abs()).exp();
    if a >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}

/// All slices hold the same number of elements.
pub fn swiglu_bwd(dout: &[f32], gate: &[f32], up: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    super::regions::enter();
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(dout.par_chunks(CHUNK).zip(gate.par_chunks(CHUNK)).zip(up.par_chunks(CHUNK)))
        .for_each(|((dg, du), ((d, a), b))| {
            for i in 0..dg.len() {
                let s = stable_sigmoid(a[i]);
                let silu = a[i] * s;
                dg[i] = d[i] * b[i] * (s + silu * (1.0 - s));
                du[i] = d[i] * silu;
            }
        });
}
