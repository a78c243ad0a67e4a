// swiglu.wgsl — out[i] = silu(gate[i]) * up[i], silu(a) = a / (1 + exp(-a)) (PyTorch's formula).
// The exp argument is clamped at 88 so no infinity is formed (WGSL implementations may assume
// finite math); below a = -88 the result differs from the exact one by < 1e-36 * |a * up|.
// Bindings: 0 params, 1 gate, 2 up, 3 out (does not alias the inputs). Offsets in elements.
// Dispatch: ceil(n / 256) workgroups folded into (x, y); linear id = gid.x + gid.y * nwg.x * 256.

struct Params { n: u32, gate_off: u32, up_off: u32, out_off: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn swiglu_f32(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < p.n) {
        let a = gate[p.gate_off + i];
        out[p.out_off + i] = (a / (1.0 + exp(min(-a, 88.0)))) * up[p.up_off + i];
    }
}
