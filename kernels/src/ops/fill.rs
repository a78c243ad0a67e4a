//! `x[i] = value` on the device (zeroing gradients without a host upload).

use crate::device::Inner;
use crate::{Device, Result, ViewMut, cpu, validate};

const OP: &str = "fill";

/// `x[i] = value` for `i < n`. Any value is accepted (NaN included: tests poison with it).
pub fn fill<'a>(dev: &Device, x: impl Into<ViewMut<'a, f32>>, value: f32, n: usize) -> Result<()> {
    let mut x = x.into();
    validate::output(dev, OP, "x", &x, n)?;
    let n32 = validate::fits_u32(OP, "n", n)?;
    if n == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            cpu::fill::fill(&mut x.cpu()[..n], value);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "fill_f32")?;
            let xp = addr_mut(b, &mut x);
            let mut cfg = grid_1d(n, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&n32).arg(&value);
            // SAFETY: x holds >= n f32 elements on this device (validated above); the argument
            // list matches `fill_f32(float*, u32, float)`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("fill_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf_mut, groups_1d, sources, u32_of};
            let params = [n32, u32_of(OP, "x offset", x.offset())?, value.to_bits(), 0];
            b.dispatch(
                &sources::FILL,
                "fill_f32",
                bytemuck::cast_slice(&params),
                &[buf_mut(&x)],
                groups_1d(n, 256),
            )
        }
    }
}
