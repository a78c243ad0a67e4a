//! RMSNorm backward.

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "rmsnorm_bwd";

/// Most row chunks (blocks of the first pass) on a GPU; rows per chunk is
/// `ceil(rows / MAX_CHUNKS)`, a function of `rows` alone, so the dw reduction order (hence its
/// bits) does not depend on the device.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
const MAX_CHUNKS: usize = 512;

/// Backward of `y = x·r·w` (`r = rstd[row] = 1/sqrt(mean(x²) + eps)`, saved by
/// [`rmsnorm`](crate::ops::rmsnorm)) over `rows` rows of `dim`, ACCUMULATING:
/// `dx += r·(g − x·r²·mean(g⊙x))` with `g = w⊙dy`, and `dw += Σ_rows dy⊙x·r`.
///
/// The cross-row `dw` sum is deterministic on every backend: per-chunk partial sums (fixed
/// chunks of rows) added in chunk order, no float atomics. GPUs allocate a scratch buffer of
/// `min(rows, 512) × dim` floats per call.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_bwd<'a>(
    dev: &Device,
    dy: impl Into<View<'a, f32>>,
    x: impl Into<View<'a, f32>>,
    w: impl Into<View<'a, f32>>,
    rstd: impl Into<View<'a, f32>>,
    dx: impl Into<ViewMut<'a, f32>>,
    dw: impl Into<ViewMut<'a, f32>>,
    rows: usize,
    dim: usize,
) -> Result<()> {
    let (dy, x, w, rstd, mut dx, mut dw) =
        (dy.into(), x.into(), w.into(), rstd.into(), dx.into(), dw.into());
    crate::ensure!(dim > 0, OP, "dim must be > 0");
    let n = validate::product(OP, &[rows, dim])?;
    validate::input(dev, OP, "dy", &dy, n)?;
    validate::input(dev, OP, "x", &x, n)?;
    validate::input(dev, OP, "w", &w, dim)?;
    validate::input(dev, OP, "rstd", &rstd, rows)?;
    validate::output(dev, OP, "dx", &dx, n)?;
    validate::output(dev, OP, "dw", &dw, dim)?;
    let (rows32, dim32) =
        (validate::fits_u32(OP, "rows", rows)?, validate::fits_u32(OP, "dim", dim)?);
    validate::fits_u32(OP, "rows*dim", n)?;
    if rows == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            cpu::rmsnorm_bwd::rmsnorm_bwd(
                &dy.cpu()[..n],
                &x.cpu()[..n],
                &w.cpu()[..dim],
                &rstd.cpu()[..rows],
                &mut dx.cpu()[..n],
                &mut dw.cpu()[..dim],
                dim,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
            let (rpb, chunks) = chunking(rows);
            let (rpb32, chunks32) = (rpb as u32, chunks as u32);
            let partial = b
                .stream()
                .alloc_zeros::<f32>(chunks * dim)
                .map_err(|e| driver_err("rmsnorm_bwd partials", e))?;
            let (pp, _) = partial.device_ptr(b.stream());
            let (dyp, xp, wp, rp) = (addr(b, &dy), addr(b, &x), addr(b, &w), addr(b, &rstd));
            let (dxp, dwp) = (addr_mut(b, &mut dx), addr_mut(b, &mut dw));
            let f1 = b.function(OP, "rmsnorm_bwd_f32")?;
            let cfg1 = LaunchConfig {
                grid_dim: (chunks32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f1);
            l.arg(&dyp).arg(&xp).arg(&wp).arg(&rp).arg(&dxp).arg(&pp);
            l.arg(&rows32).arg(&dim32).arg(&rpb32);
            // SAFETY: dy, x, dx hold rows*dim, w dim, rstd rows f32 elements on this device
            // (validated); `partial` holds chunks*dim and block c < chunks touches only row c;
            // chunks*rpb >= rows; the arguments match `rmsnorm_bwd_f32`.
            unsafe { l.launch(cfg1) }.map_err(|e| driver_err("rmsnorm_bwd_f32", e))?;
            let f2 = b.function(OP, "rmsnorm_bwd_dw_f32")?;
            let cfg2 = LaunchConfig {
                grid_dim: (dim.div_ceil(32) as u32, 1, 1),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f2);
            l.arg(&pp).arg(&dwp).arg(&chunks32).arg(&dim32);
            // SAFETY: `partial` holds chunks*dim floats written by the first pass (same stream);
            // dw holds dim; the arguments match `rmsnorm_bwd_dw_f32`.
            unsafe { l.launch(cfg2) }.map_err(|e| driver_err("rmsnorm_bwd_dw_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let (rpb, chunks) = chunking(rows);
            let mut partial = dev.zeros::<f32>(chunks * dim)?;
            let pv = partial.view_mut();
            let params: [u32; 12] = [
                rows32,
                dim32,
                rpb as u32,
                chunks as u32,
                u32_of(OP, "dy offset", dy.offset())?,
                u32_of(OP, "x offset", x.offset())?,
                u32_of(OP, "w offset", w.offset())?,
                u32_of(OP, "rstd offset", rstd.offset())?,
                u32_of(OP, "dx offset", dx.offset())?,
                0,
                0,
                0,
            ];
            b.dispatch(
                &sources::RMSNORM_BWD,
                "rmsnorm_bwd_f32",
                bytemuck::cast_slice(&params),
                &[buf(&dy), buf(&x), buf(&w), buf(&rstd), buf_mut(&dx), buf_mut(&pv)],
                (chunks as u32, 1, 1),
            )?;
            let params2 = [dim32, chunks as u32, u32_of(OP, "dw offset", dw.offset())?, 0];
            b.dispatch(
                &sources::RMSNORM_BWD_DW,
                "rmsnorm_bwd_dw_f32",
                bytemuck::cast_slice(&params2),
                &[buf_mut(&pv), buf_mut(&dw)],
                groups_1d(dim, 32),
            )
        }
    }
}

/// (rows per chunk, chunks) of the GPU passes.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn chunking(rows: usize) -> (usize, usize) {
    let rpb = rows.div_ceil(MAX_CHUNKS).max(1);
    (rpb, rows.div_ceil(rpb))
}
