// embedding_bwd.wgsl — embedding backward, ACCUMULATING: dtable[ids[t], :] += dout[t, :].
// Deterministic, no float atomics (WGSL has none), bit-identical to the CPU reference: the same
// scheme as embedding_bwd.cu — workgroup (t, tile) works only if t is the first occurrence of
// ids[t], then adds every occurrence's gradient in token order, in registers, for its tile of
// 1024 columns (4 per invocation). Later occurrences are found per chunk of 256 ids: matches are
// flagged in workgroup memory, a workgroup counter says whether the chunk has any, and only then
// is the flag list walked.
// Bindings: 0 params, 1 dout [tokens, dim], 2 ids [tokens] (i32, < vocab), 3 dtable [vocab, dim].
// Dispatch: (tokens) workgroups of 256 folded into (x, y), z = ceil(dim / 1024) column tiles.

struct Params { tokens: u32, dim: u32, dout_off: u32, ids_off: u32, dtable_off: u32,
                _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> dtable: array<f32>;

var<workgroup> earlier_any: atomic<u32>;
var<workgroup> earlier_flag: u32;
var<workgroup> hit_total: atomic<u32>;
var<workgroup> flags: array<u32, 256>;

fn add_row(acc: ptr<function, array<f32, 4>>, t: u32, c0: u32) {
    let src = p.dout_off + t * p.dim;
    for (var q = 0u; q < 4u; q = q + 1u) {
        let j = c0 + q * 256u;
        if (j < p.dim) { (*acc)[q] = (*acc)[q] + dout[src + j]; }
    }
}

@compute @workgroup_size(256)
fn embedding_bwd_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.tokens) { return; }  // folding spare: uniform per workgroup
    if (lid == 0u) {
        atomicStore(&earlier_any, 0u);
        atomicStore(&hit_total, 0u);
    }
    workgroupBarrier();
    let id = ids[p.ids_off + t];
    var earlier = false;
    for (var k = lid; k < t; k = k + 256u) {
        if (ids[p.ids_off + k] == id) { earlier = true; }
    }
    if (earlier) { atomicOr(&earlier_any, 1u); }
    workgroupBarrier();
    if (lid == 0u) { earlier_flag = atomicLoad(&earlier_any); }
    if (workgroupUniformLoad(&earlier_flag) != 0u) { return; }  // not the first occurrence
    let row = p.dtable_off + u32(id) * p.dim;
    // This invocation's columns: c0 + q·256, q < 4.
    let c0 = wid.z * 1024u + lid;
    var acc: array<f32, 4>;
    for (var q = 0u; q < 4u; q = q + 1u) {
        let j = c0 + q * 256u;
        acc[q] = 0.0;
        if (j < p.dim) { acc[q] = dtable[row + j]; }
    }
    add_row(&acc, t, c0);
    var seen = 0u;
    for (var base = t + 1u; base < p.tokens; base = base + 256u) {
        let k = base + lid;
        var hit = 0u;
        if (k < p.tokens) {
            if (ids[p.ids_off + k] == id) { hit = 1u; }
        }
        flags[lid] = hit;
        if (hit != 0u) { atomicAdd(&hit_total, 1u); }
        workgroupBarrier();
        let total = atomicLoad(&hit_total);
        if (total != seen) {
            seen = total;
            for (var q = 0u; q < 256u; q = q + 1u) {
                if (flags[q] != 0u) { add_row(&acc, base + q, c0); }
            }
        }
        workgroupBarrier();  // flags are rewritten by the next chunk
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        let j = c0 + q * 256u;
        if (j < p.dim) { dtable[row + j] = acc[q]; }
    }
}
