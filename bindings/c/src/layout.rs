//! The paged KV cache descriptor of the C API.

use treepo_kernels::ops::PagedKvLayout;

use crate::enums::TreepoKvLayoutKind;
use crate::error::{FfiError, TreepoStatus, ensure, guard};
use crate::handle;

/// Where each K/V element of a paged cache lives, in elements (not bytes): element
/// `(layer, page, kv, head, token, d)` (kv = 0 for K, 1 for V) is at
/// `layer*stride_layer + page*stride_page + kv*stride_kv + head*stride_head +
/// token*stride_token + d`. One allocation holds K and V of every layer. Fill it with
/// `treepo_kv_layout` for NHD/HND, or set the strides of a view into your own tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreepoKvLayout {
    /// Layers stored in the allocation.
    pub num_layers: usize,
    /// Pages per layer (page ids of the plan must be below this).
    pub num_pages: usize,
    /// KV heads.
    pub num_kv_heads: usize,
    /// Tokens per page (a power of two).
    pub page_size: usize,
    /// Values per head (the contiguous dimension).
    pub head_dim: usize,
    /// Elements between layers.
    pub stride_layer: usize,
    /// Elements between pages.
    pub stride_page: usize,
    /// Elements from K to V of the same page.
    pub stride_kv: usize,
    /// Elements between heads.
    pub stride_head: usize,
    /// Elements between tokens.
    pub stride_token: usize,
}

impl TreepoKvLayout {
    pub(crate) fn to_kernels(self) -> PagedKvLayout {
        PagedKvLayout {
            num_layers: self.num_layers,
            num_pages: self.num_pages,
            num_kv_heads: self.num_kv_heads,
            page_size: self.page_size,
            head_dim: self.head_dim,
            stride_layer: self.stride_layer,
            stride_page: self.stride_page,
            stride_kv: self.stride_kv,
            stride_head: self.stride_head,
            stride_token: self.stride_token,
        }
    }

    fn from_kernels(l: PagedKvLayout) -> TreepoKvLayout {
        TreepoKvLayout {
            num_layers: l.num_layers,
            num_pages: l.num_pages,
            num_kv_heads: l.num_kv_heads,
            page_size: l.page_size,
            head_dim: l.head_dim,
            stride_layer: l.stride_layer,
            stride_page: l.stride_page,
            stride_kv: l.stride_kv,
            stride_head: l.stride_head,
            stride_token: l.stride_token,
        }
    }
}

/// Fills `*out` with the contiguous layout `kind` (a `TreepoKvLayoutKind`) of `num_layers`
/// layers x `num_pages` pages; the allocation then holds
/// `num_layers * num_pages * 2 * num_kv_heads * page_size * head_dim` elements.
///
/// # Safety
/// `out` must be null or valid for writing one `TreepoKvLayout`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_kv_layout(
    kind: i32,
    num_layers: usize,
    num_pages: usize,
    num_kv_heads: usize,
    page_size: usize,
    head_dim: usize,
    out: *mut TreepoKvLayout,
) -> TreepoStatus {
    guard(|| {
        // SAFETY: null/misaligned is rejected; otherwise writable by the caller's contract.
        let out = unsafe { handle::get_mut("out", out) }?;
        let dims = [num_layers, num_pages, 2, num_kv_heads, page_size, head_dim];
        let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        ensure!(total.is_some(), "layout dimensions {dims:?} overflow size_t");
        let l = match kind {
            k if k == TreepoKvLayoutKind::Nhd as i32 => {
                PagedKvLayout::nhd(num_layers, num_pages, num_kv_heads, page_size, head_dim)
            }
            k if k == TreepoKvLayoutKind::Hnd as i32 => {
                PagedKvLayout::hnd(num_layers, num_pages, num_kv_heads, page_size, head_dim)
            }
            _ => {
                return Err(FfiError::Invalid(format!(
                    "kind = {kind} is not a TreepoKvLayoutKind (TREEPO_KV_LAYOUT_KIND_NHD = 0, TREEPO_KV_LAYOUT_KIND_HND = 1)"
                )));
            }
        };
        l.validate(usize::MAX).map_err(|e| FfiError::Invalid(e.to_string()))?;
        *out = TreepoKvLayout::from_kernels(l);
        Ok(())
    })
}

/// The number of elements an allocation needs to hold every element `layout` reaches, into
/// `*len` (0 for an empty cache).
///
/// # Safety
/// `layout` null or valid for reads; `len` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_kv_layout_required_len(
    layout: *const TreepoKvLayout,
    len: *mut usize,
) -> TreepoStatus {
    guard(|| {
        // SAFETY: null/misaligned is rejected; otherwise valid by the caller's contract.
        let (layout, len) =
            unsafe { (handle::get("layout", layout)?, handle::get_mut("len", len)?) };
        *len = layout.to_kernels().required_len()?;
        Ok(())
    })
}
