//! RMSNorm forward.

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "rmsnorm";

/// `y[r] = x[r] * rsqrt(mean(x[r]²) + eps) * w` for each of `rows` rows of `dim` elements;
/// `rstd[r]` receives the reciprocal RMS when given (saved for the backward pass).
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm<'a>(
    dev: &Device,
    x: impl Into<View<'a, f32>>,
    w: impl Into<View<'a, f32>>,
    y: impl Into<ViewMut<'a, f32>>,
    rstd: Option<ViewMut<'a, f32>>,
    rows: usize,
    dim: usize,
    eps: f32,
) -> Result<()> {
    let (x, w, mut y, mut rstd) = (x.into(), w.into(), y.into(), rstd);
    crate::ensure!(dim > 0, OP, "dim must be > 0");
    crate::ensure!(eps >= 0.0 && eps.is_finite(), OP, "eps = {eps} must be finite and >= 0");
    let n = validate::product(OP, &[rows, dim])?;
    validate::input(dev, OP, "x", &x, n)?;
    validate::input(dev, OP, "w", &w, dim)?;
    validate::output(dev, OP, "y", &y, n)?;
    if let Some(r) = &rstd {
        validate::output(dev, OP, "rstd", r, rows)?;
    }
    let (rows32, dim32) =
        (validate::fits_u32(OP, "rows", rows)?, validate::fits_u32(OP, "dim", dim)?);
    if rows == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let rs = rstd.as_mut().map(|r| &mut r.cpu()[..rows]);
            cpu::rmsnorm::rmsnorm(&x.cpu()[..n], &w.cpu()[..dim], &mut y.cpu()[..n], rs, dim, eps);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let f = b.function(OP, "rmsnorm_f32")?;
            let (xp, wp, yp) = (addr(b, &x), addr(b, &w), addr_mut(b, &mut y));
            let rp: u64 = rstd.as_mut().map(|r| addr_mut(b, r)).unwrap_or(0);
            let cfg = LaunchConfig {
                grid_dim: (rows32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&wp).arg(&yp).arg(&rp).arg(&rows32).arg(&dim32).arg(&eps);
            // SAFETY: x, y hold rows*dim, w dim, rstd (when non-null) rows f32 elements on this
            // device (validated); the argument list matches `rmsnorm_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("rmsnorm_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let (rbuf, roff, has) = match &rstd {
                Some(r) => (buf_mut(r), u32_of(OP, "rstd offset", r.offset())?, 1u32),
                None => (b.scratch(), 0, 0),
            };
            let params: [u32; 8] = [
                rows32,
                dim32,
                eps.to_bits(),
                has,
                u32_of(OP, "x offset", x.offset())?,
                u32_of(OP, "w offset", w.offset())?,
                u32_of(OP, "y offset", y.offset())?,
                roff,
            ];
            b.dispatch(
                &sources::RMSNORM,
                "rmsnorm_f32",
                bytemuck::cast_slice(&params),
                &[buf(&x), buf(&w), buf_mut(&y), rbuf],
                groups_1d(rows, 1),
            )
        }
    }
}
