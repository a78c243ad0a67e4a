// embedding_bwd.cu — embedding backward, ACCUMULATING: dtable[ids[t], :] += dout[t, :].
// Deterministic without atomics or a sort, and bit-identical to the CPU reference: block t
// handles token t only if t is the FIRST occurrence of ids[t] (it scans ids[0..t) and leaves
// otherwise); that block then adds, column tile by column tile in registers, the gradients of
// every occurrence of the id in token order (its own, then the later ones found by scanning
// ids[t+1..tokens) with warp ballots). Each dtable row is therefore written by one thread
// per column, in token order: acc = row; acc += dout[t0]; acc += dout[t1]; ...
// Cost: O(tokens²/2) id comparisons over all blocks (L1/L2-resident ids) plus one pass over the
// gradients per column tile of 1024; fine for the tokens of one packed training step.
// Layout: dout [tokens, dim]; ids [tokens] (validated < vocab on upload); dtable [vocab, dim].
// Launch: grid (tokens), block EMB_THREADS = 256.

#define EMB_THREADS 256
#define EMB_K 4  // columns per thread per tile: a tile covers EMB_THREADS * EMB_K columns

__device__ __forceinline__ void emb_add_row(float (&acc)[EMB_K], const float* __restrict__ src,
                                            i64 c0, u32 dim) {
#pragma unroll
    for (int q = 0; q < EMB_K; ++q) {
        const i64 j = c0 + q * EMB_THREADS + threadIdx.x;
        if (j < dim) acc[q] += src[j];
    }
}

extern "C" __global__ void embedding_bwd_f32(const float* __restrict__ dout,
                                             const int* __restrict__ ids,
                                             float* __restrict__ dtable, u32 tokens, u32 dim) {
    __shared__ unsigned masks[EMB_THREADS / 32];
    const u32 t = blockIdx.x;
    if (t >= tokens) return;
    const int id = ids[t];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int earlier = 0;
    for (u32 k = threadIdx.x; k < t; k += EMB_THREADS) earlier |= (ids[k] == id);
    if (__syncthreads_or(earlier)) return;  // not the first occurrence: uniform exit
    float* row = dtable + (i64)id * dim;
    for (i64 c0 = 0; c0 < dim; c0 += EMB_THREADS * EMB_K) {
        float acc[EMB_K];
#pragma unroll
        for (int q = 0; q < EMB_K; ++q) {
            const i64 j = c0 + q * EMB_THREADS + threadIdx.x;
            acc[q] = j < dim ? row[j] : 0.0f;
        }
        emb_add_row(acc, dout + (i64)t * dim, c0, dim);
        for (u32 base = t + 1; base < tokens; base += EMB_THREADS) {
            const u32 k = base + threadIdx.x;
            const unsigned m = __ballot_sync(0xffffffffu, k < tokens && ids[k] == id);
            if (lane == 0) masks[warp] = m;
            __syncthreads();
            for (int wi = 0; wi < EMB_THREADS / 32; ++wi) {
                unsigned mm = masks[wi];
                while (mm != 0u) {
                    const int bit = __ffs(mm) - 1;
                    mm &= mm - 1u;
                    const u32 tk = base + wi * 32 + bit;
                    emb_add_row(acc, dout + (i64)tk * dim, c0, dim);
                }
            }
            __syncthreads();  // masks are rewritten by the next chunk
        }
#pragma unroll
        for (int q = 0; q < EMB_K; ++q) {
            const i64 j = c0 + q * EMB_THREADS + threadIdx.x;
            if (j < dim) row[j] = acc[q];
        }
    }
}
