// logit_mask.cu — top-k / top-p filtering of logits in place (dropped entries become -inf).
// Both find a threshold key t = the largest ordered_key value with W(t) >= target, where
//   W(t) = sum over entries with key >= t of w_i,
//   top-k: w_i = 1,                                  target = k
//   top-p: w_i = exp(fl(scale*x_i) - fl(scale*max x)), target = top_p * W(0)   (t <= key(max x))
// then set x_i = -inf where key(x_i) < t. Ties with t are kept. t is built 4 bits per pass from
// the most significant end: each pass every thread accumulates the 16 suffix sums
// W(t + c << shift), c = 0..15, of its entries, the block reduces them in a fixed order
// (deterministic), and every thread picks the same largest c that reaches the target. 8 passes
// (plus a max pass for top-p, plus the masking pass); no sort, no atomics.
// Layout: x [rows, cols] row-major. Launch: one block per row, 1024 threads (a multiple of 32,
// at least 512 so the 16 reducing warps exist). Host guarantees cols <= 2^24 (exact f32 counts).

// Sums each of the 16 accumulators over the block into tot[16] (shared, valid on return).
__device__ __forceinline__ void block_sum16(float (&acc)[16], float (*red)[32], float* tot) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int c = 0; c < 16; ++c) acc[c] = warp_sum(acc[c]);
    __syncthreads();  // the previous pass has finished reading tot
    if (lane == 0) {
#pragma unroll
        for (int c = 0; c < 16; ++c) red[c][warp] = acc[c];
    }
    __syncthreads();
    if (warp < 16) {
        const float v = warp_sum(lane < nwarps ? red[warp][lane] : 0.0f);
        if (lane == 0) tot[warp] = v;
    }
    __syncthreads();
}

template <bool MASS>
__device__ __forceinline__ void mask_row(float* __restrict__ xr, u32 cols, float target,
                                         float scale, float top_p) {
    __shared__ float red[16][32];
    __shared__ float tot[16];
    __shared__ float scratch[32];
    float zmax = 0.0f;
    u32 kmax = 0xffffffffu;
    if (MASS) {
        float m = NEG_INF;
        for (u32 i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, xr[i]);
        m = block_max(m, scratch);
        if (m == NEG_INF) return;  // block-uniform: a fully masked row stays as it is
        zmax = __fmul_rn(scale, m);
        kmax = ordered_key(m);
    }
    u32 t = 0;
    for (int shift = 28; shift >= 0; shift -= 4) {
        float acc[16];
#pragma unroll
        for (int c = 0; c < 16; ++c) acc[c] = 0.0f;
        for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
            const float v = xr[i];
            const u32 key = ordered_key(v);
            if (key < t) continue;
            const u32 d = min((key - t) >> shift, 15u);  // keys above the window count for all c
            float w = 1.0f;
            if (MASS) w = v == NEG_INF ? 0.0f : expf(__fmul_rn(scale, v) - zmax);
#pragma unroll
            for (int c = 0; c < 16; ++c)
                if (d >= (u32)c) acc[c] += w;
        }
        block_sum16(acc, red, tot);
        if (MASS && shift == 28) target = top_p * tot[0];  // tot[0] = W(0): the row's total mass
        u32 best = 0;
        for (int c = 15; c >= 1; --c) {
            if (tot[c] >= target) { best = (u32)c; break; }
        }
        t += best << shift;
    }
    if (MASS) t = min(t, kmax);  // always keep the top entry
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        if (ordered_key(xr[i]) < t) xr[i] = NEG_INF;
    }
}

// k in [1, cols): 0 and >= cols are no-ops the host does not launch.
extern "C" __global__ void top_k_mask_f32(float* __restrict__ x, u32 rows, u32 cols, u32 k) {
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    mask_row<false>(x + (i64)row * cols, cols, (float)k, 1.0f, 0.0f);
}

// top_p in [0, 1): >= 1 is a no-op the host does not launch. scale > 0 is 1/temperature.
extern "C" __global__ void top_p_mask_f32(float* __restrict__ x, u32 rows, u32 cols, float scale,
                                          float top_p) {
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    mask_row<true>(x + (i64)row * cols, cols, 0.0f, scale, top_p);
}
