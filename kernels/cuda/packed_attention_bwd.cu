// packed_attention_bwd.cu — tree-masked packed attention, backward (FlashAttention-2's).
// With P_ij = exp(scale * q_i . k_j - lse_i) on visible pairs (j <= i < kv_row_end[j]),
// delta_i = do_i . o_i and dS_ij = P_ij (do_i . v_j - delta_i):
//   dq_i = scale sum_j dS_ij k_j;  dk_j = scale sum_{h in group, i} dS_ij q_i;
//   dv_j = sum_{h in group, i} P_ij do_i.
// Layouts: q, o, do, dq [n, hq, D]; k, v, dk, dv [n, hkv, D]; lse, delta [hq, n] f32;
// kv_row_end [n], block_bounds [ceil(n/16), 2] int32 (validated on the host). D: 64 or 128.
//
// Three kernels, launched in order on one stream, all with 128 threads (4 warps) per block:
//  - packed_attention_bwd_delta_{T}: one warp per (row, head); grid ceil(n*hq/4).
//  - packed_attention_bwd_dq_hd{D}_{T}: one block per (8-row query tile, query head), grid
//    (ceil(n/8), hq); iterates 32-key KV tiles like the forward (empty tiles skipped, full tiles
//    unmasked); lane = key for P and dP (K and V rows padded to D+1 floats), lane = output dims
//    for dq.
//  - packed_attention_bwd_dkdv_hd{D}_{T}: one block per (16-key tile, KV head), grid
//    (ceil(n/16), hkv); iterates the group's query heads and the query rows [c0, max
//    kv_row_end of the tile) — the only rows that can see these keys (the reverse iteration the
//    column mask makes contiguous) — in 16-row tiles, skipping empty ones; each warp owns 4 keys
//    (dk, dv accumulated in registers, lane = output dims), lanes 0-15 / 16-31 score two keys
//    against the 16 rows at a time.
// No atomics: dq and dk/dv are produced by separate passes, so results are deterministic.
// CUDA cores for every dtype (f32 accumulation); 16-bit inputs are widened on load.
// Shared with the forward: packed_attention.cuh (prepended; pa_classify, pa_stage_kv_f32).

template <typename T>
__device__ __forceinline__ void bwd_delta(const T* __restrict__ o, const T* __restrict__ d_o,
                                          float* __restrict__ delta, int n, int hq, int d) {
    const int lane = threadIdx.x & 31;
    const i64 idx = (i64)blockIdx.x * 4 + (threadIdx.x >> 5);
    if (idx >= (i64)n * hq) return;  // warp-uniform
    const int row = (int)(idx / hq), h = (int)(idx % hq);
    const i64 base = idx * d;  // (row * hq + h) * d
    float a = 0.0f;
    for (int c = lane; c < d; c += 32) a += to_f32(o[base + c]) * to_f32(d_o[base + c]);
    a = warp_sum(a);
    if (lane == 0) delta[(i64)h * n + row] = a;
}

template <typename T, int D>
__device__ __forceinline__ void bwd_dq(const T* __restrict__ q, const T* __restrict__ k,
                                       const T* __restrict__ v, const T* __restrict__ d_o,
                                       const float* __restrict__ lse,
                                       const float* __restrict__ delta,
                                       const int* __restrict__ kv_row_end,
                                       const int* __restrict__ bounds, T* __restrict__ dq, int n,
                                       int hq, int hkv, float scale) {
    constexpr int BR = 8, BC = 32, RPW = BR / 4, DPL = D / 32;
    __shared__ float qs[BR][D];
    __shared__ float dos[BR][D];
    __shared__ float ks[BC][D + 1];
    __shared__ float vs[BC][D + 1];
    __shared__ int es[BC];
    const int tile = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, g = h / (hq / hkv);
    const int r0 = tile * BR, r1 = min(r0 + BR, n);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int e = threadIdx.x; e < BR * D; e += blockDim.x) {
        const int r = e / D, c = e % D, row = r0 + r;
        const i64 at = ((i64)row * hq + h) * D + c;
        qs[r][c] = row < n ? to_f32(q[at]) : 0.0f;
        dos[r][c] = row < n ? to_f32(d_o[at]) : 0.0f;
    }
    float ls[RPW], dl[RPW], acc[RPW][DPL];
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
        const int row = r0 + warp * RPW + rr;
        ls[rr] = row < n ? lse[(i64)h * n + row] : 0.0f;
        dl[rr] = row < n ? delta[(i64)h * n + row] : 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[rr][c] = 0.0f;
    }
    const int ntiles = (r1 + BC - 1) / BC;
    for (int t = 0; t < ntiles; ++t) {
        const int c0 = t * BC, c1 = min(c0 + BC, n);
        const int cls = pa_classify(bounds, r0, r1, c0, c1);
        if (cls == 0) continue;  // block-uniform
        __syncthreads();
        pa_stage_kv_f32<T, D, BC, D + 1>(k, v, kv_row_end, n, hkv, g, c0, ks, vs, es);
        __syncthreads();
        const bool full = cls == 2 && c0 + BC <= n;
        const int col = c0 + lane;
#pragma unroll
        for (int rr = 0; rr < RPW; ++rr) {
            const int r = warp * RPW + rr, row = r0 + r;
            const bool vis = full || (col < n && row < n && col <= row && row < es[lane]);
            float ds = 0.0f;
            if (vis) {
                float s = 0.0f, dp = 0.0f;
#pragma unroll 16
                for (int c = 0; c < D; ++c) {
                    s += qs[r][c] * ks[lane][c];
                    dp += dos[r][c] * vs[lane][c];
                }
                ds = expf(s * scale - ls[rr]) * (dp - dl[rr]);
            }
            for (int j = 0; j < BC; ++j) {
                const float dsj = __shfl_sync(PA_FULL, ds, j);
#pragma unroll
                for (int c = 0; c < DPL; ++c) acc[rr][c] += dsj * ks[j][lane + 32 * c];
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
        const int row = r0 + warp * RPW + rr;
        if (row >= n) continue;
#pragma unroll
        for (int c = 0; c < DPL; ++c)
            dq[((i64)row * hq + h) * D + lane + 32 * c] = from_f32<T>(acc[rr][c] * scale);
    }
}

template <typename T, int D>
__device__ __forceinline__ void bwd_dkdv(const T* __restrict__ q, const T* __restrict__ k,
                                         const T* __restrict__ v, const T* __restrict__ d_o,
                                         const float* __restrict__ lse,
                                         const float* __restrict__ delta,
                                         const int* __restrict__ kv_row_end,
                                         const int* __restrict__ bounds, T* __restrict__ dk,
                                         T* __restrict__ dv, int n, int hq, int hkv,
                                         float scale) {
    constexpr int BC = 16, BR = 16, KPW = BC / 4, DPL = D / 32;
    __shared__ float ks[BC][D + 1];
    __shared__ float vs[BC][D + 1];
    __shared__ float qs[BR][D + 1];
    __shared__ float dos[BR][D + 1];
    __shared__ float ls[BR], dl[BR];
    __shared__ int es[BC];
    const int g = blockIdx.y, group = hq / hkv;
    const int c0 = blockIdx.x * BC, c1 = min(c0 + BC, n);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    pa_stage_kv_f32<T, D, BC, D + 1>(k, v, kv_row_end, n, hkv, g, c0, ks, vs, es);
    // c0 is a multiple of 16: this tile is exactly bound block c0 / 16.
    const int hi = bounds[2 * (c0 / PA_BLOCK) + 1];
    float dka[KPW][DPL], dva[KPW][DPL];
#pragma unroll
    for (int kj = 0; kj < KPW; ++kj)
#pragma unroll
        for (int c = 0; c < DPL; ++c) dka[kj][c] = dva[kj][c] = 0.0f;
    const int half_lane = lane & 15;
    for (int hh = 0; hh < group; ++hh) {
        const int h = g * group + hh;
        for (int r0 = c0; r0 < hi; r0 += BR) {
            const int r1 = min(r0 + BR, hi);
            const int cls = pa_classify(bounds, r0, r1, c0, c1);
            if (cls == 0) continue;  // block-uniform
            __syncthreads();         // the previous rows are consumed (and ks/vs/es written)
            for (int e = threadIdx.x; e < BR * D; e += blockDim.x) {
                const int r = e / D, c = e % D, row = r0 + r;
                const i64 at = ((i64)row * hq + h) * D + c;
                qs[r][c] = row < r1 ? to_f32(q[at]) : 0.0f;
                dos[r][c] = row < r1 ? to_f32(d_o[at]) : 0.0f;
            }
            if (threadIdx.x < BR) {
                const int row = r0 + threadIdx.x;
                ls[threadIdx.x] = row < r1 ? lse[(i64)h * n + row] : 0.0f;
                dl[threadIdx.x] = row < r1 ? delta[(i64)h * n + row] : 0.0f;
            }
            __syncthreads();
            const bool full = cls == 2 && c0 + BC <= n && r0 + BR <= r1;
#pragma unroll
            for (int pair = 0; pair < KPW / 2; ++pair) {
                // Lanes 0-15 score key ja, lanes 16-31 key ja + 1, against rows r0 + half_lane.
                const int key = warp * KPW + pair * 2 + (lane >> 4);
                const int col = c0 + key, row = r0 + half_lane;
                const bool vis =
                    full || (col < n && row < r1 && col <= row && row < es[key]);
                float pe = 0.0f, ds = 0.0f;
                if (vis) {
                    float s = 0.0f, dp = 0.0f;
#pragma unroll 16
                    for (int c = 0; c < D; ++c) {
                        s += qs[half_lane][c] * ks[key][c];
                        dp += dos[half_lane][c] * vs[key][c];
                    }
                    pe = expf(s * scale - ls[half_lane]);
                    ds = pe * (dp - dl[half_lane]);
                }
                for (int i = 0; i < BR; ++i) {
                    const float pa = __shfl_sync(PA_FULL, pe, i);
                    const float da = __shfl_sync(PA_FULL, ds, i);
                    const float pb = __shfl_sync(PA_FULL, pe, 16 + i);
                    const float db = __shfl_sync(PA_FULL, ds, 16 + i);
#pragma unroll
                    for (int c = 0; c < DPL; ++c) {
                        const float qx = qs[i][lane + 32 * c], dx = dos[i][lane + 32 * c];
                        dva[pair * 2][c] += pa * dx;
                        dka[pair * 2][c] += da * qx;
                        dva[pair * 2 + 1][c] += pb * dx;
                        dka[pair * 2 + 1][c] += db * qx;
                    }
                }
            }
        }
    }
#pragma unroll
    for (int kj = 0; kj < KPW; ++kj) {
        const int col = c0 + warp * KPW + kj;
        if (col >= n) continue;
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const i64 at = ((i64)col * hkv + g) * D + lane + 32 * c;
            dk[at] = from_f32<T>(dka[kj][c] * scale);
            dv[at] = from_f32<T>(dva[kj][c]);
        }
    }
}

#define PA_DELTA(NAME, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(128)                                      \
        NAME(const T* __restrict__ o, const T* __restrict__ d_o, float* __restrict__ delta, \
             int n, int hq, int d) {                                                        \
        bwd_delta<T>(o, d_o, delta, n, hq, d);                                              \
    }
#define PA_BWD_IN(T)                                                                          \
    const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,                \
        const T *__restrict__ d_o, const float *__restrict__ lse,                             \
        const float *__restrict__ delta, const int *__restrict__ kv_row_end,                  \
        const int *__restrict__ bounds
#define PA_DQ(NAME, T, D)                                                                     \
    extern "C" __global__ void __launch_bounds__(128)                                        \
        NAME(PA_BWD_IN(T), T* __restrict__ dq, int n, int hq, int hkv, float scale) {        \
        bwd_dq<T, D>(q, k, v, d_o, lse, delta, kv_row_end, bounds, dq, n, hq, hkv, scale);   \
    }
#define PA_DKDV(NAME, T, D)                                                                    \
    extern "C" __global__ void __launch_bounds__(128) NAME(                                   \
        PA_BWD_IN(T), T* __restrict__ dk, T* __restrict__ dv, int n, int hq, int hkv,         \
        float scale) {                                                                         \
        bwd_dkdv<T, D>(q, k, v, d_o, lse, delta, kv_row_end, bounds, dk, dv, n, hq, hkv, scale); \
    }

PA_DELTA(packed_attention_bwd_delta_f32, float)
PA_DELTA(packed_attention_bwd_delta_f16, __half)
PA_DELTA(packed_attention_bwd_delta_bf16, __nv_bfloat16)
PA_DQ(packed_attention_bwd_dq_hd64_f32, float, 64)
PA_DQ(packed_attention_bwd_dq_hd128_f32, float, 128)
PA_DQ(packed_attention_bwd_dq_hd64_f16, __half, 64)
PA_DQ(packed_attention_bwd_dq_hd128_f16, __half, 128)
PA_DQ(packed_attention_bwd_dq_hd64_bf16, __nv_bfloat16, 64)
PA_DQ(packed_attention_bwd_dq_hd128_bf16, __nv_bfloat16, 128)
PA_DKDV(packed_attention_bwd_dkdv_hd64_f32, float, 64)
PA_DKDV(packed_attention_bwd_dkdv_hd128_f32, float, 128)
PA_DKDV(packed_attention_bwd_dkdv_hd64_f16, __half, 64)
PA_DKDV(packed_attention_bwd_dkdv_hd128_f16, __half, 128)
PA_DKDV(packed_attention_bwd_dkdv_hd64_bf16, __nv_bfloat16, 64)
PA_DKDV(packed_attention_bwd_dkdv_hd128_bf16, __nv_bfloat16, 128)

// ---------------------------------------------------------------- any head size (CUDA cores)
// The backward of packed_attention_fwd_any (D not 64 or 128, D <= PA_ANY_MAX_D at run time),
// after packed_attention_bwd_delta as above; 128 threads per block, no shared memory:
//  - packed_attention_bwd_dq_any_{T}: one thread per (row, query head), grid (ceil(n/128), hq);
//  - packed_attention_bwd_dkdv_any_{T}: one thread per (key, KV head), grid (ceil(n/128), hkv),
//    summing over the group's query heads and the rows [j, kv_row_end[j]) that see key j.
#define PA_ANY_MAX_D 256
template <typename T>
__device__ __forceinline__ float pa_dot(const T* __restrict__ a, const T* __restrict__ b, int d) {
    float s = 0.0f;
    for (int c = 0; c < d; ++c) s += to_f32(a[c]) * to_f32(b[c]);
    return s;
}

template <typename T>
__device__ __forceinline__ void bwd_dq_any(const T* __restrict__ q, const T* __restrict__ k,
                                           const T* __restrict__ v, const T* __restrict__ d_o,
                                           const float* __restrict__ lse,
                                           const float* __restrict__ delta,
                                           const int* __restrict__ kv_row_end,
                                           T* __restrict__ dq, int n, int hq, int hkv, int d,
                                           float scale) {
    const i64 gi = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (gi >= n) return;
    const int row = (int)gi, h = blockIdx.y, g = h / (hq / hkv);
    const i64 at = ((i64)row * hq + h) * d;
    const float lse_i = lse[(i64)h * n + row], delta_i = delta[(i64)h * n + row];
    float acc[PA_ANY_MAX_D];
    for (int c = 0; c < d; ++c) acc[c] = 0.0f;
    for (int j = 0; j <= row; ++j) {
        if (row >= kv_row_end[j]) continue;
        const T* kr = k + ((i64)j * hkv + g) * d;
        const float p = expf(scale * pa_dot(q + at, kr, d) - lse_i);
        const float ds = p * (pa_dot(d_o + at, v + ((i64)j * hkv + g) * d, d) - delta_i);
        for (int c = 0; c < d; ++c) acc[c] += ds * to_f32(kr[c]);
    }
    for (int c = 0; c < d; ++c) dq[at + c] = from_f32<T>(scale * acc[c]);
}

template <typename T>
__device__ __forceinline__ void bwd_dkdv_any(const T* __restrict__ q, const T* __restrict__ k,
                                             const T* __restrict__ v, const T* __restrict__ d_o,
                                             const float* __restrict__ lse,
                                             const float* __restrict__ delta,
                                             const int* __restrict__ kv_row_end,
                                             T* __restrict__ dk, T* __restrict__ dv, int n,
                                             int hq, int hkv, int d, float scale) {
    const i64 gi = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (gi >= n) return;
    const int j = (int)gi, g = blockIdx.y, group = hq / hkv;
    const i64 kat = ((i64)j * hkv + g) * d;
    float dka[PA_ANY_MAX_D], dva[PA_ANY_MAX_D];
    for (int c = 0; c < d; ++c) dka[c] = dva[c] = 0.0f;
    const int end = kv_row_end[j];
    for (int h = g * group; h < (g + 1) * group; ++h)
        for (int i = j; i < end; ++i) {
            const i64 at = ((i64)i * hq + h) * d;
            const float p = expf(scale * pa_dot(q + at, k + kat, d) - lse[(i64)h * n + i]);
            const float ds = p * (pa_dot(d_o + at, v + kat, d) - delta[(i64)h * n + i]);
            for (int c = 0; c < d; ++c) {
                dva[c] += p * to_f32(d_o[at + c]);
                dka[c] += ds * to_f32(q[at + c]);
            }
        }
    for (int c = 0; c < d; ++c) {
        dk[kat + c] = from_f32<T>(scale * dka[c]);
        dv[kat + c] = from_f32<T>(dva[c]);
    }
}

#define PA_BWD_ANY_IN(T)                                                                   \
    const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,             \
        const T *__restrict__ d_o, const float *__restrict__ lse,                          \
        const float *__restrict__ delta, const int *__restrict__ kv_row_end
#define PA_BWD_ANY(T, DT)                                                                   \
    extern "C" __global__ void __launch_bounds__(128) packed_attention_bwd_dq_any_##DT(     \
        PA_BWD_ANY_IN(T), T* __restrict__ dq, int n, int hq, int hkv, int d, float scale) { \
        bwd_dq_any<T>(q, k, v, d_o, lse, delta, kv_row_end, dq, n, hq, hkv, d, scale);      \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(128) packed_attention_bwd_dkdv_any_##DT(   \
        PA_BWD_ANY_IN(T), T* __restrict__ dk, T* __restrict__ dv, int n, int hq, int hkv,   \
        int d, float scale) {                                                               \
        bwd_dkdv_any<T>(q, k, v, d_o, lse, delta, kv_row_end, dk, dv, n, hq, hkv, d, scale); \
    }

PA_BWD_ANY(float, f32)
PA_BWD_ANY(__half, f16)
PA_BWD_ANY(__nv_bfloat16, bf16)
