//! Row softmax and log-softmax over the last dimension (the vocabulary), with a logit scale.

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "softmax";

/// Which normalization a [`softmax`]-family call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Softmax,
    LogSoftmax,
}

impl Kind {
    fn symbol(self) -> &'static str {
        match self {
            Kind::Softmax => "softmax_f32",
            Kind::LogSoftmax => "log_softmax_f32",
        }
    }
}

/// `y[r, :] = softmax(scale · x[r, :])` over `rows` rows of `cols` logits.
///
/// `scale` is the inverse temperature (`> 0`, finite); the scaled logit is rounded to f32 before
/// the max is subtracted (as PyTorch's `logits / T`), sums are f32 with a fixed reduction order
/// (deterministic per backend). Masked entries (`−∞`) get exactly 0. **A row whose entries are
/// all `−∞` gets NaN everywhere**, as `torch.softmax` does. `+∞`/NaN logits are unspecified.
/// One block (workgroup) per row, so very wide rows (a 152k vocabulary) are fine.
pub fn softmax<'a>(
    dev: &Device,
    x: impl Into<View<'a, f32>>,
    y: impl Into<ViewMut<'a, f32>>,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<()> {
    run(dev, Kind::Softmax, x.into(), y.into(), rows, cols, scale)
}

/// `y[r, :] = log_softmax(scale · x[r, :])`: `(z − max z) − ln Σ exp(z − max z)` with
/// `z = scale·x` rounded to f32. Masked entries (`−∞`) stay `−∞`; an all-`−∞` row gives NaN
/// everywhere (as `torch.log_softmax`). Same contract as [`softmax`] otherwise.
pub fn log_softmax<'a>(
    dev: &Device,
    x: impl Into<View<'a, f32>>,
    y: impl Into<ViewMut<'a, f32>>,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<()> {
    run(dev, Kind::LogSoftmax, x.into(), y.into(), rows, cols, scale)
}

/// Validates the arguments shared by the softmax family and the sampling ops.
pub(crate) fn check_scale(op: &'static str, scale: f32) -> Result<()> {
    crate::ensure!(
        scale.is_finite() && scale > 0.0,
        op,
        "scale = {scale} must be finite and > 0 (it is 1/temperature)"
    );
    Ok(())
}

fn run(
    dev: &Device,
    kind: Kind,
    x: View<'_, f32>,
    mut y: ViewMut<'_, f32>,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<()> {
    crate::ensure!(cols > 0, OP, "cols must be > 0");
    check_scale(OP, scale)?;
    let n = validate::product(OP, &[rows, cols])?;
    validate::input(dev, OP, "x", &x, n)?;
    validate::output(dev, OP, "y", &y, n)?;
    let rows32 = validate::fits_u32(OP, "rows", rows)?;
    let cols32 = validate::fits_u32(OP, "cols", cols)?;
    if rows == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let (x, y) = (&x.cpu()[..n], &mut y.cpu()[..n]);
            match kind {
                Kind::Softmax => cpu::softmax::softmax(x, y, cols, scale),
                Kind::LogSoftmax => cpu::softmax::log_softmax(x, y, cols, scale),
            }
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let f = b.function(OP, kind.symbol())?;
            let (xp, yp) = (addr(b, &x), addr_mut(b, &mut y));
            let cfg = LaunchConfig {
                grid_dim: (rows32, 1, 1),
                block_dim: (1024, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&yp).arg(&rows32).arg(&cols32).arg(&scale);
            // SAFETY: x and y hold rows*cols f32 elements on this device (validated above) and are
            // distinct buffers (y is exclusively borrowed); the argument list matches
            // `softmax_f32` / `log_softmax_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err(kind.symbol(), e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            u32_of(OP, "x length", x.offset() + n)?;
            u32_of(OP, "y length", y.offset() + n)?;
            let params: [u32; 8] = [
                rows32,
                cols32,
                u32_of(OP, "x offset", x.offset())?,
                u32_of(OP, "y offset", y.offset())?,
                scale.to_bits(),
                0,
                0,
                0,
            ];
            b.dispatch(
                &sources::SOFTMAX,
                kind.symbol(),
                bytemuck::cast_slice(&params),
                &[buf(&x), buf_mut(&y)],
                groups_1d(rows, 1),
            )
        }
    }
}
