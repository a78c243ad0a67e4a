
// paged_decode.wgsl — naive paged decode (appended to decode_tile.wgsl): each sequence's query
// rows (its last positions, causal among themselves) attend to its whole page list.
// Bindings: 0 params, 1 q, 2 kv, 3 the page table (sections indptr [S+1] at sec0, indices at
// sec1, last_page_len [S] at sec2, q_indptr [S+1] at sec3; validated on upload), 4 out [rows, hq,
// D], 5 lse [rows, hq] as u32 bits (a dummy buffer when has_lse == 0).
// Dispatch: one workgroup of 128 per (sequence, kv head), folded into (x, y).

@group(0) @binding(4) var<storage, read_write> dst_out: array<elem_t>;
@group(0) @binding(5) var<storage, read_write> lse_out: array<u32>;

fn job_q_row(j: Job, r: u32) -> u32 {
    return r;
}

fn job_pos(j: Job, r: u32) -> i32 {
    return j.last_pos - i32(j.row_begin + j.nrows - 1u - r);
}

fn emit_o(j: Job, r: u32, head: u32, c: u32, v: f32) {
    dst_out[p.out_off + (r * p.hq + head) * p.head_dim + c] = elem_t(v);
}

fn emit_lse(j: Job, r: u32, head: u32, bits: u32) {
    if (p.has_lse != 0u) {
        lse_out[p.lse_off + r * p.hq + head] = bits;
    }
}

@compute @workgroup_size(128)
fn paged_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.num_jobs * p.num_kv_heads) {
        return;  // uniform per workgroup
    }
    let seq = flat / p.num_kv_heads;
    let kvh = flat % p.num_kv_heads;
    if (lid == 0u) {
        let p0 = ia[p.sec0 + seq];
        let np = ia[p.sec0 + seq + 1u] - p0;
        let len = ((np - 1) << p.log2_ps) + ia[p.sec2 + seq];
        let r0 = ia[p.sec3 + seq];
        let r1 = ia[p.sec3 + seq + 1u];
        wjob = Job(p.sec1 + u32(p0), 0, len, u32(r0), u32(r1 - r0), len - 1, 0, 0u);
    }
    let j = workgroupUniformLoad(&wjob);
    if (j.nrows == 0u) {
        return;
    }
    attend(j, kvh, lid);
}
