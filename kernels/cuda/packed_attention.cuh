// packed_attention.cuh — device code shared by packed_attention_fwd.cu and
// packed_attention_bwd.cu (prepended to both by `cuda::sources`): the tile classification from
// the block bounds and the f32 staging of a KV tile for the CUDA-core paths.

#define PA_BLOCK 16
#define PA_FULL 0xffffffffu

// 0: empty, 1: partial, 2: full — rows [r0, r1) x columns [c0, c1) (c1 clipped to n), from the
// bounds of the 16-column blocks covering the columns (see ops/tree_mask.rs).
__device__ __forceinline__ int pa_classify(const int* __restrict__ bounds, int r0, int r1, int c0,
                                           int c1) {
    int lo = 0x7fffffff, hi = 0;
    for (int b = c0 / PA_BLOCK; b * PA_BLOCK < c1; ++b) {
        lo = min(lo, bounds[2 * b]);
        hi = max(hi, bounds[2 * b + 1]);
    }
    if (r0 >= hi || r1 <= c0) return 0;
    if (r1 <= lo && r0 + 1 >= c1) return 2;
    return 1;
}

// Stages keys [c0, c0 + BC) of KV head g in shared memory: their K and V rows widened to f32
// (ks [BC][D+1], vs [BC][VS] with VS = D or D+1; zeros past n) and their kv_row_end (es [BC], 0
// past n). Every thread of the block takes part; no barrier (the caller places them).
template <typename T, int D, int BC, int VS>
__device__ __forceinline__ void pa_stage_kv_f32(const T* __restrict__ k, const T* __restrict__ v,
                                                const int* __restrict__ kv_row_end, int n,
                                                int hkv, int g, int c0, float (*ks)[D + 1],
                                                float (*vs)[VS], int* es) {
    for (int e = threadIdx.x; e < BC * D; e += blockDim.x) {
        const int j = e / D, c = e % D, col = c0 + j;
        float kx = 0.0f, vx = 0.0f;
        if (col < n) {
            const i64 at = ((i64)col * hkv + g) * D + c;
            kx = to_f32(k[at]);
            vx = to_f32(v[at]);
        }
        ks[j][c] = kx;
        vs[j][c] = vx;
    }
    if (threadIdx.x < BC) es[threadIdx.x] = c0 + threadIdx.x < n ? kv_row_end[c0 + threadIdx.x] : 0;
}
