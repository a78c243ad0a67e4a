// fill.cu — x[i] = value for i < n (zeroing gradients without a host upload).
// Layout: a flat array of n elements. Launch: 1-D grid of 256-thread blocks, grid-stride loop.
extern "C" __global__ void fill_f32(float* __restrict__ x, u32 n, float value) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = value;
}
