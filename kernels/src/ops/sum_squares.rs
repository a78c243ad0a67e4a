//! `Σ x[i]²`, returned to the host in f64 (the global gradient norm, and the trainer's
//! NaN/Inf check: non-finite values propagate into the result).
//!
//! Deterministic on every backend: the split into partial sums depends on `n` alone and the
//! partials are added in a fixed order. Accumulation is f64 on the CPU and CUDA; WGSL has no
//! f64, so on wgpu each workgroup sums 4096 squares in f32 and the host adds the partials in
//! f64 (relative error ~1e-6; a square overflows f32 there for |x| ≳ 1.8e19).

use crate::device::Inner;
use crate::{Device, Result, View, cpu, validate};

const OP: &str = "sum_squares";

/// Blocks of CUDA's first pass: a function of `n` only, so the result does not depend on the GPU.
#[cfg(feature = "cuda")]
const CUDA_BLOCKS: usize = 1024;
/// Elements per wgpu workgroup (256 invocations × 16).
#[cfg(feature = "wgpu")]
const WGPU_PER_GROUP: usize = 4096;

/// `Σ_{i<n} x[i]²` in f64 (0 for `n == 0`). Waits for the device.
pub fn sum_squares<'a>(dev: &Device, x: impl Into<View<'a, f32>>, n: usize) -> Result<f64> {
    let x = x.into();
    validate::input(dev, OP, "x", &x, n)?;
    let n32 = validate::fits_u32(OP, "n", n)?;
    if n == 0 {
        return Ok(0.0);
    }
    match &dev.inner {
        Inner::Cpu => Ok(cpu::sum_squares::sum_squares(&x.cpu()[..n])),
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, driver_err};
            use cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
            let blocks = n.div_ceil(256).min(CUDA_BLOCKS);
            let blocks32 = blocks as u32;
            let partial = b
                .stream()
                .alloc_zeros::<f64>(blocks)
                .map_err(|e| driver_err("sum_squares partials", e))?;
            let out =
                b.stream().alloc_zeros::<f64>(1).map_err(|e| driver_err("sum_squares out", e))?;
            let (pp, _) = partial.device_ptr(b.stream());
            let (op, _) = out.device_ptr(b.stream());
            let xp = addr(b, &x);
            let f1 = b.function(OP, "sum_squares_partial_f32")?;
            let cfg1 = LaunchConfig {
                grid_dim: (blocks32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f1);
            l.arg(&xp).arg(&n32).arg(&pp);
            // SAFETY: x holds >= n f32 elements (validated); `partial` holds `blocks` f64, one
            // per launched block; the arguments match `sum_squares_partial_f32`.
            unsafe { l.launch(cfg1) }.map_err(|e| driver_err("sum_squares_partial_f32", e))?;
            let f2 = b.function(OP, "sum_squares_final_f32")?;
            let cfg2 =
                LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            let mut l = b.stream().launch_builder(&f2);
            l.arg(&pp).arg(&blocks32).arg(&op);
            // SAFETY: `partial` holds `blocks` f64 written by the first pass (same stream);
            // `out` holds one f64; the arguments match `sum_squares_final_f32`.
            unsafe { l.launch(cfg2) }.map_err(|e| driver_err("sum_squares_final_f32", e))?;
            let host =
                b.stream().clone_dtoh(&out).map_err(|e| driver_err("sum_squares download", e))?;
            b.synchronize()?;
            Ok(host[0])
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let groups = n.div_ceil(WGPU_PER_GROUP);
            let mut partial = dev.zeros::<f32>(groups)?;
            let params = [n32, u32_of(OP, "x offset", x.offset())?, groups as u32, 0];
            {
                let pv = partial.view_mut();
                b.dispatch(
                    &sources::SUM_SQUARES,
                    "sum_squares_f32",
                    bytemuck::cast_slice(&params),
                    &[buf(&x), buf_mut(&pv)],
                    groups_1d(n, WGPU_PER_GROUP as u32),
                )?;
            }
            let host = dev.download(&partial)?;
            Ok(host.iter().map(|&p| f64::from(p)).sum())
        }
    }
}
