//! The paged KV cache argument of `TreeDecode.run`: FlashInfer's single tensor
//! `[num_pages, 2, page_size, num_kv_heads, head_dim]` (NHD) / `[num_pages, 2, num_kv_heads,
//! page_size, head_dim]` (HND), optionally with a leading layer dimension, or a `(k, v)` pair of
//! views of one allocation. The layout's strides are read from the tensors, so any strided view
//! whose last dimension is contiguous works.

use treepo_kernels::ops::PagedKvLayout;

use crate::errors::{Result, type_err, value_err};
use crate::tensor::Tensor;

/// NHD or HND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `[.., page_size, num_kv_heads, head_dim]`.
    Nhd,
    /// `[.., num_kv_heads, page_size, head_dim]`.
    Hnd,
}

impl Order {
    /// Parses `"NHD"` / `"HND"` (any case).
    pub fn parse(s: &str) -> Result<Order> {
        match s.to_ascii_uppercase().as_str() {
            "NHD" => Ok(Order::Nhd),
            "HND" => Ok(Order::Hnd),
            _ => value_err!("kv_layout must be \"NHD\" or \"HND\", got {s:?}"),
        }
    }

    fn dims(self) -> &'static str {
        match self {
            Order::Nhd => "page_size, num_kv_heads, head_dim",
            Order::Hnd => "num_kv_heads, page_size, head_dim",
        }
    }
}

fn strides_of(t: &Tensor) -> Result<Vec<usize>> {
    match t.strides.iter().map(|&s| usize::try_from(s)).collect() {
        Ok(v) => Ok(v),
        Err(_) => value_err!("{}: negative strides {:?} are not supported", t.name, t.strides),
    }
}

/// The layout of the cache given as `kv` alone or as the pair `(kv, v)` (then `kv` is K).
pub fn derive(kv: &Tensor, v: Option<&Tensor>, order: Order) -> Result<PagedKvLayout> {
    let s = strides_of(kv)?;
    let sh = &kv.shape;
    // (layer dim?, [pages, a, b, d] and their strides, stride_kv)
    let (off, stride_kv) = match v {
        None => {
            let off = match sh.len() {
                5 => 0,
                6 => 1,
                _ => {
                    return value_err!(
                        "paged_kv_cache: expected [num_pages, 2, {}] or [num_layers, num_pages, \
                         2, {}], got shape {sh:?}",
                        order.dims(),
                        order.dims()
                    );
                }
            };
            if sh[off + 1] != 2 {
                return value_err!(
                    "paged_kv_cache: dimension {} must be 2 (K and V), got shape {sh:?}",
                    off + 1
                );
            }
            (off, s[off + 1])
        }
        Some(v) => {
            let off = match sh.len() {
                4 => 0,
                5 => 1,
                _ => {
                    return value_err!(
                        "k_cache: expected [num_pages, {}] or [num_layers, num_pages, {}], got \
                         shape {sh:?}",
                        order.dims(),
                        order.dims()
                    );
                }
            };
            if v.dtype != kv.dtype {
                return type_err!("v_cache: dtype {} differs from k_cache's {}", v.dtype, kv.dtype);
            }
            if v.shape != kv.shape || v.strides != kv.strides {
                return value_err!(
                    "v_cache: shape {:?} / strides {:?} differ from k_cache's {:?} / {:?}; \
                     (k_cache, v_cache) must be views of one tensor such as kv[:, 0], kv[:, 1]",
                    v.shape,
                    v.strides,
                    kv.shape,
                    kv.strides
                );
            }
            let size = kv.float_dtype()?.size();
            let diff = v.ptr.wrapping_sub(kv.ptr) as isize;
            if diff <= 0 || !(diff as usize).is_multiple_of(size) {
                return value_err!(
                    "(k_cache, v_cache) must be two views of ONE allocation with V after K at a \
                     whole number of elements (e.g. kv[:, 0], kv[:, 1] of a [num_pages, 2, ...] \
                     tensor); v_cache starts {diff} bytes from k_cache"
                );
            }
            // Insert the K/V dimension so both cases index alike.
            (off, diff as usize / size)
        }
    };
    let (stride_layer, num_layers) = if off == 1 { (s[0], sh[0]) } else { (0, 1) };
    let (num_pages, stride_page) = (sh[off], s[off]);
    let rest = if v.is_none() { off + 2 } else { off + 1 };
    let (a, b, d) = (sh[rest], sh[rest + 1], sh[rest + 2]);
    let (sa, sb, sd) = (s[rest], s[rest + 1], s[rest + 2]);
    if d > 1 && sd != 1 {
        return value_err!(
            "{}: the head_dim dimension must be contiguous (stride 1), got strides {:?}",
            kv.name,
            kv.strides
        );
    }
    let (page_size, num_kv_heads, stride_token, stride_head) = match order {
        Order::Nhd => (a, b, sa, sb),
        Order::Hnd => (b, a, sb, sa),
    };
    let layout = PagedKvLayout {
        num_layers,
        num_pages,
        num_kv_heads,
        page_size,
        head_dim: d,
        stride_layer,
        stride_page,
        stride_kv,
        stride_head,
        stride_token,
    };
    layout.validate(layout.required_len()?)?;
    Ok(layout)
}
