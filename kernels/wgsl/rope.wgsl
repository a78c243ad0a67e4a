// rope.wgsl — rotary position embedding in place, HF half-split pairing (`rotate_half`): element
// j of a head pairs with j + D/2. For token t, pair j: angle = f32(pos[t]) * inv_freq[j] (f32);
//   forward: x1' = x1*c - x2*s, x2' = x2*c + x1*s;  inverse: s -> -s (rotation by -angle).
// sin/cos are computed here, not with the built-ins: WGSL/Vulkan only bound their error inside
// [-pi, pi]. Cody-Waite reduction by pi/2 with five short parts (k * part is exact in f32 for
// |k| < 2^20, i.e. |angle| < ~1.6e6) plus a full f32 tail, then Cephes' minimax polynomials on
// [-pi/4, pi/4]: about 1 ulp, like a libm.
// Bindings: 0 params, 1 x (read_write), 2 pos [tokens] (i32 in [0, 2^20)), 3 inv_freq [D/2].
// Element (t, h, j) of x is at x_off + t*token_stride + h*head_stride + j.
// Dispatch: ceil(tokens*half / 256) workgroups folded into (x, y); one invocation per (t, j),
// rotating that pair in every head.

struct Params { tokens: u32, num_heads: u32, half: u32, token_stride: u32,
                head_stride: u32, inverse: u32, x_off: u32, pos_off: u32,
                freq_off: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<i32>;
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;

// pi/2 = PIO2_1 + ... + PIO2_6 (error 1.7e-15); PIO2_1..5 have <= 4 significant bits.
const PIO2_1: f32 = 1.5;
const PIO2_2: f32 = 0.0703125;
const PIO2_3: f32 = 0.000457763671875;
const PIO2_4: f32 = 2.47955322265625e-05;
const PIO2_5: f32 = 1.1920928955078125e-06;
const PIO2_6: f32 = 7.549790126404332e-08;
const TWO_OVER_PI: f32 = 0.6366197466850281;

// (sin a, cos a) in f32.
fn sin_cos(a: f32) -> vec2<f32> {
    let k = round(a * TWO_OVER_PI);
    var r = a - k * PIO2_1;
    r = r - k * PIO2_2;
    r = r - k * PIO2_3;
    r = r - k * PIO2_4;
    r = r - k * PIO2_5;
    r = r - k * PIO2_6;
    let z = r * r;
    let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    let c = 1.0 - 0.5 * z
        + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    switch (i32(k) & 3) {
        case 0: { return vec2<f32>(s, c); }
        case 1: { return vec2<f32>(c, -s); }
        case 2: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

@compute @workgroup_size(256)
fn rope_f32(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.tokens * p.half) { return; }
    let t = i / p.half;
    let j = i % p.half;
    let angle = f32(pos[p.pos_off + t]) * inv_freq[p.freq_off + j];
    let sc = sin_cos(angle);
    var s = sc.x;
    let c = sc.y;
    if (p.inverse != 0u) { s = -s; }
    let base = p.x_off + t * p.token_stride + j;
    for (var h = 0u; h < p.num_heads; h = h + 1u) {
        let k1 = base + h * p.head_stride;
        let a = x[k1];
        let b = x[k1 + p.half];
        x[k1] = a * c - b * s;
        x[k1 + p.half] = b * c + a * s;
    }
}
