// fill.wgsl — x[i] = value for i < n.
// Bindings: 0 params, 1 x (read_write). Offsets in elements.
// Dispatch: ceil(n / 256) workgroups folded into (x, y); linear id = gid.x + gid.y * nwg.x * 256.

struct Params { n: u32, x_off: u32, value: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn fill_f32(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < p.n) {
        x[p.x_off + i] = p.value;
    }
}
