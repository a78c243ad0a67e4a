// embedding_bwd.cu — embedding backward, ACCUMULATING: dtable[ids[t], :] += dout[t, :].
// Deterministic without atomics or a sort, and bit-identical to the CPU reference: block
// (t, c) handles token t and column tile c only if t is the FIRST occurrence of ids[t] (it scans
// ids[0..t) and leaves otherwise); it then adds, in registers, the gradients of every occurrence
// of the id in token order: its own, then the later ones found by scanning ids[t+1..tokens) with
// warp ballots, loaded EMB_BATCH hits at a time (loads in flight together, adds in order). Each
// dtable element is therefore written by one thread, as acc = row; acc += dout[t0]; acc += ...
// Cost: O(tokens²/2) id comparisons per column tile over all blocks (L1/L2-resident ids); the
// block of an id with h occurrences adds h rows serially (a very frequent id is the slow path).
// Layout: dout [tokens, dim]; ids [tokens] (validated < vocab on upload); dtable [vocab, dim].
// Launch: grid (tokens, ceil(dim / EMB_TILE)), block EMB_THREADS = 256.

#define EMB_THREADS 256
#define EMB_K 4  // columns per thread: a tile covers EMB_TILE = EMB_THREADS * EMB_K columns
#define EMB_TILE (EMB_THREADS * EMB_K)
#define EMB_BATCH 4  // occurrences whose rows are loaded before they are added

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
    // This thread's columns: c0 + q·EMB_THREADS, q < EMB_K.
    const i64 c0 = (i64)blockIdx.y * EMB_TILE + threadIdx.x;
    float* row = dtable + (i64)id * dim;
    float acc[EMB_K];
#pragma unroll
    for (int q = 0; q < EMB_K; ++q) {
        const i64 j = c0 + q * EMB_THREADS;
        acc[q] = j < dim ? row[j] : 0.0f;
    }
    {
        const float* src = dout + (i64)t * dim;
#pragma unroll
        for (int q = 0; q < EMB_K; ++q) {
            const i64 j = c0 + q * EMB_THREADS;
            if (j < dim) acc[q] += src[j];
        }
    }
    for (u32 base = t + 1; base < tokens; base += EMB_THREADS) {
        const u32 k = base + threadIdx.x;
        const unsigned m = __ballot_sync(0xffffffffu, k < tokens && ids[k] == id);
        if (lane == 0) masks[warp] = m;
        __syncthreads();
        for (int wi = 0; wi < EMB_THREADS / 32; ++wi) {
            unsigned mm = masks[wi];
            while (mm != 0u) {
                // Up to EMB_BATCH hits, in token order (lowest bits first).
                u32 tk[EMB_BATCH] = {};
                int nb = 0;
#pragma unroll
                for (int h = 0; h < EMB_BATCH; ++h) {
                    if (mm != 0u) {
                        tk[h] = base + wi * 32 + (__ffs(mm) - 1);
                        mm &= mm - 1u;
                        nb = h + 1;
                    }
                }
                float v[EMB_BATCH][EMB_K];
#pragma unroll
                for (int h = 0; h < EMB_BATCH; ++h) {
#pragma unroll
                    for (int q = 0; q < EMB_K; ++q) {
                        const i64 j = c0 + q * EMB_THREADS;
                        v[h][q] = (h < nb && j < dim) ? dout[(i64)tk[h] * dim + j] : 0.0f;
                    }
                }
#pragma unroll
                for (int h = 0; h < EMB_BATCH; ++h) {
                    if (h < nb) {
#pragma unroll
                        for (int q = 0; q < EMB_K; ++q) acc[q] += v[h][q];
                    }
                }
            }
        }
        __syncthreads();  // masks are rewritten by the next chunk
    }
#pragma unroll
    for (int q = 0; q < EMB_K; ++q) {
        const i64 j = c0 + q * EMB_THREADS;
        if (j < dim) row[j] = acc[q];
    }
}
