// adamw.wgsl — one AdamW step with decoupled weight decay, in place (see adamw.cu):
//   m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; θ −= lr·(m·inv_bc1/(√(v·inv_bc2) + ε) + wd·θ·[decay == 1])
// Bindings: 0 params, 1 theta (the parameters), 2 grads, 3 m, 4 v, 5 decay (flat, n elements each).
// Dispatch: ceil(n / 256) workgroups folded into (x, y); linear id = gid.x + gid.y * nwg.x * 256.

struct Params { n: u32, p_off: u32, g_off: u32, m_off: u32, v_off: u32, d_off: u32,
                lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, inv_bc1: f32, inv_bc2: f32,
                _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> decay: array<f32>;

@compute @workgroup_size(256)
fn adamw_f32(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let g = grads[p.g_off + i];
    let mi = p.beta1 * m[p.m_off + i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[p.v_off + i] + (1.0 - p.beta2) * (g * g);
    m[p.m_off + i] = mi;
    v[p.v_off + i] = vi;
    let t = theta[p.p_off + i];
    var upd = (mi * p.inv_bc1) / (sqrt(vi * p.inv_bc2) + p.eps);
    if (decay[p.d_off + i] == 1.0) { upd = upd + p.wd * t; }
    theta[p.p_off + i] = t - p.lr * upd;
}
