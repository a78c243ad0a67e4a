// categorical.cu — one categorical draw per row by inverse CDF, the uniform given as input.
// For row r with weights p (>= 0, not necessarily normalized), total T = sum p (block sum) and
// target = u * T (u = uniforms[r], or 0 when uniforms is null: the greedy path):
//   tokens[r] = the smallest i with p[i] > 0 and C_i > target, where C_i is this kernel's f32
//               inclusive prefix sum (carry of earlier tiles + block scan + in-thread sum);
//             = the last i with p[i] > 0 if rounding leaves no such i;
//             = -1 if T is not > 0 and finite (no positive weight, or NaN from an all -inf row).
// An index with p = 0 is never returned.
// Layout: probs [rows, cols]; uniforms [rows] in [0, 1) (or null); tokens [rows] i32.
// Launch: one block per row, 1024 threads. Tiles of blockDim*4 consecutive elements (4 per
// thread); a warp-shuffle scan of the thread sums, a scan of the warp sums, and a block min of
// the candidate indices; stops at the first tile holding a candidate. Fixed order: deterministic.

__device__ __forceinline__ u32 block_min_u32(u32 v, u32* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0xffffffffu;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

extern "C" __global__ void categorical_f32(const float* __restrict__ probs,
                                           const float* __restrict__ uniforms,
                                           int* __restrict__ tokens, u32 rows, u32 cols) {
    __shared__ float scratch[32];
    __shared__ float wexcl[32];  // exclusive scan of the warp sums of the current tile
    __shared__ float tile_sum;
    __shared__ u32 uscratch[32];
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    const float* pr = probs + (i64)row * cols;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;

    float s = 0.0f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) s += pr[i];
    const float total = block_sum(s, scratch);
    if (!(total > 0.0f) || !isfinite(total)) {
        if (threadIdx.x == 0) tokens[row] = -1;
        return;
    }
    const float target = (uniforms != nullptr ? uniforms[row] : 0.0f) * total;

    const u32 NONE = 0xffffffffu;
    float carry = 0.0f;
    u32 last_pos = NONE;  // the largest index with p > 0 this thread has seen (fallback)
    const u32 tile = blockDim.x * 4;
    for (u32 base = 0; base < cols; base += tile) {
        const u32 i0 = base + threadIdx.x * 4;
        float v[4];
        float tsum = 0.0f;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            v[q] = i0 + q < cols ? pr[i0 + q] : 0.0f;
            tsum += v[q];
            if (v[q] > 0.0f) last_pos = i0 + q;
        }
        // Inclusive scan of tsum within the warp, then exclusive for this lane.
        float incl = tsum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const float n = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += n;
        }
        float lane_excl = __shfl_up_sync(0xffffffffu, incl, 1);
        if (lane == 0) lane_excl = 0.0f;
        if (lane == 31) wexcl[warp] = incl;
        __syncthreads();
        if (warp == 0) {
            const float w = lane < nwarps ? wexcl[lane] : 0.0f;
            float wi = w;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const float n = __shfl_up_sync(0xffffffffu, wi, o);
                if (lane >= o) wi += n;
            }
            float we = __shfl_up_sync(0xffffffffu, wi, 1);
            if (lane == 0) we = 0.0f;
            if (lane < nwarps) wexcl[lane] = we;
            if (lane == 31) tile_sum = wi;
        }
        __syncthreads();
        float c = carry + (wexcl[warp] + lane_excl);
        u32 cand = NONE;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            c += v[q];
            if (cand == NONE && v[q] > 0.0f && c > target) cand = i0 + q;
        }
        carry += tile_sum;
        const u32 found = block_min_u32(cand, uscratch);
        if (found != NONE) {  // block-uniform
            if (threadIdx.x == 0) tokens[row] = (int)found;
            return;
        }
    }
    // Rounding ran past the end: the last index with p > 0 (exists, since total > 0).
    u32 lp = last_pos == NONE ? 0u : last_pos + 1u;  // max via min of the complement
    lp = 0xffffffffu - lp;
    lp = block_min_u32(lp, uscratch);
    lp = 0xffffffffu - lp;
    if (threadIdx.x == 0) tokens[row] = lp == 0u ? -1 : (int)(lp - 1u);
}
