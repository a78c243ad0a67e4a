//! Copy-on-write of partial pages (vLLM `copy_blocks`): a forked child's fresh page receives
//! the parent's tail rows.

use crate::ops::PagedKvLayout;

/// For each job `(src, dst, rows)`, copies rows `[0, rows)` of page `src` into page `dst`, for K
/// and V, every head and every layer of `layout`. `cache` starts at the layout's element 0.
/// The jobs are independent (no job writes a page another job reads or writes), so their order
/// does not matter. A pure copy: any element type, bit-exact.
pub fn page_copy<T: Copy>(cache: &mut [T], layout: &PagedKvLayout, jobs: &[(u32, u32, u32)]) {
    let d = layout.head_dim;
    for &(src, dst, rows) in jobs {
        for layer in 0..layout.num_layers {
            for kv in 0..2 {
                for h in 0..layout.num_kv_heads {
                    for t in 0..rows as usize {
                        let s = layout.offset(layer, src as usize, kv, h, t, 0);
                        let o = layout.offset(layer, dst as usize, kv, h, t, 0);
                        cache.copy_within(s..s + d, o);
                    }
                }
            }
        }
    }
}
