// page_copy.wgsl — copy-on-write of partial pages (vLLM copy_blocks): for each job
// (src, dst, rows), rows [0, rows) of page src are copied into page dst, for K and V, every
// head and every layer, in one dispatch.
// Bindings: 0 params, 1 cache (element (layer, page, kv, head, row, d) at cache_off +
// layer*s_layer + page*s_page + kv*s_kv + head*s_head + row*s_token + d), 2 jobs [3*J] i32
// triples from jobs_off, validated on the host (pages < num_pages, rows <= page_size, no page
// written twice, no page both written and read: the units run in parallel without a race).
// A pure copy; the f16 variant is derived from the elem_t line.
// Dispatch: one workgroup of 64 per (job, layer) unit, units folded into (x, y); the workgroup
// walks the unit's K and V rows (head, row) in a uniform loop, its invocations striding over d
// (no integer division per element: lavapipe runs this about twice as fast as a flat walk).

alias elem_t = f32;

struct Params { units: u32, layers: u32, heads: u32, head_dim: u32,
                pad0: u32, cache_off: u32, jobs_off: u32, s_layer: u32,
                s_page: u32, s_kv: u32, s_head: u32, s_token: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> cache: array<elem_t>;
@group(0) @binding(2) var<storage, read> jobs: array<i32>;

@compute @workgroup_size(64)
fn page_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let unit = wid.x + wid.y * nwg.x;
    if (unit >= p.units) { return; }
    let j = unit / p.layers;
    let layer = unit - j * p.layers;
    let src = u32(jobs[p.jobs_off + 3u * j]);
    let dst = u32(jobs[p.jobs_off + 3u * j + 1u]);
    let rows = u32(jobs[p.jobs_off + 3u * j + 2u]);
    let base = p.cache_off + layer * p.s_layer;
    let sb = base + src * p.s_page;
    let db = base + dst * p.s_page;
    for (var h = 0u; h < p.heads; h = h + 1u) {
        for (var t = 0u; t < rows; t = t + 1u) {
            let off = h * p.s_head + t * p.s_token;
            for (var d = lid; d < p.head_dim; d = d + 64u) {
                cache[db + off + d] = cache[sb + off + d];
                cache[db + p.s_kv + off + d] = cache[sb + p.s_kv + off + d];
            }
        }
    }
}
