// sum_squares.cu — Σ x[i]² over n elements, in f64, deterministic (no atomics): pass 1 has a
// fixed number of blocks (chosen on the host from n alone, never from the device) each write
// the f64 sum of its grid-stride elements to partial[block]; pass 2 (one block) sums the
// partials in a fixed order into out[0]. NaN and Inf propagate (the trainer's overflow check).
// Layout: x [n] f32; partial [gridDim.x of pass 1] f64; out [1] f64.
// Launch: pass 1 `sum_squares_partial_f32` with blockDim 256; pass 2 `sum_squares_final_f32`
// with one block of 256.

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over a block of 256 threads, in a fixed order; thread 0 gets the result.
__device__ __forceinline__ double block_sum_f64(double v, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum_f64(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0;
    return warp_sum_f64(v);
}

extern "C" __global__ void sum_squares_partial_f32(const float* __restrict__ x, u32 n,
                                                   double* __restrict__ partial) {
    __shared__ double scratch[32];
    const i64 stride = (i64)gridDim.x * blockDim.x;
    double acc = 0.0;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double v = (double)x[i];
        acc += v * v;
    }
    acc = block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

extern "C" __global__ void sum_squares_final_f32(const double* __restrict__ partial, u32 count,
                                                 double* __restrict__ out) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (u32 i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) out[0] = acc;
}
