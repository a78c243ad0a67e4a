// residual_add.cu — y[i] += x[i] for i < n (the transformer's residual connection).
// Layout: flat arrays of n elements. Launch: 1-D grid, 256 threads, grid-stride loop.
extern "C" __global__ void residual_add_f32(float* __restrict__ y, const float* __restrict__ x, u32 n) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        y[i] += x[i];
    }
}
