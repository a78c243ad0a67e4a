// logit_mask.wgsl — top-k / top-p filtering of logits in place (dropped entries become -inf), the
// same threshold search as logit_mask.cu: t = the largest ordered key with W(t) >= goal,
//   top-k: W counts entries with key >= t, goal = k;
//   top-p: W sums exp(scale*x - scale*max x), goal = top_p * W(0), and t <= key(max x);
// then x_i = -inf where key(x_i) < t (ties with t kept). t is built 4 bits per pass from the top:
// each invocation accumulates the 16 suffix sums W(t + c << shift) as four vec4s, the workgroup
// reduces them (fixed order), every invocation picks the same c. Infinities are handled by their
// bits, never in arithmetic (WGSL implementations may assume finite math).
// Bindings: 0 params, 1 x [rows, cols] (read_write). Dispatch: one workgroup of 256 per row,
// rows folded into (x, y). Host guarantees cols <= 2^24.

struct Params { rows: u32, cols: u32, x_off: u32, k: u32, scale: f32, top_p: f32,
                _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

const NEG_INF_BITS: u32 = 0xff800000u;
const NEG_INF_KEY: u32 = 0x007fffffu;  // ordered_key(-inf)

var<workgroup> red0: array<vec4<f32>, 256>;
var<workgroup> red1: array<vec4<f32>, 256>;
var<workgroup> kred: array<u32, 256>;
var<workgroup> kmax_shared: u32;

fn ordered_key(v: f32) -> u32 {
    var b = bitcast<u32>(v);
    if (b == 0x80000000u) { b = 0u; }
    if ((b & 0x80000000u) != 0u) { return ~b; }
    return b | 0x80000000u;
}

fn key_value(k: u32) -> f32 {
    if ((k & 0x80000000u) != 0u) { return bitcast<f32>(k & 0x7fffffffu); }
    return bitcast<f32>(~k);
}

// Sums red0/red1 over the workgroup into element 0 (fixed tree order).
fn reduce_pair(lid: u32) {
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red0[lid] = red0[lid] + red0[lid + s];
            red1[lid] = red1[lid] + red1[lid + s];
        }
        workgroupBarrier();
    }
}

fn mask_row(row: u32, lid: u32, mass: bool) {
    let base = p.x_off + row * p.cols;
    // The row's max as an ordered key (no float infinities involved).
    var km = 0u;
    for (var i = lid; i < p.cols; i = i + 256u) { km = max(km, ordered_key(x[base + i])); }
    kred[lid] = km;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { kred[lid] = max(kred[lid], kred[lid + s]); }
        workgroupBarrier();
    }
    if (lid == 0u) { kmax_shared = kred[0]; }
    let kmax = workgroupUniformLoad(&kmax_shared);
    if (kmax <= NEG_INF_KEY) { return; }  // every entry is -inf: nothing to keep or drop
    let zmax = p.scale * key_value(kmax);
    var goal = f32(p.k);
    var t = 0u;
    let c_lo = vec4<u32>(0u, 1u, 2u, 3u);
    for (var step = 0u; step < 8u; step = step + 1u) {
        let shift = 28u - 4u * step;
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        for (var i = lid; i < p.cols; i = i + 256u) {
            let v = x[base + i];
            let key = ordered_key(v);
            if (key >= t) {
                let d = vec4<u32>(min((key - t) >> shift, 15u));
                var w = 1.0;
                if (mass) {
                    w = 0.0;
                    if (bitcast<u32>(v) != NEG_INF_BITS) { w = exp(p.scale * v - zmax); }
                }
                let wv = vec4<f32>(w);
                let zero = vec4<f32>(0.0);
                a0 = a0 + select(zero, wv, d >= c_lo);
                a1 = a1 + select(zero, wv, d >= c_lo + vec4<u32>(4u));
                a2 = a2 + select(zero, wv, d >= c_lo + vec4<u32>(8u));
                a3 = a3 + select(zero, wv, d >= c_lo + vec4<u32>(12u));
            }
        }
        red0[lid] = a0;
        red1[lid] = a1;
        reduce_pair(lid);
        let s0 = red0[0];
        let s1 = red1[0];
        workgroupBarrier();
        red0[lid] = a2;
        red1[lid] = a3;
        reduce_pair(lid);
        let s2 = red0[0];
        let s3 = red1[0];
        workgroupBarrier();
        var tot = array<f32, 16>(s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w,
                                 s2.x, s2.y, s2.z, s2.w, s3.x, s3.y, s3.z, s3.w);
        if (mass && step == 0u) { goal = p.top_p * s0.x; }  // W(0): the row's total mass
        var best = 0u;
        for (var c = 15u; c >= 1u; c = c - 1u) {
            if (tot[c] >= goal) { best = c; break; }
        }
        t = t + (best << shift);
    }
    if (mass) { t = min(t, kmax); }  // always keep the top entry
    for (var i = lid; i < p.cols; i = i + 256u) {
        if (ordered_key(x[base + i]) < t) { x[base + i] = bitcast<f32>(NEG_INF_BITS); }
    }
}

@compute @workgroup_size(256)
fn top_k_mask_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    mask_row(row, lid, false);
}

@compute @workgroup_size(256)
fn top_p_mask_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    mask_row(row, lid, true);
}
