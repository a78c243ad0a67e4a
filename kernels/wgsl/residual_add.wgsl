// residual_add.wgsl — y[i] += x[i] for i < n (the transformer's residual connection).
// Bindings: 0 params, 1 y (read_write), 2 x. Offsets in elements.
// Dispatch: ceil(n / 256) workgroups folded into (x, y); linear id = gid.x + gid.y * nwg.x * 256.

struct Params { n: u32, y_off: u32, x_off: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(256)
fn residual_add_f32(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < p.n) {
        y[p.y_off + i] = y[p.y_off + i] + x[p.x_off + i];
    }
}
