// swiglu_bwd.wgsl — backward of out = silu(a) ⊙ b (a = gate, b = up), overwriting:
//   dgate = dout ⊙ b ⊙ σ(a)(1 + a(1 − σ(a)))      dup = dout ⊙ a·σ(a)
// σ uses exp of a non-positive argument only (no overflow for any finite a).
// Bindings: 0 params, 1 dout, 2 gate, 3 up, 4 dgate, 5 dup (flat, n elements each).
// Dispatch: ceil(n / 256) workgroups folded into (x, y); linear id = gid.x + gid.y * nwg.x * 256.

struct Params { n: u32, dout_off: u32, gate_off: u32, up_off: u32, dgate_off: u32, dup_off: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> gate: array<f32>;
@group(0) @binding(3) var<storage, read> up: array<f32>;
@group(0) @binding(4) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(5) var<storage, read_write> dup: array<f32>;

fn stable_sigmoid(a: f32) -> f32 {
    let e = exp(-abs(a));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), a >= 0.0);
}

@compute @workgroup_size(256)
fn swiglu_bwd_f32(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let a = gate[p.gate_off + i];
    let b = up[p.up_off + i];
    let d = dout[p.dout_off + i];
    let s = stable_sigmoid(a);
    let silu = a * s;
    dgate[p.dgate_off + i] = d * b * (s + silu * (1.0 - s));
    dup[p.dup_off + i] = d * silu;
}
