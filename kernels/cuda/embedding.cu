// embedding.cu — out[t, :] = table[ids[t], :] (token embedding gather).
// Layout: table [vocab, dim] row-major; ids [tokens] i32, each in [0, vocab) (validated on upload
// and against vocab on the host); out [tokens, dim].
// Launch: one block per token (grid.x = tokens), 256 threads striding over dim.
extern "C" __global__ void embedding_f32(const float* __restrict__ table, const int* __restrict__ ids,
                                         float* __restrict__ out, u32 tokens, u32 dim) {
    const u32 t = blockIdx.x;
    if (t >= tokens) return;
    const float* src = table + (i64)ids[t] * dim;
    float* dst = out + (i64)t * dim;
    for (u32 j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = src[j];
}
