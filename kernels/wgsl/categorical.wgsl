// categorical.wgsl — one categorical draw per row by inverse CDF (see categorical.cu): with
// T = sum p (tree sum) and goal = u*T (u = 0 when has_uniforms == 0: greedy),
//   tokens[r] = the smallest i with p[i] > 0 and C_i > goal (C: this kernel's f32 prefix sums),
//             = the last i with p[i] > 0 if rounding leaves none, = -1 if T is not > 0 and finite.
// Bindings: 0 params, 1 probs [rows, cols], 2 uniforms [rows] (a dummy when has_uniforms == 0),
// 3 tokens [rows] i32. Dispatch: one workgroup of 256 per row, rows folded into (x, y); tiles of
// 1024 elements (4 consecutive per invocation), a workgroup scan of the invocation sums, a min
// of the candidates; stops at the first tile with a candidate.

struct Params { rows: u32, cols: u32, p_off: u32, u_off: u32, t_off: u32, has_uniforms: u32,
                _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> uniforms: array<f32>;
@group(0) @binding(3) var<storage, read_write> tokens: array<i32>;

const NONE: u32 = 0xffffffffu;

var<workgroup> sc: array<f32, 256>;
var<workgroup> mn: array<u32, 256>;
var<workgroup> flag: u32;
var<workgroup> total_shared: f32;

fn block_min(v: u32, lid: u32) -> u32 {
    mn[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { mn[lid] = min(mn[lid], mn[lid + s]); }
        workgroupBarrier();
    }
    if (lid == 0u) { flag = mn[0]; }
    return workgroupUniformLoad(&flag);
}

@compute @workgroup_size(256)
fn categorical_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = p.p_off + row * p.cols;
    var s = 0.0;
    for (var i = lid; i < p.cols; i = i + 256u) { s = s + probs[base + i]; }
    sc[lid] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k = k >> 1u) {
        if (lid < k) { sc[lid] = sc[lid] + sc[lid + k]; }
        workgroupBarrier();
    }
    if (lid == 0u) { total_shared = sc[0]; }
    let total = workgroupUniformLoad(&total_shared);
    // Not > 0, or not finite (exponent bits all ones): no distribution.
    if (!(total > 0.0) || (bitcast<u32>(total) & 0x7f800000u) == 0x7f800000u) {
        if (lid == 0u) { tokens[p.t_off + row] = -1; }
        return;
    }
    var u = 0.0;
    if (p.has_uniforms != 0u) { u = uniforms[p.u_off + row]; }
    let goal = u * total;
    var carry = 0.0;
    var last_pos = 0u;  // 1 + the largest index with p > 0 seen here (0: none)
    for (var tile = 0u; tile < p.cols; tile = tile + 1024u) {
        let i0 = tile + lid * 4u;
        var v = vec4<f32>(0.0);
        for (var q = 0u; q < 4u; q = q + 1u) {
            if (i0 + q < p.cols) {
                v[q] = probs[base + i0 + q];
                if (v[q] > 0.0) { last_pos = i0 + q + 1u; }
            }
        }
        let tsum = ((v.x + v.y) + v.z) + v.w;
        workgroupBarrier();  // the previous tile's readers of sc are done
        sc[lid] = tsum;
        workgroupBarrier();
        for (var off = 1u; off < 256u; off = off << 1u) {
            var add = 0.0;
            if (lid >= off) { add = sc[lid - off]; }
            workgroupBarrier();
            sc[lid] = sc[lid] + add;
            workgroupBarrier();
        }
        var excl = 0.0;
        if (lid > 0u) { excl = sc[lid - 1u]; }
        var c = carry + excl;
        var cand = NONE;
        for (var q = 0u; q < 4u; q = q + 1u) {
            c = c + v[q];
            if (cand == NONE && v[q] > 0.0 && c > goal) { cand = i0 + q; }
        }
        carry = carry + sc[255];
        let found = block_min(cand, lid);
        if (found != NONE) {
            if (lid == 0u) { tokens[p.t_off + row] = i32(found); }
            return;
        }
    }
    // Rounding ran past the end: the last index with p > 0 (max via min of the complement).
    let lp = NONE - block_min(NONE - last_pos, lid);
    if (lid == 0u) { tokens[p.t_off + row] = i32(lp) - 1; }
}
