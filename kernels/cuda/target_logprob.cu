// target_logprob.cu — log-probs of target tokens under softmax(scale·logits[row]), several
// targets per row in CSR form, and each row's entropy:
//   logp[i] = log_softmax(scale·logits[row(i)])[tokens[i]],  i ∈ [row_ptr[r], row_ptr[r+1])
//   entropy[r] = −Σ_j p_j log p_j   (0·log 0 = 0: masked −inf logits contribute nothing)
// Numerics: z = scale·logit (f32), m = max_j z_j, S = Σ exp(z−m), T = Σ exp(z−m)·(z−m), all from
// ONE read of the row (online softmax, f32), log p = (z − m) − log S (no cancellation against a
// large m), H = log S − T/S.
// Logits must be finite or −inf, with at least one finite logit per row (else NaN).
// Layout: logits [rows, vocab]; row_ptr [rows+1]; tokens, logp [n_targets]; entropy [rows]
// (nullptr: not written). Launch: grid (rows), one block of 512 per row.

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

extern "C" __global__ void target_logprob_f32(const float* __restrict__ logits,
                                              const int* __restrict__ row_ptr,
                                              const int* __restrict__ tokens,
                                              float* __restrict__ logp,
                                              float* __restrict__ entropy, u32 rows, u32 vocab,
                                              float scale) {
    __shared__ float scratch[32];
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    const float* lr = logits + (i64)row * vocab;
    const TlpStats st = tlp_row_stats(lr, vocab, scale, scratch);
    const float m = st.m, log_s = logf(st.s);
    if (entropy != nullptr && threadIdx.x == 0) entropy[row] = log_s - st.t / st.s;
    const int b = row_ptr[row], e = row_ptr[row + 1];
    for (int i = b + (int)threadIdx.x; i < e; i += blockDim.x) {
        logp[i] = (scale * lr[tokens[i]] - m) - log_s;
    }
}
