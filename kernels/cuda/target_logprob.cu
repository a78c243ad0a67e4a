// target_logprob.cu — log-probs of target tokens under softmax(scale·logits[row]), several
// targets per row in CSR form, and each row's entropy:
//   logp[i] = log_softmax(scale·logits[row(i)])[tokens[i]],  i ∈ [row_ptr[r], row_ptr[r+1])
//   entropy[r] = −Σ_j p_j log p_j   (0·log 0 = 0: masked −inf logits contribute nothing)
// Numerics: z = scale·logit (f32), m = max_j z_j, S = Σ exp(z−m), T = Σ exp(z−m)·(z−m), all from
// ONE read of the row (online softmax, f32), log p = (z − m) − log S (no cancellation against a
// large m), H = log S − T/S.
// Logits must be finite or −inf, with at least one finite logit per row (else NaN). The
// statistics are tlp_row_stats of target_logprob_stats.cuh (prepended).
// Layout: logits [rows, vocab]; row_ptr [rows+1]; tokens, logp [n_targets]; entropy [rows]
// (nullptr: not written). Launch: grid (rows), one block of 512 per row.

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
