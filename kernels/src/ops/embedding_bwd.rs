//! Embedding backward.

use crate::device::Inner;
use crate::{Device, Indices, Result, View, ViewMut, cpu, validate};

const OP: &str = "embedding_bwd";

/// `dtable[ids[t], :] += dout[t, :]` for `t < tokens` (ACCUMULATES; `dtable` is
/// `[vocab, dim]`, `dout` `[tokens, dim]`, the first `tokens` values of `ids` are used).
///
/// Repeated ids sum, and deterministically on every backend: each row receives its tokens'
/// gradients in token order, so all backends agree bit for bit. The GPU kernels find repeats by
/// scanning the ids (no atomics, no sort): O(tokens²) integer comparisons in all, negligible for
/// the tokens of a training step, quadratic beyond ~10⁵ tokens per call.
#[allow(clippy::too_many_arguments)]
pub fn embedding_bwd<'a>(
    dev: &Device,
    dout: impl Into<View<'a, f32>>,
    ids: &Indices,
    dtable: impl Into<ViewMut<'a, f32>>,
    tokens: usize,
    vocab: usize,
    dim: usize,
) -> Result<()> {
    let (dout, mut dtable) = (dout.into(), dtable.into());
    crate::ensure!(dim > 0, OP, "dim must be > 0");
    let n_out = validate::product(OP, &[tokens, dim])?;
    let n_table = validate::product(OP, &[vocab, dim])?;
    validate::input(dev, OP, "dout", &dout, n_out)?;
    let idv = ids.view();
    validate::input(dev, OP, "ids", &idv, tokens)?;
    ids.check_bound(OP, "ids", vocab)?;
    validate::output(dev, OP, "dtable", &dtable, n_table)?;
    let (tokens32, dim32) =
        (validate::fits_u32(OP, "tokens", tokens)?, validate::fits_u32(OP, "dim", dim)?);
    validate::fits_u32(OP, "vocab*dim", n_table)?;
    validate::fits_u32(OP, "tokens*dim", n_out)?;
    // Column tiles of 1024 (the kernels' 256 threads × 4 columns) run as separate blocks.
    let tiles = dim.div_ceil(1024);
    crate::ensure!(tiles <= 65535, OP, "dim = {dim} exceeds 65535 column tiles of 1024");
    if tokens == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            cpu::embedding_bwd::embedding_bwd(
                &dout.cpu()[..n_out],
                &idv.cpu()[..tokens],
                &mut dtable.cpu()[..n_table],
                dim,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let f = b.function(OP, "embedding_bwd_f32")?;
            let (dp, ip, tp) = (addr(b, &dout), addr(b, &idv), addr_mut(b, &mut dtable));
            let cfg = LaunchConfig {
                grid_dim: (tokens32, tiles as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f);
            l.arg(&dp).arg(&ip).arg(&tp).arg(&tokens32).arg(&dim32);
            // SAFETY: grid (tokens, ceil(dim/1024)) as the kernel expects; dout holds tokens*dim f32, ids >= tokens i32 each in [0, vocab) (checked
            // on upload, bound <= vocab checked above), dtable vocab*dim f32, all on this device;
            // the arguments match `embedding_bwd_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("embedding_bwd_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let params: [u32; 8] = [
                tokens32,
                dim32,
                u32_of(OP, "dout offset", dout.offset())?,
                u32_of(OP, "ids offset", idv.offset())?,
                u32_of(OP, "dtable offset", dtable.offset())?,
                0,
                0,
                0,
            ];
            b.dispatch(
                &sources::EMBEDDING_BWD,
                "embedding_bwd_f32",
                bytemuck::cast_slice(&params),
                &[buf(&dout), buf(&idv), buf_mut(&dtable)],
                {
                    let (x, y, _) = groups_1d(tokens, 1);
                    (x, y, tiles as u32)
                },
            )
        }
    }
}
