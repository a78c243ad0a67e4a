//! Append the K/V rows of new tokens to a paged KV cache (vLLM `reshape_and_cache` with a
//! `slot_mapping`, FlashInfer `append_paged_kv_cache`).
//!
//! The model computes K and V of a layer for a batch of new tokens (the next token of every
//! active leaf at decode, or a segment at prefill) and writes them into the slots the host
//! bookkeeping (`tree-kv`'s `append`) reserved: slot = `page * page_size + row`. One call per
//! layer; the same slots serve every layer because one page id names the same page in all of
//! them. NHD, HND and any other non-aliasing strided layout ([`PagedKvLayout`]) are served by
//! the same kernels.

use crate::device::Inner;
use crate::ops::PagedKvLayout;
use crate::{BackendKind, DType, Device, Element, Indices, KernelError, Result, View, ViewMut};
use crate::{cpu, validate};

const OP: &str = "paged_kv_append";

/// Writes token `i`'s K and V rows (every head) into slot `slots[i]` of layer `layer` of
/// `cache`: `k_new`/`v_new` are dense `[N, num_kv_heads, head_dim]` with `N = slots.len()`.
///
/// Exact (a copy). Any [`Element`] on the CPU; f32/f16/bf16 on CUDA; f32 and (with the
/// adapter's `SHADER_F16`) f16 on wgpu; anything else is [`KernelError::UnsupportedDtype`].
/// Slots must be distinct: if two tokens name the same slot, which one lands is unspecified
/// (`tree-kv` never reserves a slot twice). `N = 0` is a valid no-op.
pub fn paged_kv_append<'a, 'b, T: Element>(
    dev: &Device,
    cache: impl Into<ViewMut<'a, T>>,
    layout: &PagedKvLayout,
    layer: usize,
    k_new: impl Into<View<'b, T>>,
    v_new: impl Into<View<'b, T>>,
    slots: &Indices,
) -> Result<()> {
    let dense = layout.num_kv_heads.saturating_mul(layout.head_dim);
    paged_kv_append_strided(dev, cache, layout, layer, k_new, v_new, slots, dense)
}

/// [`paged_kv_append`] with `kv_token_stride` elements between consecutive tokens of
/// `k_new`/`v_new` (heads stay `head_dim` apart within a token), so K and V can be appended
/// straight out of a fused QKV projection `[N, (H_q + 2·H_kv)·head_dim]`: pass the views that
/// start at element `H_q·head_dim` (K) and `(H_q + H_kv)·head_dim` (V) and
/// `kv_token_stride = (H_q + 2·H_kv)·head_dim`. `kv_token_stride >= num_kv_heads·head_dim`;
/// each view must hold `(N-1)·kv_token_stride + num_kv_heads·head_dim` elements.
#[allow(clippy::too_many_arguments)]
pub fn paged_kv_append_strided<'a, 'b, T: Element>(
    dev: &Device,
    cache: impl Into<ViewMut<'a, T>>,
    layout: &PagedKvLayout,
    layer: usize,
    k_new: impl Into<View<'b, T>>,
    v_new: impl Into<View<'b, T>>,
    slots: &Indices,
    kv_token_stride: usize,
) -> Result<()> {
    let (mut cache, k, v) = (cache.into(), k_new.into(), v_new.into());
    let l = *layout;
    l.validate(cache.len())?;
    l.check_disjoint()?;
    validate::output(dev, OP, "cache", &cache, l.required_len()?)?;
    crate::ensure!(
        layer < l.num_layers,
        OP,
        "layer {layer} is outside the layout's {} layers",
        l.num_layers
    );
    let row = validate::product(OP, &[l.num_kv_heads, l.head_dim])?;
    crate::ensure!(
        kv_token_stride >= row,
        OP,
        "kv_token_stride = {kv_token_stride} is smaller than num_kv_heads*head_dim = {row}: \
         the tokens' rows would overlap"
    );
    let n = slots.len();
    let need =
        match n {
            0 => 0,
            _ => validate::product(OP, &[n - 1, kv_token_stride])?.checked_add(row).ok_or_else(
                || KernelError::Invalid { op: OP, msg: "k_new extent overflows usize".into() },
            )?,
        };
    validate::input(dev, OP, "k_new", &k, need)?;
    validate::input(dev, OP, "v_new", &v, need)?;
    validate::input(dev, OP, "slots", &slots.view(), n)?;
    let capacity = validate::product(OP, &[l.num_pages, l.page_size])?;
    slots.check_bound(OP, "slots", capacity)?;
    crate::ensure!(i32::try_from(n).is_ok(), OP, "{n} tokens exceed the kernels' grid (2^31 - 1)");
    validate::fits_u32(OP, "2*num_kv_heads*head_dim", row.saturating_mul(2))?;
    validate::fits_u32(OP, "page_size", l.page_size)?;
    check_dtype::<T>(dev, OP)?;
    if n == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let need_cache = l.required_len()?;
            cpu::paged_kv_append::paged_kv_append(
                &mut cache.cpu()[..need_cache],
                &l,
                layer,
                &k.cpu()[..need],
                &v.cpu()[..need],
                kv_token_stride,
                slots.view().cpu(),
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let sym = cuda_symbol::<T>(OP)?;
            let f = b.function(OP, sym)?;
            let e = T::DTYPE.size();
            let cp = addr_mut(b, &mut cache) + (layer * l.stride_layer * e) as u64;
            let (kp, vp, sp) = (addr(b, &k), addr(b, &v), addr(b, &slots.view()));
            let wb = word_bytes(
                e,
                &[cp, kp, vp],
                &[
                    l.head_dim,
                    l.stride_page,
                    l.stride_kv,
                    l.stride_head,
                    l.stride_token,
                    kv_token_stride,
                ],
            );
            let w = |x: usize| (x * e / wb) as i64;
            let (n32, heads) = (n as u32, l.num_kv_heads as u32);
            let dw = (l.head_dim * e / wb) as u32;
            let (shift, mask) = (l.page_size.trailing_zeros(), (l.page_size - 1) as u32);
            let (s_page, s_kv, s_head, s_token, s_src) = (
                w(l.stride_page),
                w(l.stride_kv),
                w(l.stride_head),
                w(l.stride_token),
                w(kv_token_stride),
            );
            let wb32 = wb as u32;
            let cfg = LaunchConfig {
                grid_dim: (n32, 1, 1),
                block_dim: (block_threads(2 * l.num_kv_heads * dw as usize), 1, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = b.stream().launch_builder(&f);
            launch.arg(&kp).arg(&vp).arg(&cp).arg(&sp).arg(&n32).arg(&heads).arg(&dw);
            launch.arg(&shift).arg(&mask).arg(&s_page).arg(&s_kv).arg(&s_head);
            launch.arg(&s_token).arg(&s_src).arg(&wb32);
            // SAFETY: `cache` holds the layout's required_len elements (validated), `cp` points
            // at layer `layer < num_layers` of it, so every (page < num_pages, kv, head, row
            // < page_size, d) address is inside; k/v hold (N-1)*kv_token_stride + H*D elements
            // and slots N values < num_pages*page_size (checked on upload and against the
            // layout); the word size divides every address and stride; the argument list
            // matches `PAGED_KV_APPEND` in paged_kv_append.cu.
            unsafe { launch.launch(cfg) }.map_err(|e| driver_err(sym, e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let shader = wgsl_shader::<T>(b, &sources::PAGED_KV_APPEND, OP)?;
            let u = |what: &str, x: usize| u32_of(OP, what, x);
            let cache_base = layer * l.stride_layer + cache.offset();
            u("cache offset + layout extent", cache.offset() + l.required_len()?)?;
            u("k_new offset + extent", k.offset() + need)?;
            u("v_new offset + extent", v.offset() + need)?;
            let params: [u32; 16] = [
                n as u32,
                l.num_kv_heads as u32,
                l.head_dim as u32,
                l.page_size.trailing_zeros(),
                (l.page_size - 1) as u32,
                u("cache offset", cache_base)?,
                u("k_new offset", k.offset())?,
                u("v_new offset", v.offset())?,
                u("slots offset", slots.view().offset())?,
                u("kv_token_stride", kv_token_stride)?,
                u("stride_page", l.stride_page)?,
                u("stride_kv", l.stride_kv)?,
                u("stride_head", l.stride_head)?,
                u("stride_token", l.stride_token)?,
                0,
                0,
            ];
            let slots_view = slots.view();
            b.dispatch(
                shader,
                "paged_kv_append",
                bytemuck::cast_slice(&params),
                &[buf_mut(&cache), buf(&k), buf(&v), buf(&slots_view)],
                groups_1d(n, 1),
            )
        }
    }
}

/// The dtypes the cache ops run on `dev`: every element type on the CPU (pure copies),
/// f32/f16/bf16 on CUDA, f32 and (with `SHADER_F16`) f16 on wgpu.
pub(super) fn check_dtype<T: Element>(dev: &Device, op: &'static str) -> Result<()> {
    let ok = match dev.kind() {
        BackendKind::Cpu => true,
        BackendKind::Cuda => matches!(T::DTYPE, DType::F32 | DType::F16 | DType::BF16),
        BackendKind::Wgpu => {
            T::DTYPE == DType::F32 || (T::DTYPE == DType::F16 && dev.supports_f16())
        }
    };
    if !ok {
        return Err(KernelError::UnsupportedDtype { op, dtype: T::DTYPE, backend: dev.kind() });
    }
    Ok(())
}

/// The `{op}_{dtype}` kernel symbol.
#[cfg(feature = "cuda")]
pub(super) fn cuda_symbol<T: Element>(op: &'static str) -> Result<&'static str> {
    Ok(match (op, T::DTYPE) {
        ("paged_kv_append", DType::F32) => "paged_kv_append_f32",
        ("paged_kv_append", DType::F16) => "paged_kv_append_f16",
        ("paged_kv_append", DType::BF16) => "paged_kv_append_bf16",
        ("page_copy", DType::F32) => "page_copy_f32",
        ("page_copy", DType::F16) => "page_copy_f16",
        ("page_copy", DType::BF16) => "page_copy_bf16",
        (_, dtype) => {
            return Err(KernelError::UnsupportedDtype { op, dtype, backend: BackendKind::Cuda });
        }
    })
}

/// The largest word (16, 8, 4 or 2 bytes, at least one element) that divides every base
/// address and every stride in bytes: the copy kernels then move whole words (16-byte vector
/// loads and stores for the common aligned layouts).
#[cfg(feature = "cuda")]
pub(super) fn word_bytes(elem: usize, addrs: &[u64], strides: &[usize]) -> usize {
    [16usize, 8, 4, 2]
        .into_iter()
        .filter(|&wb| wb >= elem && wb.is_multiple_of(elem))
        .find(|&wb| {
            addrs.iter().all(|&a| a.is_multiple_of(wb as u64))
                && strides.iter().all(|&s| (s * elem).is_multiple_of(wb))
        })
        .unwrap_or(elem)
}

/// Threads per block for `words` words of work: a multiple of 32, at most 256.
#[cfg(feature = "cuda")]
pub(super) fn block_threads(words: usize) -> u32 {
    (words.div_ceil(32) * 32).clamp(32, 256) as u32
}

/// The f32 shader or its f16 variant.
#[cfg(feature = "wgpu")]
pub(super) fn wgsl_shader<T: Element>(
    b: &crate::webgpu::WgpuBackend,
    base: &'static crate::webgpu::ShaderSource,
    op: &'static str,
) -> Result<&'static crate::webgpu::ShaderSource> {
    match T::DTYPE {
        DType::F32 => Ok(base),
        DType::F16 if b.has_f16() => crate::webgpu::sources::f16_variant(base)
            .ok_or_else(|| KernelError::Invalid { op, msg: "shader has no f16 variant".into() }),
        dtype => Err(KernelError::UnsupportedDtype { op, dtype, backend: BackendKind::Wgpu }),
    }
}
