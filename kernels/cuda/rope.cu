// rope.cu — rotary position embedding in place, HF half-split pairing (`rotate_half`): element j
// of a head pairs with j + D/2 (not interleaved). For token t, pair j (0 <= j < D/2):
//   angle = fl(float(pos[t]) * inv_freq[j])      (f32, as HF's inv_freq @ position_ids)
//   c, s  = cos(angle), sin(angle)                 (sincosf: full-range accurate, no fast math)
//   forward:  x1' = x1*c - x2*s,  x2' = x2*c + x1*s
//   inverse:  the same with s -> -s (rotation by -angle: the backward pass)
// Layout: x is [tokens, num_heads, head_dim] with element (t, h, j) at t*token_stride +
// h*head_stride + j (a strided view of a fused QKV buffer is fine; the host checked that heads do
// not overlap); pos [tokens] i32 in [0, 2^20); inv_freq [head_dim/2].
// Launch: 1-D grid over tokens * (head_dim/2) pairs, 256 threads, grid-stride loop; each thread
// computes its angle once and rotates that pair in every head.
extern "C" __global__ void rope_f32(float* __restrict__ x, const int* __restrict__ pos,
                                    const float* __restrict__ inv_freq, u32 tokens, u32 num_heads,
                                    u32 half, u32 token_stride, u32 head_stride, u32 inverse) {
    const unsigned long long total = (unsigned long long)tokens * half;
    const unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += step) {
        const u32 t = (u32)(i / half), j = (u32)(i % half);
        const float angle = (float)pos[t] * inv_freq[j];
        float s, c;
        sincosf(angle, &s, &c);
        if (inverse) s = -s;
        float* xt = x + (i64)t * token_stride + j;
        for (u32 h = 0; h < num_heads; ++h) {
            float* p = xt + (i64)h * head_stride;
            const float a = p[0], b = p[half];
            p[0] = a * c - b * s;
            p[half] = b * c + a * s;
        }
    }
}
