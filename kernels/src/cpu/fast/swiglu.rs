//! The fast twin of [`cpu::swiglu`](crate::cpu::swiglu): the same `silu(gate) ⊙ up` with
//! PyTorch's formula `a / (1 + e^−a)`, where `e^x` is a branch-free polynomial
//! ([`math::exp`](crate::cpu::math::exp)) the compiler vectorizes (16 lanes with AVX-512F, 8
//! with AVX2 + FMA) instead of libm's scalar
//! `expf` per element. Under `perf`, that `expf` was two thirds of the op and the op a sixth of
//! a demo-model token step on one thread (`docs/engine.md`).
//!
//! Numerics: that `exp` is within 4e-7 (relative) of the true value (9e-8 measured), libm's
//! `expf` within an ulp, so an output differs from the twin's by a few ulps. For `a < −88`
//! (`e^−a` past f32's range) silu gives −0, where the twin gives a value of magnitude below
//! 1e-36. Infinities and NaN behave as in the twin: `silu(−∞)` and `silu(NaN)` are NaN,
//! `silu(+∞) = +∞`. The portable
//! loop and its AVX builds run the same operations in the same order (Rust does not contract
//! `a·b + c` into an FMA), so the result is the same bits on every x86-64 CPU.

use rayon::prelude::*;

/// `out[i] = silu(gate[i]) * up[i]` for every `i` (contract of
/// [`cpu::swiglu::swiglu`](crate::cpu::swiglu::swiglu)).
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    const CHUNK: usize = 1 << 12;
    // One vectorized pass: an element costs about what a copy does.
    let min = crate::cpu::regions::min_len(out.len());
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK))
        .zip(up.par_chunks(CHUNK))
        .with_min_len(min)
        .for_each(|((o, g), u)| run(g, u, o));
}

/// One chunk on the widest instruction set this CPU has.
fn run(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F, the feature `run_avx512` is compiled for.
        return unsafe { run_avx512(gate, up, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, the features `run_avx2` is compiled for.
        return unsafe { run_avx2(gate, up, out) };
    }
    run_portable(gate, up, out);
}

/// [`run_portable`] compiled for AVX-512F.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
    run_portable(gate, up, out);
}

/// [`run_portable`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    run_portable(gate, up, out);
}

/// The elementwise loop the vectorizer handles (every step a select or a lane operation).
#[inline(always)]
fn run_portable(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = silu(g) * u;
    }
}

/// `silu(a) = a / (1 + e^−a)` with the polynomial [`exp`](crate::cpu::math::exp) (see the
/// module docs).
#[inline(always)]
pub fn silu(a: f32) -> f32 {
    a / (1.0 + crate::cpu::math::exp(-a))
}
