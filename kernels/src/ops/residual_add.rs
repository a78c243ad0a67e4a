//! `y += x` (residual connection).

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "residual_add";

/// `y[i] += x[i]` for `i < n`.
pub fn residual_add<'a, 'b>(
    dev: &Device,
    y: impl Into<ViewMut<'a, f32>>,
    x: impl Into<View<'b, f32>>,
    n: usize,
) -> Result<()> {
    let (mut y, x) = (y.into(), x.into());
    validate::output(dev, OP, "y", &y, n)?;
    validate::input(dev, OP, "x", &x, n)?;
    let n32 = validate::fits_u32(OP, "n", n)?;
    match &dev.inner {
        Inner::Cpu => {
            cpu::residual_add::residual_add(&mut y.cpu()[..n], &x.cpu()[..n]);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "residual_add_f32")?;
            let (yp, xp) = (addr_mut(b, &mut y), addr(b, &x));
            let mut cfg = grid_1d(n, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&yp).arg(&xp).arg(&n32);
            // SAFETY: y and x hold >= n f32 elements on this device (validated above); the
            // signature matches `residual_add_f32(float*, const float*, u32)`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("residual_add_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let params =
                [n32, u32_of(OP, "y offset", y.offset())?, u32_of(OP, "x offset", x.offset())?, 0];
            b.dispatch(
                &sources::RESIDUAL_ADD,
                "residual_add_f32",
                bytemuck::cast_slice(&params),
                &[buf_mut(&y), buf(&x)],
                groups_1d(n, 256),
            )
        }
    }
}
