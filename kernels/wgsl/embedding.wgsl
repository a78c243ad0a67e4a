// embedding.wgsl — out[t, :] = table[ids[t], :] (token embedding gather).
// Bindings: 0 params, 1 table [vocab, dim], 2 ids [tokens] (i32, each in [0, vocab): validated on
// upload and against vocab on the host), 3 out [tokens, dim]. Offsets in elements.
// Dispatch: one workgroup of 256 per token, tokens folded into (x, y).

struct Params { tokens: u32, dim: u32, table_off: u32, ids_off: u32, out_off: u32,
                _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn embedding_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.tokens) { return; }
    let src = p.table_off + u32(ids[p.ids_off + t]) * p.dim;
    let dst = p.out_off + t * p.dim;
    for (var j = lid; j < p.dim; j = j + 256u) {
        out[dst + j] = table[src + j];
    }
}
