// target_logprob_bwd.cu — backward of target_logprob.cu, OVERWRITING dlogits:
//   dlogits[r, j] = scale·(Σ_{i∈row r} g_i·([j = tok_i] − p_j)) − ge_r·scale·p_j·(log p_j + H_r)
// p = softmax(scale·logits[r]), H_r its entropy; the ge term only when grad_entropy != nullptr.
// Masked logits (−inf) have p = 0: only their one-hot terms (if targeted) remain.
// No atomics: the targets of row r are the contiguous CSR range [row_ptr[r], row_ptr[r+1]), so
// block r writes the dense part −scale·G·p_j (+ entropy term) for every j, then, after a
// __syncthreads (which makes the block's global writes visible within the block), thread 0
// adds scale·g_i at tok_i for each target in order (repeated tokens sum).
// The logits are read twice: once for the statistics (online softmax: tlp_row_stats of
// target_logprob_stats.cuh, prepended), once for the gradient.
// Layout: logits, dlogits [rows, vocab]; row_ptr [rows+1]; tokens, grad_logp [n_targets];
// grad_entropy [rows] or nullptr. Launch: grid (rows), one block of 512 per row.

extern "C" __global__ void target_logprob_bwd_f32(const float* __restrict__ logits,
                                                  const int* __restrict__ row_ptr,
                                                  const int* __restrict__ tokens,
                                                  const float* __restrict__ grad_logp,
                                                  const float* __restrict__ grad_entropy,
                                                  float* __restrict__ dlogits, u32 rows,
                                                  u32 vocab, float scale) {
    __shared__ float scratch[32];
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    const float* lr = logits + (i64)row * vocab;
    float* dl = dlogits + (i64)row * vocab;
    const bool has_ge = grad_entropy != nullptr;
    const TlpStats st = tlp_row_stats(lr, vocab, scale, scratch);
    const float m = st.m, log_s = logf(st.s), h = log_s - st.t / st.s;
    const int b = row_ptr[row], e = row_ptr[row + 1];
    float g = 0.0f;
    for (int i = b + (int)threadIdx.x; i < e; i += blockDim.x) g += grad_logp[i];
    const float g_sum = block_sum(g, scratch);
    const float ge = has_ge ? grad_entropy[row] : 0.0f;
    for (u32 j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float z = scale * lr[j];
        float d = 0.0f;
        if (z != NEG_INF) {  // NaN included: it poisons the row
            const float lp = (z - m) - log_s;
            const float p = expf(lp);
            d = -scale * g_sum * p;
            if (has_ge) d += ge * (-scale * p * (lp + h));
        }
        dl[j] = d;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = b; i < e; ++i) dl[tokens[i]] += scale * grad_logp[i];
    }
}
