//! SwiGLU activation of the Llama/Qwen MLP.

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "swiglu";

/// `out[i] = silu(gate[i]) * up[i]` for `i < n`, with `silu(a) = a / (1 + exp(−a))` in f32
/// (PyTorch's formula; HF's `act_fn(gate_proj(x)) * up_proj(x)`). The CPU backend computes
/// `exp` with a vectorized polynomial (`cpu::fast::swiglu`: a few ulps from libm's `expf`).
pub fn swiglu<'a>(
    dev: &Device,
    gate: impl Into<View<'a, f32>>,
    up: impl Into<View<'a, f32>>,
    out: impl Into<ViewMut<'a, f32>>,
    n: usize,
) -> Result<()> {
    let (gate, up, mut out) = (gate.into(), up.into(), out.into());
    validate::input(dev, OP, "gate", &gate, n)?;
    validate::input(dev, OP, "up", &up, n)?;
    validate::output(dev, OP, "out", &out, n)?;
    let n32 = validate::fits_u32(OP, "n", n)?;
    if n == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            cpu::fast::swiglu::swiglu(&gate.cpu()[..n], &up.cpu()[..n], &mut out.cpu()[..n]);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "swiglu_f32")?;
            let (gp, upp, op) = (addr(b, &gate), addr(b, &up), addr_mut(b, &mut out));
            let mut cfg = grid_1d(n, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&gp).arg(&upp).arg(&op).arg(&n32);
            // SAFETY: gate, up and out hold >= n f32 elements on this device (validated above);
            // out is a distinct, exclusively borrowed buffer; the signature matches `swiglu_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("swiglu_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let params = [
                n32,
                u32_of(OP, "gate offset", gate.offset())?,
                u32_of(OP, "up offset", up.offset())?,
                u32_of(OP, "out offset", out.offset())?,
            ];
            b.dispatch(
                &sources::SWIGLU,
                "swiglu_f32",
                bytemuck::cast_slice(&params),
                &[buf(&gate), buf(&up), buf_mut(&out)],
                groups_1d(n, 256),
            )
        }
    }
}
