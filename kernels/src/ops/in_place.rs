//! The launch shared by [`fill`](super::fill) and [`scale`](super::scale): one f32 scalar
//! applied to `x[..n]` in place by kernels of one shape — CUDA `{stem}_f32(float* x, u32 n,
//! float s)` on a 1-D grid of 256-thread blocks (grid-stride, at most 65535·8 blocks), WGSL
//! `{stem}_f32` with params `{n, x_off, s, _}` and `x` at binding 1.

use crate::device::Inner;
use crate::{Device, Result, ViewMut, cpu, validate};

/// Which in-place kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InPlace {
    /// `x[i] = s` (`fill.cu`, `fill.wgsl`).
    Fill,
    /// `x[i] *= s` (`scale.cu`, `scale.wgsl`).
    Scale,
}

impl InPlace {
    /// The kernel stem, also the op name in errors.
    fn op(self) -> &'static str {
        match self {
            InPlace::Fill => "fill",
            InPlace::Scale => "scale",
        }
    }

    /// The kernel symbol (CUDA) and entry point (WGSL).
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    fn symbol(self) -> &'static str {
        match self {
            InPlace::Fill => "fill_f32",
            InPlace::Scale => "scale_f32",
        }
    }
}

/// Validates `x` against `n` (the scalar was checked by the caller) and runs `kind` on `dev`.
pub(crate) fn run(
    dev: &Device,
    kind: InPlace,
    mut x: ViewMut<'_, f32>,
    s: f32,
    n: usize,
) -> Result<()> {
    let op = kind.op();
    validate::output(dev, op, "x", &x, n)?;
    let n32 = validate::fits_u32(op, "n", n)?;
    if n == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let x = &mut x.cpu()[..n];
            match kind {
                InPlace::Fill => cpu::fill::fill(x, s),
                InPlace::Scale => cpu::scale::scale(x, s),
            }
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(op, kind.symbol())?;
            let xp = addr_mut(b, &mut x);
            let mut cfg = grid_1d(n, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&n32).arg(&s);
            // SAFETY: x holds >= n f32 elements on this device (validated above); the argument
            // list matches `fill_f32` / `scale_f32` `(float*, u32, float)`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err(kind.symbol(), e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf_mut, groups_1d, sources, u32_of};
            let shader = match kind {
                InPlace::Fill => &sources::FILL,
                InPlace::Scale => &sources::SCALE,
            };
            let params = [n32, u32_of(op, "x offset", x.offset())?, s.to_bits(), 0];
            b.dispatch(
                shader,
                kind.symbol(),
                bytemuck::cast_slice(&params),
                &[buf_mut(&x)],
                groups_1d(n, 256),
            )
        }
    }
}
