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
// (max, sum) pass over the row (MaxSum, common.cuh), one write pass; the reductions are in a fixed
// order (deterministic).

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
