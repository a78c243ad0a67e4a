//! Categorical draw per row by inverse CDF, the uniforms given as input.

use crate::device::Inner;
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "categorical";

/// Draws one index per row of `probs` (`[rows, cols]`, weights `>= 0`, not necessarily
/// normalized — the row total is used) with the uniform `uniforms[r] ∈ [0, 1)`:
///
/// `tokens[r]` = the smallest index `i` with `p[i] > 0` and `Σ_{j<=i} p[j] > u·total`, in index
/// order; if rounding leaves no such index, the last index with `p > 0`; **`-1` when the row has
/// no positive weight or a non-finite total** (e.g. the NaN softmax of an all-`−∞` row). An
/// index with `p = 0` is never returned.
///
/// Sums: f32 block prefix sums on the GPUs (deterministic per backend), f64 on the CPU, so when
/// `u·total` lies within float rounding of a CDF step the backends may pick neighbouring
/// indices. Randomness is the caller's: pass the uniforms derived from (seed, node, position).
pub fn categorical<'a>(
    dev: &Device,
    probs: impl Into<View<'a, f32>>,
    uniforms: impl Into<View<'a, f32>>,
    tokens: impl Into<ViewMut<'a, i32>>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let uniforms = uniforms.into();
    validate::input(dev, OP, "uniforms", &uniforms, rows)?;
    draw(dev, probs.into(), Some(uniforms), tokens.into(), rows, cols)
}

/// [`categorical`] with `uniforms = None` meaning `u = 0` for every row (the greedy path of
/// `sample`: the lowest index with `p > 0`).
pub(crate) fn draw(
    dev: &Device,
    probs: View<'_, f32>,
    uniforms: Option<View<'_, f32>>,
    mut tokens: ViewMut<'_, i32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    crate::ensure!(cols > 0, OP, "cols must be > 0");
    crate::ensure!(cols <= 1 << 30, OP, "cols = {cols} exceeds 2^30");
    let n = validate::product(OP, &[rows, cols])?;
    validate::input(dev, OP, "probs", &probs, n)?;
    validate::output(dev, OP, "tokens", &tokens, rows)?;
    let (rows32, cols32) = (validate::fits_u32(OP, "rows", rows)?, cols as u32);
    if rows == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let zeros;
            let u = match &uniforms {
                Some(u) => &u.cpu()[..rows],
                None => {
                    zeros = vec![0f32; rows];
                    &zeros[..]
                }
            };
            cpu::categorical::categorical(&probs.cpu()[..n], u, &mut tokens.cpu()[..rows], cols);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let f = b.function(OP, "categorical_f32")?;
            let pp = addr(b, &probs);
            let up: u64 = uniforms.as_ref().map(|u| addr(b, u)).unwrap_or(0);
            let tp = addr_mut(b, &mut tokens);
            let cfg = LaunchConfig {
                grid_dim: (rows32, 1, 1),
                block_dim: (1024, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f);
            l.arg(&pp).arg(&up).arg(&tp).arg(&rows32).arg(&cols32);
            // SAFETY: probs holds rows*cols f32, uniforms (when non-null) rows f32 and tokens
            // rows i32 elements on this device (validated); matches `categorical_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("categorical_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            u32_of(OP, "probs extent", probs.offset() + n)?;
            let (ubuf, uoff, has) = match &uniforms {
                Some(u) => (buf(u), u32_of(OP, "uniforms offset", u.offset())?, 1u32),
                None => (b.scratch(), 0, 0),
            };
            let params: [u32; 8] = [
                rows32,
                cols32,
                u32_of(OP, "probs offset", probs.offset())?,
                uoff,
                u32_of(OP, "tokens offset", tokens.offset())?,
                has,
                0,
                0,
            ];
            b.dispatch(
                &sources::CATEGORICAL,
                "categorical_f32",
                bytemuck::cast_slice(&params),
                &[buf(&probs), ubuf, buf_mut(&tokens)],
                groups_1d(rows, 1),
            )
        }
    }
}
