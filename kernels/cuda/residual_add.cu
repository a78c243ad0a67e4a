// residual_add.cu — y[i] += x[i] for i < n (the transformer's residual connection).
// Layout: flat arrays of n elements. Launch: 1-D grid, 256 threads, grid-stride loop with a 64-bit
// index (a 32-bit one wraps when i + stride passes 2^32, for n near the u32 limit).
extern "C" __global__ void residual_add_f32(float* __restrict__ y, const float* __restrict__ x,
                                            u32 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] += x[i];
}
