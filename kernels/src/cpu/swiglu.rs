//! SwiGLU activation: `out = silu(gate) ⊙ up`, `silu(a) = a·σ(a)`, evaluated as PyTorch does
//! (`a / (1 + exp(−a))`, f32).

use rayon::prelude::*;

/// `silu(a) = a / (1 + exp(−a))` in f32 (PyTorch's formula; −0 for very negative `a`).
pub fn silu(a: f32) -> f32 {
    a / (1.0 + (-a).exp())
}

/// `out[i] = silu(gate[i]) * up[i]` for every `i`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    // silu's exp costs about as much as four passes over an element.
    let min = super::regions::min_len(4 * out.len());
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK))
        .zip(up.par_chunks(CHUNK))
        .with_min_len(min)
        .for_each(|((o, g), u)| {
            for ((ov, &gv), &uv) in o.iter_mut().zip(g).zip(u) {
                *ov = silu(gv) * uv;
            }
        });
}
