//! wgpu launches of packed attention (`wgsl/packed_attention_{fwd,bwd}.wgsl`). Arguments were
//! validated by the ops; this file only picks the f32/f16 module and packs the parameters.

use crate::cpu::packed_attention_fwd::Shape;
use crate::ops::TreeMask;
use crate::ops::packed_attention_bwd::PackedAttentionSaved;
use crate::ops::packed_attention_fwd::unsupported;
use crate::webgpu::sources::{self, ShaderSource, f16_variant};
use crate::webgpu::{WgpuBackend, buf, buf_mut, groups_1d, u32_of};
use crate::{DType, Device, FloatElement, Result, View, ViewMut};

/// Rows (forward, dQ) or keys (dK/dV) per workgroup.
const TILE: u32 = 64;

fn module<T: FloatElement>(
    op: &'static str,
    dev: &Device,
    be: &WgpuBackend,
    base: &'static ShaderSource,
) -> Result<&'static ShaderSource> {
    match T::DTYPE {
        DType::F32 => Ok(base),
        DType::F16 if be.has_f16() => f16_variant(base).ok_or_else(|| unsupported::<T>(op, dev)),
        _ => Err(unsupported::<T>(op, dev)),
    }
}

/// Loop iterations one invocation may run on a software adapter: Mesa lavapipe before 23.x
/// (gallivm's loop limiter) silently leaves every loop once an invocation's loop iterations add
/// up to 65535, so a longer problem would return unwritten outputs.
const SOFTWARE_LOOP_BUDGET: usize = 60_000;

/// Refuses, on a software adapter, a problem whose busiest invocation (a row seeing all `N`
/// keys, or a key seen by all `N` rows of its whole GQA group) would pass the loop budget: per
/// key or row the shaders run about `2·(D/16 + D%16) + 2` iterations.
fn check_loop_budget(op: &'static str, be: &WgpuBackend, s: &Shape) -> Result<()> {
    let d = s.head_dim;
    let per = 2 * (d / 16 + d % 16) + 2;
    let group = s.num_qo_heads / s.num_kv_heads;
    let iters = group.max(1) * s.num_tokens * per + 4 * d;
    crate::ensure!(
        !be.is_software() || iters <= SOFTWARE_LOOP_BUDGET,
        op,
        "this problem needs ~{iters} loop iterations per shader invocation, past the {} that a \
         software adapter (Mesa lavapipe < 23) runs before it silently leaves its loops: use \
         fewer tokens or another backend",
        SOFTWARE_LOOP_BUDGET
    );
    Ok(())
}

/// Workgroups for `n` tiles of `TILE` with `z` in the third dimension.
fn groups(n: usize, z: usize) -> (u32, u32, u32) {
    let (x, y, _) = groups_1d(n, TILE);
    (x, y, z as u32)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: FloatElement>(
    dev: &Device,
    be: &WgpuBackend,
    q: &View<'_, T>,
    k: &View<'_, T>,
    v: &View<'_, T>,
    mask: &TreeMask,
    o: &ViewMut<'_, T>,
    lse: &ViewMut<'_, f32>,
    s: Shape,
) -> Result<()> {
    const OP: &str = "packed_attention_fwd";
    let shader = module::<T>(OP, dev, be, &sources::PACKED_ATTENTION_FWD)?;
    check_loop_budget(OP, be, &Shape { num_kv_heads: s.num_qo_heads, ..s })?;
    let u = |what: &str, x: usize| u32_of(OP, what, x);
    let params: [u32; 12] = [
        u("num_tokens", s.num_tokens)?,
        u("num_qo_heads", s.num_qo_heads)?,
        u("num_kv_heads", s.num_kv_heads)?,
        u("head_dim", s.head_dim)?,
        s.sm_scale.to_bits(),
        u("group", s.num_qo_heads / s.num_kv_heads)?,
        u("q offset", q.offset())?,
        u("k offset", k.offset())?,
        u("v offset", v.offset())?,
        u("o offset", o.offset())?,
        u("lse offset", lse.offset())?,
        0,
    ];
    let (ends, bounds) = (mask.kv_row_end(), mask.block_bounds());
    be.dispatch(
        shader,
        "packed_attention_fwd",
        bytemuck::cast_slice(&params),
        &[buf(q), buf(k), buf(v), buf(&ends), buf(&bounds), buf_mut(o), buf_mut(lse)],
        groups(s.num_tokens, s.num_qo_heads),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: FloatElement>(
    dev: &Device,
    be: &WgpuBackend,
    x: &PackedAttentionSaved<'_, T>,
    d_o: &View<'_, T>,
    mask: &TreeMask,
    dq: &ViewMut<'_, T>,
    dk: &ViewMut<'_, T>,
    dv: &ViewMut<'_, T>,
    delta: &ViewMut<'_, f32>,
    s: Shape,
) -> Result<()> {
    const OP: &str = "packed_attention_bwd";
    let shader = module::<T>(OP, dev, be, &sources::PACKED_ATTENTION_BWD)?;
    check_loop_budget(OP, be, &s)?;
    let u = |what: &str, v: usize| u32_of(OP, what, v);
    let mut params: [u32; 16] = [
        u("num_tokens", s.num_tokens)?,
        u("num_qo_heads", s.num_qo_heads)?,
        u("num_kv_heads", s.num_kv_heads)?,
        u("head_dim", s.head_dim)?,
        s.sm_scale.to_bits(),
        u("group", s.num_qo_heads / s.num_kv_heads)?,
        u("q offset", x.q.offset())?,
        u("k offset", x.k.offset())?,
        u("v offset", x.v.offset())?,
        u("d_o offset", d_o.offset())?,
        u("lse offset", x.lse.offset())?,
        u("delta offset", delta.offset())?,
        u("o offset", x.o.offset())?,
        u("dq offset", dq.offset())?,
        0,
        0,
    ];
    let (ends, bounds) = (mask.kv_row_end(), mask.block_bounds());
    let common = [buf(&x.q), buf(&x.k), buf(&x.v), buf(d_o), buf(&x.lse), buf(&ends), buf(&bounds)];
    let mut bufs = common.to_vec();
    bufs.extend([buf_mut(delta), buf(&x.o), buf_mut(dq)]);
    be.dispatch(
        shader,
        "packed_attention_bwd_dq",
        bytemuck::cast_slice(&params),
        &bufs,
        groups(s.num_tokens, s.num_qo_heads),
    )?;
    params[12] = u("dk offset", dk.offset())?;
    params[13] = u("dv offset", dv.offset())?;
    let mut bufs = common.to_vec();
    bufs.extend([buf_mut(delta), buf_mut(dk), buf_mut(dv)]);
    be.dispatch(
        shader,
        "packed_attention_bwd_dkdv",
        bytemuck::cast_slice(&params),
        &bufs,
        groups(s.num_tokens, s.num_kv_heads),
    )
}
