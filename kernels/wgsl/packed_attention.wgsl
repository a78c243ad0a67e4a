// packed_attention.wgsl — the tile classification shared by packed_attention_fwd.wgsl and
// packed_attention_bwd.wgsl (prepended to both by webgpu::sources; CUDA twin: pa_classify in
// packed_attention.cuh). The module declares `p` (a Params with `n: u32`) and
// `block_bounds: array<i32>`; this file declares no binding.

const BLOCK: u32 = 16u;

// Rows [r0, r1) against the keys of 16-column block b ([b*16, b*16 + 16) clipped to n), from the
// block's bounds (min, max of kv_row_end): 0 when no pair is visible, 2 when every pair is,
// else 1 (see ops/tree_mask.rs). Uniform per workgroup when its arguments are.
fn pa_classify(b: u32, r0: u32, r1: u32) -> u32 {
    let c0 = b * BLOCK;
    let c1 = min(c0 + BLOCK, p.n);
    let lo = u32(block_bounds[2u * b]);
    let hi = u32(block_bounds[2u * b + 1u]);
    if (r0 >= hi || r1 <= c0) { return 0u; }
    if (r1 <= lo && r0 + 1u >= c1) { return 2u; }
    return 1u;
}
