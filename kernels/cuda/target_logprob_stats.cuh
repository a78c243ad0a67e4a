// target_logprob_stats.cuh — the row statistics shared by target_logprob.cu and
// target_logprob_bwd.cu (prepended to both by `cuda::sources`; WGSL twin:
// target_logprob_stats.wgsl). Needs block_max/block_sum from common.cuh.

// Softmax statistics of one row in a single pass over the logits (online softmax): each thread
// keeps (m, s, t) for its elements with s = Σ exp(z−m), t = Σ exp(z−m)·(z−m), rescaling both when
// its max grows (t' = a·(t + (m−m')·s), s' = a·s, a = exp(m−m')); the block then combines them
// against the row max the same way. A thread that saw no finite logit has s = 0 and contributes
// nothing (guarded: (m − M)·s would be (−inf)·0). A NaN logit makes s NaN, hence the whole row's
// results NaN (never silently dropped). Returns the same values in every thread.
struct TlpStats {
    float m, s, t;
};

__device__ __forceinline__ TlpStats tlp_row_stats(const float* __restrict__ lr, u32 vocab,
                                                  float scale, float* scratch) {
    float m = NEG_INF, s = 0.0f, t = 0.0f;
    for (u32 j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float z = scale * lr[j];
        if (z > m) {
            if (s > 0.0f) {
                const float a = expf(m - z);
                t = a * (t + (m - z) * s);
                s *= a;
            }
            m = z;
        }
        if (z != NEG_INF) {  // NaN included: it poisons the row
            const float d = z - m;
            const float e = expf(d);
            s += e;
            t += e * d;
        }
    }
    TlpStats r;
    r.m = block_max(m, scratch);
    float sc = 0.0f, tc = 0.0f;
    if (s != 0.0f) {  // a NaN s propagates
        const float a = expf(m - r.m);
        sc = a * s;
        tc = a * (t + (m - r.m) * s);
    }
    r.s = block_sum(sc, scratch);
    r.t = block_sum(tc, scratch);
    return r;
}
