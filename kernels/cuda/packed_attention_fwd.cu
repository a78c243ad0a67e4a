// packed_attention_fwd.cu — tree-masked packed attention, forward (training).
// For query head h (KV head g = h / (hq / hkv)) and row i: s_ij = scale * q_i . k_j over the keys
// visible to i (j <= i < kv_row_end[j]); o_i = softmax(s_i) . V; lse[h*n + i] = ln sum_j e^s_ij.
// Layouts: q, o [n, hq, D]; k, v [n, hkv, D]; kv_row_end [n] int32; block_bounds [ceil(n/16), 2]
// int32 (min, max of kv_row_end per 16 columns); lse [hq, n] f32. D is a template (64, 128).
// Inputs were validated on the host (every kv_row_end[j] in [j+1, n]), so every valid row sees
// its own column and its normalizer is >= 1.
//
// Two kernels, both one block of 128 threads (4 warps) per (query tile, query head), grid
// (num_tiles, hq), tiles walked heaviest (last) first:
//  - packed_attention_fwd_hd{D}_f32: CUDA cores. 16-row query tile (4 rows per warp), 32-key
//    KV tiles staged in shared memory; lane = key for the scores (K rows padded to D+1 floats:
//    no bank conflicts), lane = output dims {lane, lane+32, ...} for the accumulator.
//  - packed_attention_fwd_hd{D}_{f16,bf16}: 64-row query tiles. With TREEPO_HAS_MMA (sm_80+):
//    tensor cores, FlashAttention-2 style, 16 rows per warp held as mma.sync.m16n8k16 A fragments
//    (f32 accumulation); 64-key KV tiles staged in shared memory (K row-major, V transposed, rows
//    padded by 8 elements so the fragment loads are conflict-free); the S accumulators are reused
//    in registers as the A fragments of P.V (the FA2 layout identity); online softmax in the log2
//    domain. Without it (sm_75): the CUDA-core path of the f32 kernels, run over the tile's four
//    16-row sub-tiles in turn, so the host's grid is the same on every architecture.
// Tile skipping: a KV tile whose block bounds show no visible pair for the query tile is
// skipped (block-uniform); a tile visible in full (and inside n) is not masked per element.
// Numerics: f32 statistics and accumulators; P is rounded to f16/bf16 before P.V (as FA2);
// rows whose running max is still -inf use 0 as the exponent base (no NaN).
// Shared with the backward: packed_attention.cuh (prepended; pa_classify, pa_stage_kv_f32).

// ---------------------------------------------------------------- CUDA-core path (any T)
#define PA_SCALAR_ROWS 16

// Query rows [r0, r0 + PA_SCALAR_ROWS) of head blockIdx.y (r0 block-uniform; rows >= n are
// skipped). The first shared-memory write (qs) comes before any barrier: a caller that runs this
// more than once per block places a __syncthreads() between the calls.
template <typename T, int D>
__device__ __forceinline__ void fwd_scalar_rows(const T* __restrict__ q, const T* __restrict__ k,
                                                const T* __restrict__ v,
                                                const int* __restrict__ kv_row_end,
                                                const int* __restrict__ bounds,
                                                T* __restrict__ o, float* __restrict__ lse,
                                                int n, int hq, int hkv, float scale, int r0) {
    constexpr int BR = PA_SCALAR_ROWS, BC = 32, RPW = BR / 4, DPL = D / 32;
    __shared__ float qs[BR][D];
    __shared__ float ks[BC][D + 1];
    __shared__ float vs[BC][D];
    __shared__ int es[BC];
    const int h = blockIdx.y, g = h / (hq / hkv);
    const int r1 = min(r0 + BR, n);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int e = threadIdx.x; e < BR * D; e += blockDim.x) {
        const int r = e / D, c = e % D, row = r0 + r;
        qs[r][c] = row < n ? to_f32(q[((i64)row * hq + h) * D + c]) * scale : 0.0f;
    }
    float m[RPW], l[RPW], acc[RPW][DPL];
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
        m[rr] = NEG_INF;
        l[rr] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[rr][c] = 0.0f;
    }
    const int ntiles = (r1 + BC - 1) / BC;
    for (int t = 0; t < ntiles; ++t) {
        const int c0 = t * BC, c1 = min(c0 + BC, n);
        const int cls = pa_classify(bounds, r0, r1, c0, c1);
        if (cls == 0) continue;  // block-uniform
        __syncthreads();         // the previous tile is consumed (and qs is written)
        pa_stage_kv_f32<T, D, BC, D>(k, v, kv_row_end, n, hkv, g, c0, ks, vs, es);
        __syncthreads();
        const bool full = cls == 2 && c0 + BC <= n;
        const int col = c0 + lane;
#pragma unroll
        for (int rr = 0; rr < RPW; ++rr) {
            const int r = warp * RPW + rr, row = r0 + r;
            const bool vis = full || (col < n && row < n && col <= row && row < es[lane]);
            float s = NEG_INF;
            if (vis) {
                float a = 0.0f;
#pragma unroll 16
                for (int c = 0; c < D; ++c) a += qs[r][c] * ks[lane][c];
                s = a;
            }
            const float mx = warp_max(s);
            if (mx == NEG_INF) continue;  // warp-uniform: nothing visible in this tile
            const float m_new = fmaxf(m[rr], mx);
            const float corr = expf(m[rr] - m_new);  // 0 while m was -inf
            const float pe = vis ? expf(s - m_new) : 0.0f;
            l[rr] = l[rr] * corr + warp_sum(pe);
#pragma unroll
            for (int c = 0; c < DPL; ++c) acc[rr][c] *= corr;
            for (int j = 0; j < BC; ++j) {
                const float pj = __shfl_sync(PA_FULL, pe, j);
#pragma unroll
                for (int c = 0; c < DPL; ++c) acc[rr][c] += pj * vs[j][lane + 32 * c];
            }
            m[rr] = m_new;
        }
    }
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
        const int row = r0 + warp * RPW + rr;
        if (row >= n) continue;
        const float inv = 1.0f / l[rr];
#pragma unroll
        for (int c = 0; c < DPL; ++c)
            o[((i64)row * hq + h) * D + lane + 32 * c] = from_f32<T>(acc[rr][c] * inv);
        if (lane == 0) lse[(i64)h * n + row] = m[rr] + logf(l[rr]);
    }
}

// The f32 kernels: one 16-row tile per block.
template <typename T, int D>
__device__ __forceinline__ void fwd_scalar(const T* __restrict__ q, const T* __restrict__ k,
                                           const T* __restrict__ v,
                                           const int* __restrict__ kv_row_end,
                                           const int* __restrict__ bounds, T* __restrict__ o,
                                           float* __restrict__ lse, int n, int hq, int hkv,
                                           float scale) {
    const int tile = gridDim.x - 1 - blockIdx.x;
    fwd_scalar_rows<T, D>(q, k, v, kv_row_end, bounds, o, lse, n, hq, hkv, scale,
                          tile * PA_SCALAR_ROWS);
}

// ---------------------------------------------------------------- the 64-row tile (f16, bf16)
#define PA_MMA_ROWS 64

#if TREEPO_HAS_MMA
__device__ __forceinline__ u32 pack2(float lo, float hi, __half) {
    __half2 h = __floats2half2_rn(lo, hi);  // lo in the low 16 bits (the lower column)
    return *reinterpret_cast<u32*>(&h);
}
__device__ __forceinline__ u32 pack2(float lo, float hi, __nv_bfloat16) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<u32*>(&h);
}

// The tensor-core step for T (common.cuh: mma_m16n8k16_{f16,bf16}, fragment layouts there).
__device__ __forceinline__ void mma16816(float* d, const u32* a, u32 b0, u32 b1, __half) {
    mma_m16n8k16_f16(d, a, b0, b1);
}
__device__ __forceinline__ void mma16816(float* d, const u32* a, u32 b0, u32 b1, __nv_bfloat16) {
    mma_m16n8k16_bf16(d, a, b0, b1);
}

template <typename T, int D>
__device__ __forceinline__ void fwd_mma(const T* __restrict__ q, const T* __restrict__ k,
                                        const T* __restrict__ v,
                                        const int* __restrict__ kv_row_end,
                                        const int* __restrict__ bounds, T* __restrict__ o,
                                        float* __restrict__ lse, int n, int hq, int hkv,
                                        float scale) {
    constexpr int BR = PA_MMA_ROWS, BC = 64, KSTR = D + 8, VSTR = BC + 8, NC = BC / 8,
                  DK = D / 16, DN = D / 8;
    __shared__ __align__(16) T ks[BC * KSTR];  // ks[j*KSTR + d] = K[c0+j][d]
    __shared__ __align__(16) T vts[D * VSTR];  // vts[d*VSTR + j] = V[c0+j][d]
    __shared__ int es[BC];
    const int tile = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, g = h / (hq / hkv);
    const int r0 = tile * BR, r1 = min(r0 + BR, n);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gid = lane >> 2, tig = lane & 3;
    const int row_a = r0 + warp * 16 + gid, row_b = row_a + 8;
    const float sl2 = scale * 1.4426950408889634f;  // scores in log2 units

    // Q fragments straight from global memory (zeros past n).
    u32 qa[DK][4];
    const T zero = from_f32<T>(0.0f);
#pragma unroll
    for (int kk = 0; kk < DK; ++kk) {
#pragma unroll
        for (int f = 0; f < 4; ++f) {
            const int row = (f & 1) ? row_b : row_a;
            const int c = kk * 16 + (f >> 1) * 8 + tig * 2;
            T x0 = zero, x1 = zero;
            if (row < n) {
                const T* src = q + ((i64)row * hq + h) * D + c;
                x0 = src[0];
                x1 = src[1];
            }
            qa[kk][f] = pack2(to_f32(x0), to_f32(x1), zero);
        }
    }
    float acc[DN][4];
#pragma unroll
    for (int dn = 0; dn < DN; ++dn)
#pragma unroll
        for (int f = 0; f < 4; ++f) acc[dn][f] = 0.0f;
    float m_a = NEG_INF, m_b = NEG_INF, l_a = 0.0f, l_b = 0.0f;  // l: this thread's partial sums

    const int ntiles = (r1 + BC - 1) / BC;
    for (int t = 0; t < ntiles; ++t) {
        const int c0 = t * BC, c1 = min(c0 + BC, n);
        const int cls = pa_classify(bounds, r0, r1, c0, c1);
        if (cls == 0) continue;  // block-uniform
        __syncthreads();         // the previous tile is consumed
        for (int e = threadIdx.x; e < BC * D; e += blockDim.x) {
            const int j = e / D, c = e % D, col = c0 + j;
            T kx = zero, vx = zero;
            if (col < n) {
                const i64 at = ((i64)col * hkv + g) * D + c;
                kx = k[at];
                vx = v[at];
            }
            ks[j * KSTR + c] = kx;
            vts[c * VSTR + j] = vx;
        }
        if (threadIdx.x < BC) es[threadIdx.x] = c0 + threadIdx.x < n ? kv_row_end[c0 + threadIdx.x] : 0;
        __syncthreads();

        // S = Q K^T for this warp's 16 rows x 64 keys.
        float s[NC][4];
#pragma unroll
        for (int nc = 0; nc < NC; ++nc) {
            s[nc][0] = s[nc][1] = s[nc][2] = s[nc][3] = 0.0f;
            const T* kr = ks + (nc * 8 + gid) * KSTR + tig * 2;
#pragma unroll
            for (int kk = 0; kk < DK; ++kk) {
                const u32 b0 = *reinterpret_cast<const u32*>(kr + kk * 16);
                const u32 b1 = *reinterpret_cast<const u32*>(kr + kk * 16 + 8);
                mma16816(s[nc], qa[kk], b0, b1, zero);
            }
        }
        // Scale, mask, row maxima (a row's 64 scores live in the 4 threads of a quad).
        const bool full = cls == 2 && c0 + BC <= n;
        float mx_a = NEG_INF, mx_b = NEG_INF;
#pragma unroll
        for (int nc = 0; nc < NC; ++nc) {
#pragma unroll
            for (int f = 0; f < 4; ++f) {
                const int jl = nc * 8 + tig * 2 + (f & 1), col = c0 + jl;
                const int row = (f < 2) ? row_a : row_b;
                const bool vis = full || (col < n && row < n && col <= row && row < es[jl]);
                s[nc][f] = vis ? s[nc][f] * sl2 : NEG_INF;
            }
            mx_a = fmaxf(mx_a, fmaxf(s[nc][0], s[nc][1]));
            mx_b = fmaxf(mx_b, fmaxf(s[nc][2], s[nc][3]));
        }
        mx_a = fmaxf(mx_a, __shfl_xor_sync(PA_FULL, mx_a, 1));
        mx_a = fmaxf(mx_a, __shfl_xor_sync(PA_FULL, mx_a, 2));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(PA_FULL, mx_b, 1));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(PA_FULL, mx_b, 2));
        const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
        const float base_a = mn_a == NEG_INF ? 0.0f : mn_a;
        const float base_b = mn_b == NEG_INF ? 0.0f : mn_b;
        const float corr_a = exp2f(m_a - base_a), corr_b = exp2f(m_b - base_b);
        m_a = mn_a;
        m_b = mn_b;
        l_a *= corr_a;
        l_b *= corr_b;
#pragma unroll
        for (int dn = 0; dn < DN; ++dn) {
            acc[dn][0] *= corr_a;
            acc[dn][1] *= corr_a;
            acc[dn][2] *= corr_b;
            acc[dn][3] *= corr_b;
        }
#pragma unroll
        for (int nc = 0; nc < NC; ++nc) {
            s[nc][0] = exp2f(s[nc][0] - base_a);
            s[nc][1] = exp2f(s[nc][1] - base_a);
            s[nc][2] = exp2f(s[nc][2] - base_b);
            s[nc][3] = exp2f(s[nc][3] - base_b);
            l_a += s[nc][0] + s[nc][1];
            l_b += s[nc][2] + s[nc][3];
        }
        // O += P V: P's A fragment for keys [16t', 16t'+16) is S chunks 2t' and 2t'+1.
#pragma unroll
        for (int tk = 0; tk < BC / 16; ++tk) {
            u32 pa[4];
            pa[0] = pack2(s[2 * tk][0], s[2 * tk][1], zero);
            pa[1] = pack2(s[2 * tk][2], s[2 * tk][3], zero);
            pa[2] = pack2(s[2 * tk + 1][0], s[2 * tk + 1][1], zero);
            pa[3] = pack2(s[2 * tk + 1][2], s[2 * tk + 1][3], zero);
#pragma unroll
            for (int dn = 0; dn < DN; ++dn) {
                const T* vr = vts + (dn * 8 + gid) * VSTR + tk * 16 + tig * 2;
                const u32 b0 = *reinterpret_cast<const u32*>(vr);
                const u32 b1 = *reinterpret_cast<const u32*>(vr + 8);
                mma16816(acc[dn], pa, b0, b1, zero);
            }
        }
    }
    // Row sums over the quad, then normalize and store.
    l_a += __shfl_xor_sync(PA_FULL, l_a, 1);
    l_a += __shfl_xor_sync(PA_FULL, l_a, 2);
    l_b += __shfl_xor_sync(PA_FULL, l_b, 1);
    l_b += __shfl_xor_sync(PA_FULL, l_b, 2);
    const float inv_a = 1.0f / l_a, inv_b = 1.0f / l_b;
#pragma unroll
    for (int dn = 0; dn < DN; ++dn) {
        const int c = dn * 8 + tig * 2;
        if (row_a < n) {
            T* dst = o + ((i64)row_a * hq + h) * D + c;
            dst[0] = from_f32<T>(acc[dn][0] * inv_a);
            dst[1] = from_f32<T>(acc[dn][1] * inv_a);
        }
        if (row_b < n) {
            T* dst = o + ((i64)row_b * hq + h) * D + c;
            dst[0] = from_f32<T>(acc[dn][2] * inv_b);
            dst[1] = from_f32<T>(acc[dn][3] * inv_b);
        }
    }
    const float ln2 = 0.6931471805599453f;
    if (tig == 0 && row_a < n) lse[(i64)h * n + row_a] = m_a * ln2 + logf(l_a);
    if (tig == 0 && row_b < n) lse[(i64)h * n + row_b] = m_b * ln2 + logf(l_b);
}
#endif  // TREEPO_HAS_MMA

// The f16/bf16 kernels: one 64-row tile per block (the host's grid for these dtypes), on tensor
// cores where TREEPO_HAS_MMA, else as four 16-row CUDA-core sub-tiles in turn.
template <typename T, int D>
__device__ __forceinline__ void fwd_tile64(const T* __restrict__ q, const T* __restrict__ k,
                                           const T* __restrict__ v,
                                           const int* __restrict__ kv_row_end,
                                           const int* __restrict__ bounds, T* __restrict__ o,
                                           float* __restrict__ lse, int n, int hq, int hkv,
                                           float scale) {
#if TREEPO_HAS_MMA
    fwd_mma<T, D>(q, k, v, kv_row_end, bounds, o, lse, n, hq, hkv, scale);
#else
    const int tile = gridDim.x - 1 - blockIdx.x;
    for (int sub = 0; sub < PA_MMA_ROWS / PA_SCALAR_ROWS; ++sub) {
        const int r0 = tile * PA_MMA_ROWS + sub * PA_SCALAR_ROWS;
        if (r0 >= n) break;  // block-uniform
        __syncthreads();     // the previous sub-tile is done with the shared tiles
        fwd_scalar_rows<T, D>(q, k, v, kv_row_end, bounds, o, lse, n, hq, hkv, scale, r0);
    }
#endif
}

#define PA_FWD_ARGS(T)                                                                          \
    const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,                  \
        const int *__restrict__ kv_row_end, const int *__restrict__ bounds, T *__restrict__ o, \
        float *__restrict__ lse, int n, int hq, int hkv, float scale
#define PA_FWD(NAME, IMPL, T, D)                                                   \
    extern "C" __global__ void __launch_bounds__(128) NAME(PA_FWD_ARGS(T)) {       \
        IMPL<T, D>(q, k, v, kv_row_end, bounds, o, lse, n, hq, hkv, scale);        \
    }

PA_FWD(packed_attention_fwd_hd64_f32, fwd_scalar, float, 64)
PA_FWD(packed_attention_fwd_hd128_f32, fwd_scalar, float, 128)
PA_FWD(packed_attention_fwd_hd64_f16, fwd_tile64, __half, 64)
PA_FWD(packed_attention_fwd_hd128_f16, fwd_tile64, __half, 128)
PA_FWD(packed_attention_fwd_hd64_bf16, fwd_tile64, __nv_bfloat16, 64)
PA_FWD(packed_attention_fwd_hd128_bf16, fwd_tile64, __nv_bfloat16, 128)

// ---------------------------------------------------------------- any head size (CUDA cores)
// packed_attention_fwd_any_{f32,f16,bf16}: head sizes without a tiled kernel (D not 64 or 128,
// D <= PA_ANY_MAX_D, given at run time), e.g. the small models of the demo and the tests. One
// thread per (row, query head) scans the row's visible keys with the online softmax; f32
// accumulators in local memory. Grid (ceil(n/128), hq), 128 threads, no shared memory.
// O(n^2 D) work per head and no reuse across rows: correct for every D, fast for none.
#define PA_ANY_MAX_D 256
template <typename T>
__device__ __forceinline__ void fwd_any(const T* __restrict__ q, const T* __restrict__ k,
                                        const T* __restrict__ v,
                                        const int* __restrict__ kv_row_end, T* __restrict__ o,
                                        float* __restrict__ lse, int n, int hq, int hkv, int d,
                                        float scale) {
    const i64 gi = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (gi >= n) return;
    const int row = (int)gi, h = blockIdx.y, g = h / (hq / hkv);
    const T* qr = q + ((i64)row * hq + h) * d;
    float acc[PA_ANY_MAX_D];
    for (int c = 0; c < d; ++c) acc[c] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    for (int j = 0; j <= row; ++j) {
        if (row >= kv_row_end[j]) continue;  // key j is not visible to this row
        const T* kr = k + ((i64)j * hkv + g) * d;
        const T* vr = v + ((i64)j * hkv + g) * d;
        float s = 0.0f;
        for (int c = 0; c < d; ++c) s += to_f32(qr[c]) * to_f32(kr[c]);
        s *= scale;
        const float mn = fmaxf(m, s);
        const float corr = expf(m - mn);  // 0 while m is -inf
        const float p = expf(s - mn);
        l = l * corr + p;
        for (int c = 0; c < d; ++c) acc[c] = acc[c] * corr + p * to_f32(vr[c]);
        m = mn;
    }
    // Every row sees its own key (kv_row_end[row] > row, validated), so l >= 1.
    T* orow = o + ((i64)row * hq + h) * d;
    for (int c = 0; c < d; ++c) orow[c] = from_f32<T>(acc[c] / l);
    lse[(i64)h * n + row] = m + logf(l);
}

#define PA_FWD_ANY(NAME, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(128)                                         \
        NAME(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,       \
             const int* __restrict__ kv_row_end, T* __restrict__ o, float* __restrict__ lse, \
             int n, int hq, int hkv, int d, float scale) {                                    \
        fwd_any<T>(q, k, v, kv_row_end, o, lse, n, hq, hkv, d, scale);                        \
    }

PA_FWD_ANY(packed_attention_fwd_any_f32, float)
PA_FWD_ANY(packed_attention_fwd_any_f16, __half)
PA_FWD_ANY(packed_attention_fwd_any_bf16, __nv_bfloat16)
