//! Tree-masked packed attention, backward: FlashAttention-2's backward under a [`TreeMask`]
//! (`D_i = rowsum(do ⊙ o)`, `dS = P ⊙ (dP − D)`), recomputing `P` from the saved `lse`.
//! Backends and dtypes as in [`packed_attention_fwd`](super::packed_attention_fwd).

use crate::device::Inner;
use crate::ops::TreeMask;
use crate::ops::packed_attention_fwd::{PackedAttentionParams, check_mask, unsupported};
use crate::{DType, Device, FloatElement, Result, View, ViewMut, cpu, validate};

const OP: &str = "packed_attention_bwd";

/// The forward tensors the backward pass reads, all over the same `N` packed tokens.
#[derive(Clone, Copy)]
pub struct PackedAttentionSaved<'a, T: FloatElement> {
    /// `q [N, H_q, D]`.
    pub q: View<'a, T>,
    /// `k [N, H_kv, D]`.
    pub k: View<'a, T>,
    /// `v [N, H_kv, D]`.
    pub v: View<'a, T>,
    /// `o [N, H_q, D]`, the forward output.
    pub o: View<'a, T>,
    /// `lse [H_q, N]`, the forward's natural-log normalizers.
    pub lse: View<'a, f32>,
}

/// The gradients the backward pass writes.
pub struct PackedAttentionGrads<'a, T: FloatElement> {
    /// `dq [N, H_q, D]`.
    pub dq: ViewMut<'a, T>,
    /// `dk [N, H_kv, D]`: summed over the query heads of each GQA group.
    pub dk: ViewMut<'a, T>,
    /// `dv [N, H_kv, D]`: summed over the query heads of each GQA group.
    pub dv: ViewMut<'a, T>,
    /// `delta [H_q, N]` (f32), receives `D_i = do_i·o_i` (FlashAttention's `softmax_d`).
    pub delta: ViewMut<'a, f32>,
}

/// Backward pass: from the saved forward tensors and `d_o [N, H_q, D]` (the loss gradient with
/// respect to `o`), writes every element of `dq`, `dk`, `dv` and `delta`. `mask` and `params`
/// must be those of the forward call.
pub fn packed_attention_bwd<'a, T: FloatElement>(
    dev: &Device,
    saved: PackedAttentionSaved<'a, T>,
    d_o: impl Into<View<'a, T>>,
    mask: &TreeMask,
    grads: PackedAttentionGrads<'a, T>,
    params: &PackedAttentionParams,
) -> Result<()> {
    let d_o = d_o.into();
    let PackedAttentionGrads { mut dq, mut dk, mut dv, mut delta } = grads;
    let n = mask.num_tokens();
    let s = params.check(OP, n)?;
    let (nq, nkv) = (n * s.num_qo_heads * s.head_dim, n * s.num_kv_heads * s.head_dim);
    let x = saved;
    validate::input(dev, OP, "q", &x.q, nq)?;
    validate::input(dev, OP, "k", &x.k, nkv)?;
    validate::input(dev, OP, "v", &x.v, nkv)?;
    validate::input(dev, OP, "o", &x.o, nq)?;
    validate::input(dev, OP, "lse", &x.lse, s.num_qo_heads * n)?;
    validate::input(dev, OP, "d_o", &d_o, nq)?;
    check_mask(OP, dev, mask)?;
    validate::output(dev, OP, "dq", &dq, nq)?;
    validate::output(dev, OP, "dk", &dk, nkv)?;
    validate::output(dev, OP, "dv", &dv, nkv)?;
    validate::output(dev, OP, "delta", &delta, s.num_qo_heads * n)?;
    match &dev.inner {
        Inner::Cpu => {
            if T::DTYPE != DType::F32 {
                return Err(unsupported::<T>(OP, dev));
            }
            let f =
                |v: View<'a, T>, len: usize| -> &'a [f32] { &bytemuck::cast_slice(v.cpu())[..len] };
            let inputs = cpu::packed_attention_bwd::BwdInputs {
                q: f(x.q, nq),
                k: f(x.k, nkv),
                v: f(x.v, nkv),
                o: f(x.o, nq),
                d_o: f(d_o, nq),
                lse: &x.lse.cpu()[..s.num_qo_heads * n],
            };
            let m = cpu::packed_attention_fwd::Mask {
                kv_row_end: mask.kv_row_end().cpu(),
                block_bounds: mask.block_bounds().cpu(),
            };
            cpu::fast::packed_attention::backward(
                inputs,
                m,
                &mut delta.cpu()[..s.num_qo_heads * n],
                &mut bytemuck::cast_slice_mut(dq.cpu())[..nq],
                &mut bytemuck::cast_slice_mut(dk.cpu())[..nkv],
                &mut bytemuck::cast_slice_mut(dv.cpu())[..nkv],
                s,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => super::packed_attention_cuda::backward(
            b, &x, &d_o, mask, &mut dq, &mut dk, &mut dv, &mut delta, s,
        ),
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            super::packed_attention_wgpu::backward(dev, b, &x, &d_o, mask, &dq, &dk, &dv, &delta, s)
        }
    }
}
