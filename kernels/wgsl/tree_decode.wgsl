
// tree_decode.wgsl — tree decode (appended to decode_tile.wgsl): one workgroup per (work item,
// kv head) reads the item's KV range once for all its query rows and writes per row a partial
// state (f32 o, lse bits) — or the final output when the row has exactly one state.
// Bindings: 0 params, 1 q, 2 kv, 3 the plan (page_indices at sec0, work [W][8] = {page_begin,
// page_end, kv_start, kv_end, row_begin, row_end, slot, node} at sec1, q_pos [rows] at sec2),
// 4 the merge rows (partial_indptr [rows+1] at 0, row_to_q [rows] at ib_rows), 5 partial_o
// [P, hq, D] f32, 6 partial_lse [P, hq] (u32 bits of f32), 7 out [rows, hq, D], 8 lse [rows, hq]
// u32 bits (a dummy buffer when has_lse == 0). All indices validated on upload.
// Dispatch: one workgroup of 128 per (work item, kv head), folded into (x, y).

@group(0) @binding(4) var<storage, read> ib: array<i32>;
@group(0) @binding(5) var<storage, read_write> partial_o: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial_lse: array<u32>;
@group(0) @binding(7) var<storage, read_write> dst_out: array<elem_t>;
@group(0) @binding(8) var<storage, read_write> lse_out: array<u32>;

fn job_q_row(j: Job, r: u32) -> u32 {
    return u32(ib[p.ib_rows + r]);
}

fn job_pos(j: Job, r: u32) -> i32 {
    return ia[p.sec2 + r];
}

fn one_state(r: u32) -> bool {
    return ib[r + 1u] - ib[r] == 1;
}

fn emit_o(j: Job, r: u32, head: u32, c: u32, v: f32) {
    if (one_state(r)) {
        dst_out[p.out_off + (job_q_row(j, r) * p.hq + head) * p.head_dim + c] = elem_t(v);
    } else {
        let s = u32(ib[r] + j.slot);
        partial_o[p.po_off + (s * p.hq + head) * p.head_dim + c] = v;
    }
}

fn emit_lse(j: Job, r: u32, head: u32, bits: u32) {
    if (one_state(r)) {
        if (p.has_lse != 0u) {
            lse_out[p.lse_off + job_q_row(j, r) * p.hq + head] = bits;
        }
    } else {
        let s = u32(ib[r] + j.slot);
        partial_lse[p.pl_off + s * p.hq + head] = bits;
    }
}

@compute @workgroup_size(128)
fn tree_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.num_jobs * p.num_kv_heads) {
        return;  // uniform per workgroup
    }
    let w = flat / p.num_kv_heads;
    let kvh = flat % p.num_kv_heads;
    if (lid == 0u) {
        let b = p.sec1 + w * 8u;
        wjob = Job(p.sec0 + u32(ia[b]), ia[b + 2u], ia[b + 3u], u32(ia[b + 4u]),
                   u32(ia[b + 5u] - ia[b + 4u]), 0, ia[b + 6u], 0u);
    }
    let j = workgroupUniformLoad(&wjob);
    attend(j, kvh, lid);
}
