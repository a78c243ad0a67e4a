// paged_decode.cu — naive paged decode attention, the baseline of every tree plan: each
// sequence's query rows (its last positions, causal among themselves) attend to the sequence's
// whole page list, read through a FlashInfer CSR page table. Sharing is limited to the
// sequence's own rows and GQA group. The tile code is decode_tile.cuh (prepended), the same as
// tree_decode's, so naive-vs-tree ratios measure sharing only.
//
// Layouts: q, out [rows, hq, D]; lse_out [rows, hq] f32 NATURAL log (may be null); the cache as in
// decode_tile.cuh. `table` holds the sections indptr [S+1] (offset 0), indices [nnz],
// last_page_len [S], q_indptr [S+1] at the given element offsets (validated on upload: page ids
// in range, 1 <= last_page_len <= page_size, every sequence has a page).
// Launch: grid (S, num_kv_heads), blockDim 128, dynamic smem decode_geom::smem_bytes.
// Symbols: paged_decode_{f32,f16,bf16}_d{64,128}.

template <typename T, int D>
__device__ __forceinline__ void paged_decode_impl(const T* q, const T* kv, const int* table,
                                                  int off_indices, int off_last, int off_qindptr,
                                                  T* out, float* lse_out, i64 s_page, i64 s_kv,
                                                  i64 s_head, i64 s_token, int log2_ps, int hq,
                                                  int group, float scale_log2) {
    DYNAMIC_SMEM(unsigned char, dec_smem);
    __shared__ int s_max;
    const int seq = blockIdx.x, kvh = blockIdx.y;
    const int p0 = table[seq], np = table[seq + 1] - p0;
    const int len = ((np - 1) << log2_ps) + table[off_last + seq];
    DecJob j;
    j.pages = table + off_indices + p0;
    j.kv_start = 0;
    j.kv_end = len;
    j.row_begin = table[off_qindptr + seq];
    j.nrows = table[off_qindptr + seq + 1] - j.row_begin;
    j.q_pos = nullptr;
    j.last_pos = len - 1;
    j.row_to_q = nullptr;
    j.partial_indptr = nullptr;
    j.slot = 0;
    if (j.nrows == 0) return;  // block-uniform
    // DecArgs in field order (decode_tile.cuh); no partial states: rows are written directly.
    const DecArgs<T> a{q, kv, s_page, s_kv, s_head, s_token, log2_ps, hq,
                       group, scale_log2, nullptr, nullptr, out, lse_out};
    dec_run<T, D>(a, j, kvh, dec_smem, &s_max);
}

#define PAGED_DECODE(T, NAME, D)                                                               \
    extern "C" __global__ void __launch_bounds__(DEC_THREADS) paged_decode_##NAME##_d##D(      \
        const T* q, const T* kv, const int* table, int off_indices, int off_last,              \
        int off_qindptr, T* out, float* lse_out, i64 s_page, i64 s_kv, i64 s_head,             \
        i64 s_token, int log2_ps, int hq, int group, float scale_log2) {                       \
        paged_decode_impl<T, D>(q, kv, table, off_indices, off_last, off_qindptr, out,         \
                                lse_out, s_page, s_kv, s_head, s_token, log2_ps, hq, group,    \
                                scale_log2);                                                   \
    }

PAGED_DECODE(float, f32, 64)
PAGED_DECODE(float, f32, 128)
PAGED_DECODE(__half, f16, 64)
PAGED_DECODE(__half, f16, 128)
PAGED_DECODE(__nv_bfloat16, bf16, 64)
PAGED_DECODE(__nv_bfloat16, bf16, 128)
