// softmax_row.wgsl — the online (max, sum) pass over one row shared by softmax.wgsl and
// gather_logprob.wgsl (prepended to both by webgpu::sources). The module declares `p` (a Params
// with `cols: u32` and `scale: f32`) and `x: array<f32>`; this file declares no binding.
// Infinities are detected by their bits and never enter arithmetic: WGSL implementations may
// assume finite math.

const NEG_INF_BITS: u32 = 0xff800000u;
const NAN_BITS: u32 = 0x7fc00000u;

var<workgroup> wm: array<f32, 256>;
var<workgroup> ws: array<f32, 256>;

// Online (max, sum) state; s == 0 means empty (then m is meaningless), otherwise s >= 1.
struct MaxSum { m: f32, s: f32 }

fn ms_merge(a: MaxSum, b: MaxSum) -> MaxSum {
    if (a.s == 0.0) { return b; }
    if (b.s == 0.0) { return a; }
    let m = max(a.m, b.m);
    return MaxSum(m, a.s * exp(a.m - m) + b.s * exp(b.m - m));
}

// (max, sum) of the row's finite scaled logits, for the whole workgroup (workgroup of 256; call
// in uniform control flow). The result is read from workgroup memory after the last barrier:
// every invocation gets the same value, but the uniformity analysis does not know it.
fn row_max_sum(base: u32, lid: u32) -> MaxSum {
    var st = MaxSum(0.0, 0.0);
    for (var i = lid; i < p.cols; i = i + 256u) {
        let v = x[base + i];
        if (bitcast<u32>(v) != NEG_INF_BITS) {
            let z = p.scale * v;
            if (st.s == 0.0) {
                st = MaxSum(z, 1.0);
            } else if (z > st.m) {
                st = MaxSum(z, st.s * exp(st.m - z) + 1.0);
            } else {
                st.s = st.s + exp(z - st.m);
            }
        }
    }
    wm[lid] = st.m;
    ws[lid] = st.s;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let r = ms_merge(MaxSum(wm[lid], ws[lid]), MaxSum(wm[lid + s], ws[lid + s]));
            wm[lid] = r.m;
            ws[lid] = r.s;
        }
        workgroupBarrier();
    }
    return MaxSum(wm[0], ws[0]);
}
