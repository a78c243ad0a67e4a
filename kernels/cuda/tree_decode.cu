// tree_decode.cu — tree decode attention: one CTA per (work item, KV head) reads the item's KV
// range for all query rows of its row range and the whole GQA group together — once per pass of
// 64 (tensor cores, >= 16 query vectors on sm_80+) or 16 query vectors, see decode_tile.cuh,
// prepended — and writes per row either a partial state (o f32, lse f32 NATURAL log) or — when
// the row has exactly one state — the final output.
//
// Layouts: q, out [rows, hq, D] by caller row; partial_o [P, hq, D], partial_lse [P, hq];
// lse_out [rows, hq] (may be null; written for single-state rows). `plan` holds page_indices
// (offset 0), work [W][8] = {page_begin, page_end, kv_start, kv_end, row_begin, row_end, slot,
// node} at off_work, q_pos [rows] at off_qpos; `merge` holds partial_indptr [rows+1] (offset 0)
// and row_to_q [rows] at off_rows. All validated on upload (DecodePlanBuffers): page ids in range,
// page ranges exactly covering the item's tokens, every (row, slot) written by one item.
// Launch: grid (W, num_kv_heads), blockDim 128, dynamic smem decode_geom::smem_bytes.
// Symbols: tree_decode_{f32,f16,bf16}_d{64,128}.

template <typename T, int D>
__device__ __forceinline__ void tree_decode_impl(const T* q, const T* kv, const int* plan,
                                                 int off_work, int off_qpos, const int* merge,
                                                 int off_rows, float* partial_o,
                                                 float* partial_lse, T* out, float* lse_out,
                                                 i64 s_page, i64 s_kv, i64 s_head, i64 s_token,
                                                 int log2_ps, int hq, int group,
                                                 float scale_log2) {
    DYNAMIC_SMEM(unsigned char, dec_smem);
    __shared__ int s_max;
    const int kvh = blockIdx.y;
    const int* it = plan + off_work + (i64)blockIdx.x * 8;
    DecJob j;
    j.pages = plan + it[0];
    j.kv_start = it[2];
    j.kv_end = it[3];
    j.row_begin = it[4];
    j.nrows = it[5] - it[4];
    j.q_pos = plan + off_qpos;
    j.last_pos = 0;
    j.row_to_q = merge + off_rows;
    j.partial_indptr = merge;
    j.slot = it[6];
    // DecArgs in field order (decode_tile.cuh).
    const DecArgs<T> a{q, kv, s_page, s_kv, s_head, s_token, log2_ps, hq,
                       group, scale_log2, partial_o, partial_lse, out, lse_out};
    dec_run<T, D>(a, j, kvh, dec_smem, &s_max);
}

#define TREE_DECODE(T, NAME, D)                                                                \
    extern "C" __global__ void __launch_bounds__(DEC_THREADS) tree_decode_##NAME##_d##D(       \
        const T* q, const T* kv, const int* plan, int off_work, int off_qpos, const int* merge, \
        int off_rows, float* partial_o, float* partial_lse, T* out, float* lse_out,            \
        i64 s_page, i64 s_kv, i64 s_head, i64 s_token, int log2_ps, int hq, int group,         \
        float scale_log2) {                                                                    \
        tree_decode_impl<T, D>(q, kv, plan, off_work, off_qpos, merge, off_rows, partial_o,    \
                               partial_lse, out, lse_out, s_page, s_kv, s_head, s_token,       \
                               log2_ps, hq, group, scale_log2);                                \
    }

TREE_DECODE(float, f32, 64)
TREE_DECODE(float, f32, 128)
TREE_DECODE(__half, f16, 64)
TREE_DECODE(__half, f16, 128)
TREE_DECODE(__nv_bfloat16, bf16, 64)
TREE_DECODE(__nv_bfloat16, bf16, 128)
