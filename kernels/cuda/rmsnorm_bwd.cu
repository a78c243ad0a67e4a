// rmsnorm_bwd.cu — RMSNorm backward (forward y = x·r·w, r = rstd[row] = 1/sqrt(mean(x²)+eps)),
// ACCUMULATING into dx and dw:
//   dx += r·(g − x·r²·mean(g⊙x))   with g = w⊙dy          dw += Σ_rows dy⊙x·r
// Deterministic, no atomics, in two passes:
//   1. `rmsnorm_bwd_f32`: block c owns rows [c·rpb, min((c+1)·rpb, rows)) (rpb = rows per block,
//      chosen on the host from `rows` alone); per row a block reduction gives mean(g⊙x), then
//      each thread updates dx for its columns and accumulates dy⊙x·r into partial[c, :] (each
//      element owned by one thread: written on the first row, added on the others).
//   2. `rmsnorm_bwd_dw_f32`: dw[j] += Σ_c partial[c, j] in a fixed order; blocks of 32×8 threads,
//      thread (tx, ty) sums chunks ty, ty+8, ... of column blockIdx.x·32 + tx, then ty = 0 adds
//      the 8 sums in order.
// Layout: dy, x, dx [rows, dim]; w, dw [dim]; rstd [rows]; partial [chunks, dim] scratch.
// Launch: pass 1 grid (chunks), block 256; pass 2 grid (ceil(dim/32)), block (32, 8).
extern "C" __global__ void rmsnorm_bwd_f32(const float* __restrict__ dy,
                                           const float* __restrict__ x,
                                           const float* __restrict__ w,
                                           const float* __restrict__ rstd,
                                           float* __restrict__ dx, float* __restrict__ partial,
                                           u32 rows, u32 dim, u32 rows_per_block) {
    __shared__ float scratch[32];
    const u32 chunk = blockIdx.x;
    const u32 r0 = chunk * rows_per_block;
    const u32 r1 = (u32)min((i64)r0 + rows_per_block, (i64)rows);
    float* pr = partial + (i64)chunk * dim;
    for (u32 row = r0; row < r1; ++row) {
        const float* dyr = dy + (i64)row * dim;
        const float* xr = x + (i64)row * dim;
        float* dxr = dx + (i64)row * dim;
        const float r = rstd[row];
        float s = 0.0f;
        for (u32 i = threadIdx.x; i < dim; i += blockDim.x) s += w[i] * dyr[i] * xr[i];
        s = block_sum(s, scratch);
        const float c = r * r * r * (s / (float)dim);
        for (u32 i = threadIdx.x; i < dim; i += blockDim.x) {
            const float d = dyr[i], xv = xr[i];
            dxr[i] += r * (w[i] * d) - xv * c;
            const float contrib = d * xv * r;
            pr[i] = row == r0 ? contrib : pr[i] + contrib;
        }
    }
}

extern "C" __global__ void rmsnorm_bwd_dw_f32(const float* __restrict__ partial,
                                              float* __restrict__ dw, u32 chunks, u32 dim) {
    __shared__ float sums[8][33];
    const u32 col = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (col < dim) {
        for (u32 c = threadIdx.y; c < chunks; c += 8) acc += partial[(i64)c * dim + col];
    }
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < dim) {
        float total = sums[0][threadIdx.x];
#pragma unroll
        for (int k = 1; k < 8; ++k) total += sums[k][threadIdx.x];
        dw[col] += total;
    }
}
