// softmax.cu — row softmax / log-softmax over the last dimension with a logit scale (1/temperature):
//   z_i = fl(scale * x_i)  (rounded to f32 first, as PyTorch's logits / T; __fmul_rn keeps NVCC from
//                           contracting it into the subtraction below)
//   m = max_i z_i,  S = sum_i exp(z_i - m)
//   softmax:     y_i = exp(z_i - m) / S
//   log_softmax: y_i = (z_i - m) - log(S)
// Masked entries (x = -inf) contribute exp(-inf) = 0 and give exactly 0 / -inf. A row whose entries
// are all -inf has no distribution: every output is NaN (as PyTorch). +inf/NaN inputs: unspecified.
// Layout: x, y [rows, cols] row-major, y does not alias x.
// Launch: one block per row (grid.x = rows), blockDim a multiple of 32 (1024). One online
// (max, sum) pass over the row, one write pass; the reductions are in a fixed order (deterministic).

struct MaxSum {
    float m;  // running max of z (-inf while empty)
    float s;  // sum of exp(z - m) (0 while empty)
};

__device__ __forceinline__ MaxSum ms_merge(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.m, b.m);
    if (m == NEG_INF) return MaxSum{NEG_INF, 0.0f};
    // An empty side has s = 0 and m = -inf: expf(-inf) = 0, so it contributes 0.
    return MaxSum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ void ms_push(MaxSum& st, float z) {
    if (z > st.m) {
        st.s = st.s * expf(st.m - z) + 1.0f;  // empty: 0 * expf(-inf) = 0
        st.m = z;
    } else {
        st.s += expf(z - st.m);
    }
}

// (max, sum) over the block; every thread gets the result (merge is commutative, so the butterfly
// gives every lane the same bits). `sm`, `ss` hold >= 32 floats.
__device__ __forceinline__ MaxSum block_max_sum(MaxSum v, float* sm, float* ss) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        MaxSum w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
        v = ms_merge(v, w);
    }
    __syncthreads();
    if (lane == 0) { sm[warp] = v.m; ss[warp] = v.s; }
    __syncthreads();
    v = lane < nwarps ? MaxSum{sm[lane], ss[lane]} : MaxSum{NEG_INF, 0.0f};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        MaxSum w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
        v = ms_merge(v, w);
    }
    return v;
}

__device__ __forceinline__ MaxSum row_max_sum(const float* __restrict__ xr, u32 cols, float scale) {
    __shared__ float sm[32], ss[32];
    MaxSum st{NEG_INF, 0.0f};
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        const float v = xr[i];
        if (v != NEG_INF) ms_push(st, __fmul_rn(scale, v));
    }
    return block_max_sum(st, sm, ss);
}

extern "C" __global__ void softmax_f32(const float* __restrict__ x, float* __restrict__ y, u32 rows,
                                       u32 cols, float scale) {
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (i64)row * cols;
    float* yr = y + (i64)row * cols;
    const MaxSum st = row_max_sum(xr, cols, scale);
    if (st.m == NEG_INF) {
        for (u32 i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = __int_as_float(0x7fc00000);
        return;
    }
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        const float v = xr[i];
        yr[i] = v == NEG_INF ? 0.0f : expf(__fmul_rn(scale, v) - st.m) / st.s;
    }
}

extern "C" __global__ void log_softmax_f32(const float* __restrict__ x, float* __restrict__ y,
                                           u32 rows, u32 cols, float scale) {
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (i64)row * cols;
    float* yr = y + (i64)row * cols;
    const MaxSum st = row_max_sum(xr, cols, scale);
    if (st.m == NEG_INF) {
        for (u32 i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = __int_as_float(0x7fc00000);
        return;
    }
    const float log_s = logf(st.s);
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        const float v = xr[i];
        yr[i] = v == NEG_INF ? NEG_INF : (__fmul_rn(scale, v) - st.m) - log_s;
    }
}
