//! Tree-masked packed attention, forward (training): every token of one or several rollout
//! trees, packed in DFS pre-order, attends to its ancestors' tokens and to the earlier tokens of
//! its own node — shared prefixes are computed once. The mask is a [`TreeMask`].
//!
//! | backend | dtypes | head_dim | kernel |
//! |---|---|---|---|
//! | CPU | f32 | any | [`cpu::packed_attention_fwd`], rayon over 16-row tiles |
//! | wgpu | f32, f16 (adapter `SHADER_F16`) | ≤ 256 | `wgsl/packed_attention_fwd.wgsl`, one invocation per row |
//! | CUDA | f32 (CUDA cores); f16, bf16 (tensor cores, `mma.sync.m16n8k16`) | 64, 128 | `cuda/packed_attention_fwd.cu` |

use crate::device::Inner;
use crate::ops::TreeMask;
use crate::{DType, Device, FloatElement, KernelError, Result, View, ViewMut, cpu, validate};

const OP: &str = "packed_attention_fwd";

/// Head counts, head size and softmax scale of packed attention (forward and backward).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackedAttentionParams {
    /// Query/output heads `H_q`.
    pub num_qo_heads: usize,
    /// Key/value heads `H_kv`; divides `H_q` (GQA group `H_q / H_kv`).
    pub num_kv_heads: usize,
    /// Values per head `D` (1..=256; CUDA: 64 or 128).
    pub head_dim: usize,
    /// Scale of `q·k` inside the softmax (usually `1/sqrt(D)`).
    pub sm_scale: f32,
}

impl PackedAttentionParams {
    /// The given heads with the usual scale `1/sqrt(head_dim)`.
    pub fn new(num_qo_heads: usize, num_kv_heads: usize, head_dim: usize) -> Self {
        PackedAttentionParams {
            num_qo_heads,
            num_kv_heads,
            head_dim,
            sm_scale: 1.0 / (head_dim.max(1) as f32).sqrt(),
        }
    }

    /// Forward FLOPs of `visible_pairs` query×key pairs (`4·D` per pair and query head:
    /// `q·k` and `p·v`); the backward pass costs 2.5× this.
    pub fn flops(&self, visible_pairs: u64) -> f64 {
        4.0 * self.head_dim as f64 * self.num_qo_heads as f64 * visible_pairs as f64
    }

    /// Checks the parameters for `op` (the same on every backend) and returns the CPU-side shape.
    pub(crate) fn check(
        &self,
        op: &'static str,
        num_tokens: usize,
    ) -> Result<cpu::packed_attention_fwd::Shape> {
        let (hq, hkv, d) = (self.num_qo_heads, self.num_kv_heads, self.head_dim);
        crate::ensure!(hq > 0 && hkv > 0, op, "head counts must be > 0 (got {hq} q, {hkv} kv)");
        crate::ensure!(
            hq % hkv == 0,
            op,
            "num_qo_heads = {hq} is not a multiple of num_kv_heads = {hkv}"
        );
        crate::ensure!((1..=256).contains(&d), op, "head_dim = {d} must be in 1..=256");
        crate::ensure!(
            self.sm_scale.is_finite() && self.sm_scale > 0.0,
            op,
            "sm_scale = {} must be finite and > 0",
            self.sm_scale
        );
        validate::product(op, &[num_tokens, hq, d])?;
        validate::fits_u32(op, "num_tokens * num_qo_heads * head_dim", num_tokens * hq * d)?;
        Ok(cpu::packed_attention_fwd::Shape {
            num_tokens,
            num_qo_heads: hq,
            num_kv_heads: hkv,
            head_dim: d,
            sm_scale: self.sm_scale,
        })
    }
}

/// Checks that the mask's arrays live on `dev`.
pub(crate) fn check_mask(op: &'static str, dev: &Device, mask: &TreeMask) -> Result<()> {
    validate::input(dev, op, "kv_row_end", &mask.kv_row_end(), mask.num_tokens())?;
    validate::input(dev, op, "block_bounds", &mask.block_bounds(), 2 * mask.num_blocks())
}

/// The error for a dtype `backend` has no kernel for.
pub(crate) fn unsupported<T: FloatElement>(op: &'static str, dev: &Device) -> KernelError {
    KernelError::UnsupportedDtype { op, dtype: T::DTYPE, backend: dev.kind() }
}

/// Forward pass over the `N = mask.num_tokens()` packed tokens: writes `o [N, H_q, D]` and the
/// natural-log `lse [H_q, N]` (f32, saved for [`packed_attention_bwd`](super::packed_attention_bwd))
/// from `q [N, H_q, D]`, `k, v [N, H_kv, D]`. Query head `h` reads KV head
/// `h / (H_q / H_kv)`.
#[allow(clippy::too_many_arguments)]
pub fn packed_attention_fwd<'a, T: FloatElement>(
    dev: &Device,
    q: impl Into<View<'a, T>>,
    k: impl Into<View<'a, T>>,
    v: impl Into<View<'a, T>>,
    mask: &TreeMask,
    o: impl Into<ViewMut<'a, T>>,
    lse: impl Into<ViewMut<'a, f32>>,
    params: &PackedAttentionParams,
) -> Result<()> {
    let (q, k, v, mut o, mut lse) = (q.into(), k.into(), v.into(), o.into(), lse.into());
    let n = mask.num_tokens();
    let s = params.check(OP, n)?;
    let (nq, nkv) = (n * s.num_qo_heads * s.head_dim, n * s.num_kv_heads * s.head_dim);
    validate::input(dev, OP, "q", &q, nq)?;
    validate::input(dev, OP, "k", &k, nkv)?;
    validate::input(dev, OP, "v", &v, nkv)?;
    check_mask(OP, dev, mask)?;
    validate::output(dev, OP, "o", &o, nq)?;
    validate::output(dev, OP, "lse", &lse, s.num_qo_heads * n)?;
    match &dev.inner {
        Inner::Cpu => {
            if T::DTYPE != DType::F32 {
                return Err(unsupported::<T>(OP, dev));
            }
            let f = |x: &'a [T]| -> &'a [f32] { bytemuck::cast_slice(x) };
            let m = cpu::packed_attention_fwd::Mask {
                kv_row_end: mask.kv_row_end().cpu(),
                block_bounds: mask.block_bounds().cpu(),
            };
            cpu::fast::packed_attention::forward(
                &f(q.cpu())[..nq],
                &f(k.cpu())[..nkv],
                &f(v.cpu())[..nkv],
                m,
                &mut bytemuck::cast_slice_mut(o.cpu())[..nq],
                &mut lse.cpu()[..s.num_qo_heads * n],
                s,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            super::packed_attention_cuda::forward(b, &q, &k, &v, mask, &mut o, &mut lse, s)
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            super::packed_attention_wgpu::forward(dev, b, &q, &k, &v, mask, &o, &lse, s)
        }
    }
}
