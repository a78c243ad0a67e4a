// rmsnorm.cu — y = x * rsqrt(mean(x^2) + eps) * w, per row (Llama/Qwen RMSNorm, HF numerics:
// statistics in f32, then the weight).
// Layout: x, y [rows, dim] row-major; w [dim]; rstd [rows] (written when non-null, for backward).
// Launch: one block per row, blockDim a multiple of 32 (256).
extern "C" __global__ void rmsnorm_f32(const float* __restrict__ x, const float* __restrict__ w,
                                       float* __restrict__ y, float* __restrict__ rstd,
                                       u32 rows, u32 dim, float eps) {
    __shared__ float scratch[32];
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (i64)row * dim;
    float* yr = y + (i64)row * dim;
    float ss = 0.0f;
    for (u32 i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, scratch);
    const float r = rsqrtf(ss / (float)dim + eps);
    for (u32 i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * r * w[i];
    if (rstd != nullptr && threadIdx.x == 0) rstd[row] = r;
}
