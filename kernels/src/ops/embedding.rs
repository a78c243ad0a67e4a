//! Token embedding gather.

use crate::device::Inner;
use crate::{Device, Indices, Result, View, ViewMut, cpu, validate};

const OP: &str = "embedding";

/// `out[t, :] = table[ids[t], :]` for `t < tokens`: `table` is `[vocab, dim]` (row-major, e.g.
/// `model.embed_tokens.weight`), `ids` holds at least `tokens` ids whose upload bound is
/// `<= vocab`, `out` is `[tokens, dim]`. A pure copy: results are bit-exact on every backend.
pub fn embedding<'a>(
    dev: &Device,
    table: impl Into<View<'a, f32>>,
    ids: &Indices,
    out: impl Into<ViewMut<'a, f32>>,
    tokens: usize,
    vocab: usize,
    dim: usize,
) -> Result<()> {
    let (table, mut out) = (table.into(), out.into());
    crate::ensure!(dim > 0, OP, "dim must be > 0");
    let table_len = validate::product(OP, &[vocab, dim])?;
    let n = validate::product(OP, &[tokens, dim])?;
    validate::input(dev, OP, "table", &table, table_len)?;
    validate::input(dev, OP, "ids", &ids.view(), tokens)?;
    ids.check_bound(OP, "ids", vocab)?;
    validate::output(dev, OP, "out", &out, n)?;
    let tokens32 = validate::fits_u32(OP, "tokens", tokens)?;
    let dim32 = validate::fits_u32(OP, "dim", dim)?;
    if tokens == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let ids = &ids.view().cpu()[..tokens];
            cpu::embedding::embedding(table.cpu(), ids, &mut out.cpu()[..n], dim);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let f = b.function(OP, "embedding_f32")?;
            let (tp, ip, op) = (addr(b, &table), addr(b, &ids.view()), addr_mut(b, &mut out));
            let cfg = LaunchConfig {
                grid_dim: (tokens32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f);
            l.arg(&tp).arg(&ip).arg(&op).arg(&tokens32).arg(&dim32);
            // SAFETY: table holds vocab*dim, ids >= tokens values in [0, vocab) (bound checked),
            // out tokens*dim f32 elements on this device (validated above); the argument list
            // matches `embedding_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("embedding_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let iv = ids.view();
            u32_of(OP, "table length", table.offset() + table_len)?;
            u32_of(OP, "out length", out.offset() + n)?;
            let params: [u32; 8] = [
                tokens32,
                dim32,
                u32_of(OP, "table offset", table.offset())?,
                u32_of(OP, "ids offset", iv.offset())?,
                u32_of(OP, "out offset", out.offset())?,
                0,
                0,
                0,
            ];
            b.dispatch(
                &sources::EMBEDDING,
                "embedding_f32",
                bytemuck::cast_slice(&params),
                &[buf(&table), buf(&iv), buf_mut(&out)],
                groups_1d(tokens, 1),
            )
        }
    }
}
