//! AdamW: one optimizer step with decoupled weight decay, in place.

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "adamw";

/// Hyper-parameters of one AdamW step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    /// Learning rate (finite, `>= 0`).
    pub lr: f32,
    /// First-moment decay, in `[0, 1)`.
    pub beta1: f32,
    /// Second-moment decay, in `[0, 1)`.
    pub beta2: f32,
    /// Denominator epsilon (finite, `> 0`).
    pub eps: f32,
    /// Decoupled weight decay (finite, `>= 0`), applied where the decay mask is 1.
    pub weight_decay: f32,
    /// 1-based step number `t` of the bias corrections (`>= 1`).
    pub step: u64,
}

impl AdamWParams {
    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<()> {
        let p = self;
        crate::ensure!(
            p.lr.is_finite() && p.lr >= 0.0,
            OP,
            "lr = {} must be finite and >= 0",
            p.lr
        );
        crate::ensure!((0.0..1.0).contains(&p.beta1), OP, "beta1 = {} must be in [0, 1)", p.beta1);
        crate::ensure!((0.0..1.0).contains(&p.beta2), OP, "beta2 = {} must be in [0, 1)", p.beta2);
        crate::ensure!(
            p.eps.is_finite() && p.eps > 0.0,
            OP,
            "eps = {} must be finite and > 0",
            p.eps
        );
        crate::ensure!(
            p.weight_decay.is_finite() && p.weight_decay >= 0.0,
            OP,
            "weight_decay = {} must be finite and >= 0",
            p.weight_decay
        );
        crate::ensure!(p.step >= 1, OP, "step = 0: steps count from 1");
        Ok(())
    }

    /// The per-step scalars with the bias corrections `1/(1 − β^t)` computed in f64.
    fn scalars(&self) -> cpu::adamw::AdamWStep {
        let t = self.step as f64;
        let inv_bc = |beta: f32| 1.0 / (1.0 - f64::from(beta).powf(t));
        cpu::adamw::AdamWStep {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            inv_bc1: inv_bc(self.beta1) as f32,
            inv_bc2: inv_bc(self.beta2) as f32,
        }
    }
}

/// One AdamW step over `n` parameters, updating `params`, `m` and `v` in place:
/// `m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; m̂ = m/(1−β1^t); v̂ = v/(1−β2^t);
/// θ −= lr·(m̂/(√v̂ + ε) + wd·decay·θ)`. `decay` is a 0/1 mask of the parameter layout: weight
/// decay applies exactly where `decay[i] == 1.0` (norm weights and biases get 0).
#[allow(clippy::too_many_arguments)]
pub fn adamw<'a>(
    dev: &Device,
    params: impl Into<ViewMut<'a, f32>>,
    grads: impl Into<View<'a, f32>>,
    m: impl Into<ViewMut<'a, f32>>,
    v: impl Into<ViewMut<'a, f32>>,
    decay: impl Into<View<'a, f32>>,
    hp: &AdamWParams,
    n: usize,
) -> Result<()> {
    let (mut params, grads, mut m, mut v, decay) =
        (params.into(), grads.into(), m.into(), v.into(), decay.into());
    hp.validate()?;
    validate::output(dev, OP, "params", &params, n)?;
    validate::input(dev, OP, "grads", &grads, n)?;
    validate::output(dev, OP, "m", &m, n)?;
    validate::output(dev, OP, "v", &v, n)?;
    validate::input(dev, OP, "decay", &decay, n)?;
    let n32 = validate::fits_u32(OP, "n", n)?;
    if n == 0 {
        return Ok(());
    }
    let s = hp.scalars();
    match &dev.inner {
        Inner::Cpu => {
            cpu::adamw::adamw(
                &mut params.cpu()[..n],
                &grads.cpu()[..n],
                &mut m.cpu()[..n],
                &mut v.cpu()[..n],
                &decay.cpu()[..n],
                &s,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "adamw_f32")?;
            let (pp, gp, dp) = (addr_mut(b, &mut params), addr(b, &grads), addr(b, &decay));
            let (mp, vp) = (addr_mut(b, &mut m), addr_mut(b, &mut v));
            let mut cfg = grid_1d(n, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&pp).arg(&gp).arg(&mp).arg(&vp).arg(&dp).arg(&n32);
            l.arg(&s.lr).arg(&s.beta1).arg(&s.beta2).arg(&s.eps).arg(&s.weight_decay);
            l.arg(&s.inv_bc1).arg(&s.inv_bc2);
            // SAFETY: params, grads, m, v, decay hold >= n f32 elements on this device
            // (validated above); the argument list matches `adamw_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("adamw_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let params_u: [u32; 16] = [
                n32,
                u32_of(OP, "params offset", params.offset())?,
                u32_of(OP, "grads offset", grads.offset())?,
                u32_of(OP, "m offset", m.offset())?,
                u32_of(OP, "v offset", v.offset())?,
                u32_of(OP, "decay offset", decay.offset())?,
                s.lr.to_bits(),
                s.beta1.to_bits(),
                s.beta2.to_bits(),
                s.eps.to_bits(),
                s.weight_decay.to_bits(),
                s.inv_bc1.to_bits(),
                s.inv_bc2.to_bits(),
                0,
                0,
                0,
            ];
            b.dispatch(
                &sources::ADAMW,
                "adamw_f32",
                bytemuck::cast_slice(&params_u),
                &[buf_mut(&params), buf(&grads), buf_mut(&m), buf_mut(&v), buf(&decay)],
                groups_1d(n, 256),
            )
        }
    }
}
