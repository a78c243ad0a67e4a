//! SwiGLU backward.

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "swiglu_bwd";

/// Backward of `out = silu(gate) ⊙ up` over `n` elements, OVERWRITING the outputs:
/// `dgate = dout ⊙ up ⊙ σ(gate)(1 + gate(1 − σ(gate)))`, `dup = dout ⊙ silu(gate)`.
/// σ never overflows, so any finite `gate` gives finite gradients.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_bwd<'a>(
    dev: &Device,
    dout: impl Into<View<'a, f32>>,
    gate: impl Into<View<'a, f32>>,
    up: impl Into<View<'a, f32>>,
    dgate: impl Into<ViewMut<'a, f32>>,
    dup: impl Into<ViewMut<'a, f32>>,
    n: usize,
) -> Result<()> {
    let (dout, gate, up, mut dgate, mut dup) =
        (dout.into(), gate.into(), up.into(), dgate.into(), dup.into());
    validate::input(dev, OP, "dout", &dout, n)?;
    validate::input(dev, OP, "gate", &gate, n)?;
    validate::input(dev, OP, "up", &up, n)?;
    validate::output(dev, OP, "dgate", &dgate, n)?;
    validate::output(dev, OP, "dup", &dup, n)?;
    let n32 = validate::fits_u32(OP, "n", n)?;
    if n == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            cpu::swiglu_bwd::swiglu_bwd(
                &dout.cpu()[..n],
                &gate.cpu()[..n],
                &up.cpu()[..n],
                &mut dgate.cpu()[..n],
                &mut dup.cpu()[..n],
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "swiglu_bwd_f32")?;
            let (dp, ap, bp) = (addr(b, &dout), addr(b, &gate), addr(b, &up));
            let (dgp, dup_p) = (addr_mut(b, &mut dgate), addr_mut(b, &mut dup));
            let mut cfg = grid_1d(n, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&dp).arg(&ap).arg(&bp).arg(&dgp).arg(&dup_p).arg(&n32);
            // SAFETY: every buffer holds >= n f32 elements on this device (validated above); the
            // argument list matches `swiglu_bwd_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("swiglu_bwd_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let params = [
                n32,
                u32_of(OP, "dout offset", dout.offset())?,
                u32_of(OP, "gate offset", gate.offset())?,
                u32_of(OP, "up offset", up.offset())?,
                u32_of(OP, "dgate offset", dgate.offset())?,
                u32_of(OP, "dup offset", dup.offset())?,
            ];
            b.dispatch(
                &sources::SWIGLU_BWD,
                "swiglu_bwd_f32",
                bytemuck::cast_slice(&params),
                &[buf(&dout), buf(&gate), buf(&up), buf_mut(&dgate), buf_mut(&dup)],
                groups_1d(n, 256),
            )
        }
    }
}
