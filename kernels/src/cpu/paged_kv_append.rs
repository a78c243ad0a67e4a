//! Writes the K/V rows of new tokens into their page slots (vLLM `reshape_and_cache`,
//! FlashInfer `append_paged_kv_cache`).

use crate::ops::PagedKvLayout;

/// For token `i` with slot `s = slots[i]` (page `s / page_size`, row `s % page_size`) and every
/// head `h`, copies `k[i·src_stride + h·head_dim ..][..head_dim]` into K row
/// `(layer, page, h, row)` of `cache` and the same of `v` into V. `cache` starts at the layout's
/// element 0. A pure copy: any element type, bit-exact.
pub fn paged_kv_append<T: Copy>(
    cache: &mut [T],
    layout: &PagedKvLayout,
    layer: usize,
    k: &[T],
    v: &[T],
    src_stride: usize,
    slots: &[i32],
) {
    let (d, ps) = (layout.head_dim, layout.page_size);
    for (i, &slot) in slots.iter().enumerate() {
        let slot = slot as usize;
        let (page, row) = (slot / ps, slot % ps);
        for (kv, src) in [k, v].into_iter().enumerate() {
            for h in 0..layout.num_kv_heads {
                let s = i * src_stride + h * d;
                let o = layout.offset(layer, page, kv, h, row, 0);
                cache[o..o + d].copy_from_slice(&src[s..s + d]);
            }
        }
    }
}
