//! `x[i] *= s` in place (gradient clipping by the global norm).

use crate::device::Inner;
use crate::{Device, Result, ViewMut, cpu, validate};

const OP: &str = "scale";

/// `x[i] *= s` for `i < n`; `s` must be finite.
pub fn scale<'a>(dev: &Device, x: impl Into<ViewMut<'a, f32>>, s: f32, n: usize) -> Result<()> {
    let mut x = x.into();
    validate::finite(OP, "s", s)?;
    validate::output(dev, OP, "x", &x, n)?;
    let n32 = validate::fits_u32(OP, "n", n)?;
    if n == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            cpu::scale::scale(&mut x.cpu()[..n], s);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "scale_f32")?;
            let xp = addr_mut(b, &mut x);
            let mut cfg = grid_1d(n, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&n32).arg(&s);
            // SAFETY: x holds >= n f32 elements on this device (validated above); the argument
            // list matches `scale_f32(float*, u32, float)`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("scale_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf_mut, groups_1d, sources, u32_of};
            let params = [n32, u32_of(OP, "x offset", x.offset())?, s.to_bits(), 0];
            b.dispatch(
                &sources::SCALE,
                "scale_f32",
                bytemuck::cast_slice(&params),
                &[buf_mut(&x)],
                groups_1d(n, 256),
            )
        }
    }
}
