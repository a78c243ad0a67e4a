//! The sampling schedule and its two step kinds (docs/flow.md §2).
//!
//! Rectified flow: `x_t = (1 − t)·x_0 + t·ε`, data at `t = 0`, noise at `t = 1`, and the network
//! predicts `v = ε − x_0`. Sampling walks `t_i = 1 − i/T`, `i = 0..T`, with `dt = t_{i+1} − t_i < 0`:
//!
//! - **ODE step** (deterministic): `x' = x + dt·v`.
//! - **SDE step** (Flow-GRPO's reverse SDE with the same marginals):
//!   `x' = μ + s·z`, `z ~ N(0, I)`, with
//!   `μ = x·(1 + σ²·dt/(2t)) + v·(1 + σ²(1 − t)/(2t))·dt`, `s = σ·√(−dt)` and
//!   `σ = a·√(t/(1 − t))` (`a` the noise level; at `t = 1`, `1 − t_1` replaces `1 − t`, as
//!   Flow-GRPO does, so the first step is finite).
//!
//! The policy of one SDE step is the Gaussian `N(μ_θ, s²I)`; its log-probability is the MEAN
//! over the `DIM` pixels of the per-pixel Gaussian log-density (Flow-GRPO's reduction: it keeps
//! the importance ratio of a 144-pixel step near 1, like one token's).

use crate::data::DIM;
use crate::{FlowError, Result};

/// `ln √(2π)`.
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// The time grid and the SDE noise level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Steps `T` (≥ 1).
    pub steps: usize,
    /// Noise level `a` of `σ_t` (> 0).
    pub noise_level: f64,
}

/// Coefficients of step `i` (from `t_i` to `t_{i+1}`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoeffs {
    /// `t_i`.
    pub t: f64,
    /// `t_{i+1} − t_i` (negative).
    pub dt: f64,
    /// Coefficient of `x` in the SDE mean.
    pub cx: f64,
    /// Coefficient of `v` in the SDE mean.
    pub cv: f64,
    /// Standard deviation `s` of the SDE step.
    pub std: f64,
}

impl Schedule {
    /// Checks `T ≥ 1` and a finite noise level > 0.
    pub fn new(steps: usize, noise_level: f64) -> Result<Self> {
        if steps == 0 {
            return Err(FlowError::Config("sampling.steps must be ≥ 1".into()));
        }
        if !(noise_level.is_finite() && noise_level > 0.0) {
            return Err(FlowError::Config(format!(
                "sampling.noise_level = {noise_level} must be finite and > 0"
            )));
        }
        Ok(Schedule { steps, noise_level })
    }

    /// `t_i`.
    pub fn time(&self, i: usize) -> f64 {
        1.0 - i as f64 / self.steps as f64
    }

    /// The coefficients of step `i < T`.
    pub fn coeffs(&self, i: usize) -> StepCoeffs {
        let (t, t_next) = (self.time(i), self.time(i + 1));
        let dt = t_next - t;
        let one_minus = if i == 0 { 1.0 - self.time(1) } else { 1.0 - t };
        let sigma = self.noise_level * (t / one_minus).sqrt();
        let s2 = sigma * sigma;
        StepCoeffs {
            t,
            dt,
            cx: 1.0 + s2 * dt / (2.0 * t),
            cv: (1.0 + s2 * (1.0 - t) / (2.0 * t)) * dt,
            std: sigma * (-dt).sqrt(),
        }
    }
}

/// `x' = x + dt·v`, in place.
pub fn ode_step(x: &mut [f32], v: &[f32], dt: f64) {
    for (xi, vi) in x.iter_mut().zip(v) {
        *xi += (dt * *vi as f64) as f32;
    }
}

/// The SDE mean `μ = cx·x + cv·v`.
pub fn sde_mean(c: &StepCoeffs, x: &[f32], v: &[f32]) -> Vec<f32> {
    x.iter().zip(v).map(|(&xi, &vi)| (c.cx * xi as f64 + c.cv * vi as f64) as f32).collect()
}

/// `log π(x' | x)`: the mean over pixels of `ln N(x'_d; μ_d, s²)`.
pub fn log_prob(c: &StepCoeffs, mean: &[f32], next: &[f32]) -> f64 {
    let inv = 1.0 / (c.std * c.std);
    let sq: f64 = mean.iter().zip(next).map(|(&m, &x)| (x as f64 - m as f64).powi(2)).sum();
    -0.5 * sq * inv / DIM as f64 - c.std.ln() - LN_SQRT_2PI
}

/// `d log π / d v` (per pixel): `(x' − μ)/s² · cv / DIM`, into `out`, scaled by `g`.
pub fn dlog_prob_dv(c: &StepCoeffs, mean: &[f32], next: &[f32], g: f64, out: &mut [f32]) {
    let k = g * c.cv / (c.std * c.std * DIM as f64);
    for ((o, &m), &x) in out.iter_mut().zip(mean).zip(next) {
        *o = (k * (x as f64 - m as f64)) as f32;
    }
}
