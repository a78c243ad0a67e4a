//! Variable-length merge of attention states (FlashInfer's `VariableLengthMergeStates`, in
//! NATURAL log): the second half of a tree decode, and the cascade identity
//! `attend(A ∪ B) = merge(attend(A), attend(B))` for disjoint key sets.

use crate::device::Inner;
use crate::ops::MergeRows;
use crate::{
    BackendKind, DType, Device, FloatElement, KernelError, Result, View, ViewMut, cpu, validate,
};

const OP: &str = "merge_states";

/// What [`merge_states`] does with a row that has exactly one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SingleRows {
    /// Copy it to the output (a standalone merge).
    Copy,
    /// Leave the output row untouched: [`tree_decode`](super::tree_decode) already wrote it
    /// (the fast path), and its partial slot holds nothing.
    Skip,
}

/// For each row `r` of `rows`, merges states `indptr[r]..indptr[r+1]` of
/// `partial_o [S, heads, head_dim]` / `partial_lse [S, heads]` into output row `out_rows[r]` of
/// `out [R, heads, head_dim]` (dtype `T`) and, when given, `lse [R, heads]`:
/// `o = Σ e^(lse_i − M) o_i / Σ e^(lse_i − M)`, `lse = M + ln Σ e^(lse_i − M)`, `M = max lse_i`.
///
/// NaN-safe: a state with `lse = -inf` is empty and skipped (its `o` is not read); a row with
/// no non-empty state gets `o = 0`, `lse = -inf`. dtypes of `out`: f32 on the CPU, f32/f16 on
/// wgpu, f32/f16/bf16 on CUDA.
#[allow(clippy::too_many_arguments)]
pub fn merge_states<'a, T: FloatElement>(
    dev: &Device,
    partial_o: impl Into<View<'a, f32>>,
    partial_lse: impl Into<View<'a, f32>>,
    rows: &MergeRows,
    out: impl Into<ViewMut<'a, T>>,
    lse: Option<ViewMut<'a, f32>>,
    heads: usize,
    head_dim: usize,
    single: SingleRows,
) -> Result<()> {
    let (po, pl, mut out, mut lse) = (partial_o.into(), partial_lse.into(), out.into(), lse);
    crate::ensure!(heads > 0 && head_dim > 0, OP, "heads and head_dim must be > 0");
    let (r, s) = (rows.num_rows(), rows.num_states());
    validate::input(dev, OP, "partial_o", &po, validate::product(OP, &[s, heads, head_dim])?)?;
    validate::input(dev, OP, "partial_lse", &pl, s * heads)?;
    let n = validate::product(OP, &[r, heads, head_dim])?;
    validate::output(dev, OP, "out", &out, n)?;
    if let Some(l) = &lse {
        validate::output(dev, OP, "lse", l, r * heads)?;
    }
    dev.check_same(OP, "rows", rows.buffer().backend())?;
    let unsupported =
        || KernelError::UnsupportedDtype { op: OP, dtype: T::DTYPE, backend: dev.kind() };
    match (dev.kind(), T::DTYPE) {
        (BackendKind::Cpu, DType::F32) | (BackendKind::Cuda, _) => {}
        (BackendKind::Wgpu, DType::F32) => {}
        (BackendKind::Wgpu, DType::F16) if dev.supports_f16() => {}
        _ => return Err(unsupported()),
    }
    if r == 0 {
        return Ok(());
    }
    let skip = single == SingleRows::Skip;
    match &dev.inner {
        Inner::Cpu => {
            let words = rows.buffer().as_cpu_slice().unwrap_or(&[]);
            let ro = rows.rows_offset();
            cpu::merge_states::merge_states(
                po.cpu(),
                pl.cpu(),
                &words[..r + 1],
                &words[ro..ro + r],
                heads,
                head_dim,
                skip,
                &mut bytemuck::cast_slice_mut::<T, f32>(out.cpu())[..n],
                lse.as_mut().map(|l| &mut l.cpu()[..r * heads]),
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let name = format!("{OP}_{}", T::DTYPE.suffix());
            let f = b.function(OP, &name)?;
            let (pop, plp) = (addr(b, &po), addr(b, &pl));
            let mp = addr(b, &rows.buffer().view());
            let o_rows = rows.rows_offset() as i32;
            let op = addr_mut(b, &mut out);
            let lp: u64 = lse.as_mut().map(|l| addr_mut(b, l)).unwrap_or(0);
            let (ri, hi, di, si) = (
                r as i32,
                heads as i32,
                validate::fits_u32(OP, "head_dim", head_dim)? as i32,
                skip as i32,
            );
            let cfg = LaunchConfig {
                grid_dim: (validate::fits_u32(OP, "rows × heads", r * heads)?, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f);
            l.arg(&pop).arg(&plp).arg(&mp).arg(&o_rows).arg(&op).arg(&lp);
            l.arg(&ri).arg(&hi).arg(&di).arg(&si);
            // SAFETY: `MergeRows::upload` validated indptr (monotone from 0, total = S) and
            // out_rows (a permutation of 0..R); the extents of partial_o/lse (S·heads·head_dim,
            // S·heads), out and lse (R·heads·head_dim, R·heads) were checked above. Arguments
            // match `merge_states_{dtype}` in merge_states.cu.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err(&name, e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let shader = match T::DTYPE {
                DType::F32 => &sources::MERGE_STATES,
                _ => sources::f16_variant(&sources::MERGE_STATES).ok_or_else(unsupported)?,
            };
            let u = |what: &str, v: usize| u32_of(OP, what, v);
            let (lbuf, loff, has) = match &lse {
                Some(l) => (buf_mut(l), u("lse offset", l.offset())?, 1),
                None => (b.scratch(), 0, 0),
            };
            u("partial_o extent", po.offset() + s * heads * head_dim)?;
            u("out extent", out.offset() + n)?;
            let params: [u32; 12] = [
                r as u32,
                heads as u32,
                head_dim as u32,
                skip as u32,
                has,
                u("partial_o offset", po.offset())?,
                u("partial_lse offset", pl.offset())?,
                u("out offset", out.offset())?,
                loff,
                u("rows offset", rows.rows_offset())?,
                0,
                0,
            ];
            b.dispatch(
                shader,
                "merge_states",
                bytemuck::cast_slice(&params),
                &[buf(&po), buf(&pl), buf(&rows.buffer().view()), buf_mut(&out), lbuf],
                groups_1d(r * heads, 1),
            )
        }
    }
}
