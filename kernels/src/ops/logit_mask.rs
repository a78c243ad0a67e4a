//! Top-k and top-p (nucleus) filtering of logits, in place.

use crate::device::Inner;
use crate::{Device, Result, ViewMut, cpu, validate};

use super::softmax::check_scale;

const OP: &str = "logit_mask";

/// Rows wider than this are rejected: the threshold search counts in f32.
pub const LOGIT_MASK_MAX_COLS: usize = 1 << 24;

/// Top-k on each of `rows` rows of `cols` logits, in place: keeps every entry `>=` the `k`-th
/// largest value of its row — **ties at the boundary are all kept** (HF's `TopKLogitsWarper`:
/// `logits < topk(logits, k).values[-1]` are removed) — and sets the rest to `−∞`.
/// `k == 0` or `k >= cols` means off (nothing is launched). Values compare as floats (`−0 == +0`);
/// existing `−∞` entries count as values; NaN logits are unspecified. Deterministic: a
/// block-wide threshold search (8 passes over the row, 4 bits of the key each), no sort.
pub fn top_k_mask<'a>(
    dev: &Device,
    logits: impl Into<ViewMut<'a, f32>>,
    rows: usize,
    cols: usize,
    k: usize,
) -> Result<()> {
    let mut x = logits.into();
    let n = check(dev, &x, rows, cols)?;
    if k == 0 || k >= cols || rows == 0 {
        return Ok(());
    }
    let (rows32, cols32, k32) = (rows as u32, cols as u32, k as u32);
    match &dev.inner {
        Inner::Cpu => {
            cpu::logit_mask::top_k_mask(&mut x.cpu()[..n], cols, k);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "top_k_mask_f32")?;
            let xp = crate::cuda::addr_mut(b, &mut x);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&rows32).arg(&cols32).arg(&k32);
            // SAFETY: x holds rows*cols f32 elements on this device (validated), one block per
            // row touches only its row; 1 <= k < cols <= 2^24; matches `top_k_mask_f32`.
            unsafe { l.launch(row_blocks(rows32)) }
                .map_err(|e| crate::cuda::driver_err("top_k_mask_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => wgpu_launch(b, "top_k_mask_f32", &x, n, [rows32, cols32, k32, 0, 0]),
    }
}

/// Top-p (nucleus) on each of `rows` rows of `cols` logits, in place. With
/// `p = softmax(scale · logits)` (`scale` = 1/temperature), keeps the **smallest set of the
/// highest-probability entries whose mass is `>= top_p`, plus every entry tied (equal logit)
/// with the smallest kept one**, and sets the rest to `−∞`. The top entry is always kept
/// (`top_p = 0` keeps just the maximum and its ties). `top_p >= 1` means off (nothing is
/// launched); a row of only `−∞` stays as it is.
///
/// Numerics: `e_i = exp(fl(scale·x_i) − fl(scale·max x))` in f32, the threshold is
/// `top_p · Σ e`. Masses are summed in f32 with a fixed order on the GPUs (deterministic per
/// backend) and in f64 on the CPU, so a boundary whose cumulative mass lies within float
/// rounding of `top_p` may differ between backends. A block-wide threshold search over the
/// logits' keys (1 + 8 passes over the row), no sort.
pub fn top_p_mask<'a>(
    dev: &Device,
    logits: impl Into<ViewMut<'a, f32>>,
    rows: usize,
    cols: usize,
    scale: f32,
    top_p: f32,
) -> Result<()> {
    let mut x = logits.into();
    check_scale(OP, scale)?;
    crate::ensure!(
        !top_p.is_nan() && top_p >= 0.0,
        OP,
        "top_p = {top_p} must be >= 0 (>= 1 means off)"
    );
    let n = check(dev, &x, rows, cols)?;
    if top_p >= 1.0 || rows == 0 {
        return Ok(());
    }
    let (rows32, cols32) = (rows as u32, cols as u32);
    match &dev.inner {
        Inner::Cpu => {
            cpu::logit_mask::top_p_mask(&mut x.cpu()[..n], cols, scale, top_p);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "top_p_mask_f32")?;
            let xp = crate::cuda::addr_mut(b, &mut x);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&rows32).arg(&cols32).arg(&scale).arg(&top_p);
            // SAFETY: x holds rows*cols f32 elements on this device (validated), one block per
            // row touches only its row; scale > 0 finite, 0 <= top_p < 1; matches
            // `top_p_mask_f32`.
            unsafe { l.launch(row_blocks(rows32)) }
                .map_err(|e| crate::cuda::driver_err("top_p_mask_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => wgpu_launch(
            b,
            "top_p_mask_f32",
            &x,
            n,
            [rows32, cols32, 0, scale.to_bits(), top_p.to_bits()],
        ),
    }
}

fn check(dev: &Device, x: &ViewMut<'_, f32>, rows: usize, cols: usize) -> Result<usize> {
    crate::ensure!(cols > 0, OP, "cols must be > 0");
    crate::ensure!(
        cols <= LOGIT_MASK_MAX_COLS,
        OP,
        "cols = {cols} exceeds {LOGIT_MASK_MAX_COLS} (the threshold search counts in f32)"
    );
    let n = validate::product(OP, &[rows, cols])?;
    validate::output(dev, OP, "logits", x, n)?;
    validate::fits_u32(OP, "rows", rows)?;
    Ok(n)
}

#[cfg(feature = "cuda")]
fn row_blocks(rows: u32) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig {
        grid_dim: (rows, 1, 1),
        block_dim: (1024, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `p` = [rows, cols, k, scale bits, top_p bits].
#[cfg(feature = "wgpu")]
fn wgpu_launch(
    b: &crate::webgpu::WgpuBackend,
    entry: &'static str,
    x: &ViewMut<'_, f32>,
    n: usize,
    p: [u32; 5],
) -> Result<()> {
    use crate::webgpu::{buf_mut, groups_1d, sources, u32_of};
    u32_of(OP, "logits extent", x.offset() + n)?;
    let params: [u32; 8] =
        [p[0], p[1], u32_of(OP, "logits offset", x.offset())?, p[2], p[3], p[4], 0, 0];
    b.dispatch(
        &sources::LOGIT_MASK,
        entry,
        bytemuck::cast_slice(&params),
        &[buf_mut(x)],
        groups_1d(p[0] as usize, 1),
    )
}
