// paged_kv_append.wgsl — write the K and V rows of n new tokens into their page slots, one
// layer per dispatch (vLLM reshape_and_cache, FlashInfer append_paged_kv_cache).
// Bindings: 0 params, 1 cache (the layer starts at cache_off), 2 k, 3 v (token t, head h at
// t*s_src + h*head_dim from k_off / v_off; k and v may be the same buffer), 4 slots [n] i32
// (slot = page*page_size + row, checked on the host to be < num_pages*page_size).
// Element (page, kv, head, row, d) of the layer: page*s_page + kv*s_kv + head*s_head +
// row*s_token + d. A pure copy; the f16 variant is derived from the elem_t line.
// Dispatch: one workgroup of 64 per token, tokens folded into (x, y); the workgroup walks the
// token's heads in a uniform loop, its invocations striding over d and writing K and V.

alias elem_t = f32;

struct Params { n: u32, heads: u32, head_dim: u32, page_shift: u32,
                page_mask: u32, cache_off: u32, k_off: u32, v_off: u32,
                slots_off: u32, s_src: u32, s_page: u32, s_kv: u32,
                s_head: u32, s_token: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> cache: array<elem_t>;
@group(0) @binding(2) var<storage, read> k: array<elem_t>;
@group(0) @binding(3) var<storage, read> v: array<elem_t>;
@group(0) @binding(4) var<storage, read> slots: array<i32>;

@compute @workgroup_size(64)
fn paged_kv_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.n) { return; }
    let slot = u32(slots[p.slots_off + t]);
    let dst = p.cache_off + (slot >> p.page_shift) * p.s_page + (slot & p.page_mask) * p.s_token;
    let src = t * p.s_src;
    for (var h = 0u; h < p.heads; h = h + 1u) {
        let o = dst + h * p.s_head;
        let i = src + h * p.head_dim;
        for (var d = lid; d < p.head_dim; d = d + 64u) {
            cache[o + d] = k[p.k_off + i + d];
            cache[o + p.s_kv + d] = v[p.v_off + i + d];
        }
    }
}
