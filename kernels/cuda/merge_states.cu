// merge_states.cu — variable-length merge of attention states, NATURAL log (FlashInfer's
// VariableLengthMergeStates uses base 2): for plan row r, states indptr[r]..indptr[r+1] of
// (partial_o [S, hq, D] f32, partial_lse [S, hq] f32) merge into out[out_rows[r]] (dtype T):
//   M = max lse_i, w_i = exp(lse_i - M), o = sum w_i o_i / sum w_i, lse = M + ln sum w_i.
// NaN-safe: a state with lse = -inf is empty and skipped (its o is never read); a row without a
// non-empty state gets o = 0, lse = -inf. skip_single != 0 leaves rows with exactly one state
// untouched (tree_decode wrote them directly).
// `merge` holds indptr [R+1] (offset 0) and out_rows [R] at off_rows (validated on upload).
// Launch: one CTA of 128 threads per (row, head) — grid R*hq; threads stride over D.
// Symbols: merge_states_{f32,f16,bf16}.

template <typename T>
__device__ __forceinline__ void merge_states_impl(const float* po, const float* pl,
                                                  const int* merge, int off_rows, T* out,
                                                  float* lse_out, int rows, int hq, int d,
                                                  int skip_single) {
    const int r = blockIdx.x / hq, head = blockIdx.x % hq;
    if (r >= rows) return;
    const int b = merge[r], e = merge[r + 1];
    if (skip_single && e - b == 1) return;
    float mx = NEG_INF;
    for (int s = b; s < e; ++s) mx = fmaxf(mx, pl[(i64)s * hq + head]);
    const i64 orow = merge[off_rows + r];
    T* dst = out + (orow * hq + head) * d;
    if (mx == NEG_INF) {
        for (int i = threadIdx.x; i < d; i += blockDim.x) dst[i] = from_f32<T>(0.0f);
        if (threadIdx.x == 0 && lse_out != nullptr) lse_out[orow * hq + head] = NEG_INF;
        return;
    }
    float wsum = 0.0f;
    for (int s = b; s < e; ++s) {
        const float l = pl[(i64)s * hq + head];
        if (l != NEG_INF) wsum += expf(l - mx);
    }
    const float inv = 1.0f / wsum;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.0f;
        for (int s = b; s < e; ++s) {
            const float l = pl[(i64)s * hq + head];
            if (l == NEG_INF) continue;
            acc = fmaf(expf(l - mx), po[((i64)s * hq + head) * d + i], acc);
        }
        dst[i] = from_f32<T>(acc * inv);
    }
    if (threadIdx.x == 0 && lse_out != nullptr) lse_out[orow * hq + head] = mx + logf(wsum);
}

#define MERGE_STATES(T, NAME)                                                                  \
    extern "C" __global__ void merge_states_##NAME(const float* po, const float* pl,           \
                                                   const int* merge, int off_rows, T* out,     \
                                                   float* lse_out, int rows, int hq, int d,    \
                                                   int skip_single) {                          \
        merge_states_impl<T>(po, pl, merge, off_rows, out, lse_out, rows, hq, d, skip_single); \
    }

MERGE_STATES(float, f32)
MERGE_STATES(__half, f16)
MERGE_STATES(__nv_bfloat16, bf16)
