//! CUDA launches of packed attention (`cuda/packed_attention_{fwd,bwd}.cu`). Arguments were
//! validated by the ops (shapes, lengths, `head_dim` <= 256, the mask's index ranges); this
//! file picks the kernel symbol (tiled for head sizes 64 and 128, `_any_` otherwise) and grid.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::cpu::packed_attention_fwd::Shape;
use crate::cuda::{CudaBackend, addr, addr_mut, driver_err};
use crate::ops::TreeMask;
use crate::ops::packed_attention_bwd::PackedAttentionSaved;
use crate::{DType, FloatElement, KernelError, Result, View, ViewMut};

fn cfg(grid: (usize, usize), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.0.max(1) as u32, grid.1 as u32, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Head sizes with tiled kernels (`_hd{D}_` symbols); every other size up to 256 runs the
/// one-thread-per-row `_any_` kernels (head size at run time).
fn tiled(head_dim: usize) -> bool {
    head_dim == 64 || head_dim == 128
}

/// Rows (forward, dq) or keys (dk/dv) per block of the `_any_` kernels: one per thread.
const ANY_ROWS: usize = 128;

fn dtype<T: FloatElement>(op: &'static str) -> Result<&'static str> {
    match T::DTYPE {
        DType::F32 | DType::F16 | DType::BF16 => Ok(T::DTYPE.suffix()),
        other => Err(KernelError::UnsupportedDtype {
            op,
            dtype: other,
            backend: crate::BackendKind::Cuda,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: FloatElement>(
    b: &CudaBackend,
    q: &View<'_, T>,
    k: &View<'_, T>,
    v: &View<'_, T>,
    mask: &TreeMask,
    o: &mut ViewMut<'_, T>,
    lse: &mut ViewMut<'_, f32>,
    s: Shape,
) -> Result<()> {
    const OP: &str = "packed_attention_fwd";
    let dt = dtype::<T>(OP)?;
    let (qp, kp, vp) = (addr(b, q), addr(b, k), addr(b, v));
    let (ep, bp) = (addr(b, &mask.kv_row_end()), addr(b, &mask.block_bounds()));
    let (op, lp) = (addr_mut(b, o), addr_mut(b, lse));
    let (n, hq, hkv) = (s.num_tokens as i32, s.num_qo_heads as i32, s.num_kv_heads as i32);
    if !tiled(s.head_dim) {
        let name = format!("{OP}_any_{dt}");
        let f = b.function(OP, &name)?;
        let d = s.head_dim as i32;
        let mut l = b.stream().launch_builder(&f);
        l.arg(&qp).arg(&kp).arg(&vp).arg(&ep).arg(&op).arg(&lp);
        l.arg(&n).arg(&hq).arg(&hkv).arg(&d).arg(&s.sm_scale);
        // SAFETY: as for the tiled launch below, with D <= 256 passed at run time (validated by
        // the op); the argument list matches `PA_FWD_ANY`.
        unsafe { l.launch(cfg((s.num_tokens.div_ceil(ANY_ROWS), s.num_qo_heads), 128)) }
            .map_err(|e| driver_err(&name, e))?;
        return Ok(());
    }
    let name = format!("{OP}_hd{}_{dt}", s.head_dim);
    let f = b.function(OP, &name)?;
    // f32: 16-row tiles on CUDA cores; f16/bf16: 64-row tiles, on tensor cores from sm_80 (on
    // sm_75 the same kernel walks the tile as four 16-row CUDA-core tiles: same grid).
    let rows = if T::DTYPE == DType::F32 { 16 } else { 64 };
    let mut l = b.stream().launch_builder(&f);
    l.arg(&qp).arg(&kp).arg(&vp).arg(&ep).arg(&bp).arg(&op).arg(&lp);
    l.arg(&n).arg(&hq).arg(&hkv).arg(&s.sm_scale);
    // SAFETY: q, o hold n*hq*D and k, v n*hkv*D elements of T, lse hq*n f32, kv_row_end n and
    // block_bounds 2*ceil(n/16) int32 on this device, all validated by the op (mask values in
    // [j+1, n]); D matches the symbol; the argument list matches `PA_FWD_ARGS`.
    unsafe { l.launch(cfg((s.num_tokens.div_ceil(rows), s.num_qo_heads), 128)) }
        .map_err(|e| driver_err(&name, e))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: FloatElement>(
    b: &CudaBackend,
    x: &PackedAttentionSaved<'_, T>,
    d_o: &View<'_, T>,
    mask: &TreeMask,
    dq: &mut ViewMut<'_, T>,
    dk: &mut ViewMut<'_, T>,
    dv: &mut ViewMut<'_, T>,
    delta: &mut ViewMut<'_, f32>,
    s: Shape,
) -> Result<()> {
    const OP: &str = "packed_attention_bwd";
    let dt = dtype::<T>(OP)?;
    let (n, hq, hkv) = (s.num_tokens as i32, s.num_qo_heads as i32, s.num_kv_heads as i32);
    let d = s.head_dim as i32;
    let (qp, kp, vp, op) = (addr(b, &x.q), addr(b, &x.k), addr(b, &x.v), addr(b, &x.o));
    let (dop, lp) = (addr(b, d_o), addr(b, &x.lse));
    let (ep, bp) = (addr(b, &mask.kv_row_end()), addr(b, &mask.block_bounds()));
    let (dqp, dkp, dvp) = (addr_mut(b, dq), addr_mut(b, dk), addr_mut(b, dv));
    let deltap = addr_mut(b, delta);

    let name = format!("{OP}_delta_{dt}");
    let f = b.function(OP, &name)?;
    let mut l = b.stream().launch_builder(&f);
    l.arg(&op).arg(&dop).arg(&deltap).arg(&n).arg(&hq).arg(&d);
    // SAFETY: o, d_o hold n*hq*D elements of T and delta hq*n f32 (validated); the argument
    // list matches `PA_DELTA`.
    unsafe { l.launch(cfg(((s.num_tokens * s.num_qo_heads).div_ceil(4), 1), 128)) }
        .map_err(|e| driver_err(&name, e))?;

    if !tiled(s.head_dim) {
        let name = format!("{OP}_dq_any_{dt}");
        let f = b.function(OP, &name)?;
        let mut l = b.stream().launch_builder(&f);
        l.arg(&qp).arg(&kp).arg(&vp).arg(&dop).arg(&lp).arg(&deltap).arg(&ep);
        l.arg(&dqp).arg(&n).arg(&hq).arg(&hkv).arg(&d).arg(&s.sm_scale);
        // SAFETY: as for the tiled dq launch below, D <= 256 at run time; matches `PA_BWD_ANY`.
        unsafe { l.launch(cfg((s.num_tokens.div_ceil(ANY_ROWS), s.num_qo_heads), 128)) }
            .map_err(|e| driver_err(&name, e))?;
        let name = format!("{OP}_dkdv_any_{dt}");
        let f = b.function(OP, &name)?;
        let mut l = b.stream().launch_builder(&f);
        l.arg(&qp).arg(&kp).arg(&vp).arg(&dop).arg(&lp).arg(&deltap).arg(&ep);
        l.arg(&dkp).arg(&dvp).arg(&n).arg(&hq).arg(&hkv).arg(&d).arg(&s.sm_scale);
        // SAFETY: as for the tiled dk/dv launch below; matches `PA_BWD_ANY`.
        unsafe { l.launch(cfg((s.num_tokens.div_ceil(ANY_ROWS), s.num_kv_heads), 128)) }
            .map_err(|e| driver_err(&name, e))?;
        return Ok(());
    }
    let name = format!("{OP}_dq_hd{}_{dt}", s.head_dim);
    let f = b.function(OP, &name)?;
    let mut l = b.stream().launch_builder(&f);
    l.arg(&qp).arg(&kp).arg(&vp).arg(&dop).arg(&lp).arg(&deltap).arg(&ep).arg(&bp);
    l.arg(&dqp).arg(&n).arg(&hq).arg(&hkv).arg(&s.sm_scale);
    // SAFETY: as for the forward launch, plus d_o, dq n*hq*D elements of T and lse, delta
    // hq*n f32 (delta written by the previous launch on the same stream); matches `PA_DQ`.
    unsafe { l.launch(cfg((s.num_tokens.div_ceil(8), s.num_qo_heads), 128)) }
        .map_err(|e| driver_err(&name, e))?;

    let name = format!("{OP}_dkdv_hd{}_{dt}", s.head_dim);
    let f = b.function(OP, &name)?;
    let mut l = b.stream().launch_builder(&f);
    l.arg(&qp).arg(&kp).arg(&vp).arg(&dop).arg(&lp).arg(&deltap).arg(&ep).arg(&bp);
    l.arg(&dkp).arg(&dvp).arg(&n).arg(&hq).arg(&hkv).arg(&s.sm_scale);
    // SAFETY: as above, with dk, dv n*hkv*D elements of T; matches `PA_DKDV`.
    unsafe { l.launch(cfg((s.num_tokens.div_ceil(16), s.num_kv_heads), 128)) }
        .map_err(|e| driver_err(&name, e))?;
    Ok(())
}
