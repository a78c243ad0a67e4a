// page_copy.cu — copy-on-write of partial pages (vLLM `copy_blocks`): for each job
// (src, dst, rows), rows [0, rows) of page src are copied into page dst, for K and V, every head
// and every layer, in one launch.
//
// Layout (ops::PagedKvLayout): element (layer, page, kv, head, row, d) lives at
// layer*s_layer + page*s_page + kv*s_kv + head*s_head + row*s_token + d.
// jobs [3*J] int32 triples, validated on the host (ops::PageCopyJobs): pages < num_pages,
// rows <= page_size, src != dst, no page written twice and no page both written and read — so
// every (job, layer) unit runs in parallel without a race.
//
// A pure copy in W-byte words (W in {2, 4, 8, 16} bytes, chosen by the host as in
// paged_kv_append.cu; strides and `dw` in words). Launch: grid (units = J*layers), one block
// per (job, layer); blockDim a multiple of 32 (<= 256). Inside a unit the words are walked in
// memory order: with token_inner (s_token <= s_head, HND) heads outer and rows inner, else
// (NHD) rows outer and heads inner.

template <typename W>
__device__ __forceinline__ void copy_words(void* cache_, const int* __restrict__ jobs, u32 units,
                                           u32 layers, u32 heads, u32 dw, u32 token_inner,
                                           i64 s_layer, i64 s_page, i64 s_kv, i64 s_head,
                                           i64 s_token) {
    W* cache = static_cast<W*>(cache_);
    for (u32 unit = blockIdx.x; unit < units; unit += gridDim.x) {
        const u32 j = unit / layers;
        const u32 layer = unit - j * layers;
        const i64 src = (i64)jobs[3 * (i64)j];
        const i64 dst = (i64)jobs[3 * (i64)j + 1];
        const u32 rows = (u32)jobs[3 * (i64)j + 2];
        const i64 base = (i64)layer * s_layer;
        const W* s = cache + base + src * s_page;
        W* o = cache + base + dst * s_page;
        const u32 per_kv = heads * rows * dw;
        for (u32 w = threadIdx.x; w < 2u * per_kv; w += blockDim.x) {
            const u32 kv = w >= per_kv ? 1u : 0u;
            const u32 r = w - kv * per_kv;
            const u32 a = r / dw;
            const u32 d = r - a * dw;
            u32 h, t;
            if (token_inner) {
                h = a / rows;
                t = a - h * rows;
            } else {
                t = a / heads;
                h = a - t * heads;
            }
            const i64 off = (i64)kv * s_kv + (i64)h * s_head + (i64)t * s_token + d;
            o[off] = s[off];
        }
    }
}

#define PAGE_COPY(NAME, T)                                                                      \
    extern "C" __global__ void NAME(T* cache, const int* jobs, u32 units, u32 layers, u32 heads, \
                                    u32 dw, u32 token_inner, i64 s_layer, i64 s_page,           \
                                    i64 s_kv, i64 s_head, i64 s_token, u32 word_bytes) {        \
        switch (word_bytes) {                                                                   \
            case 16:                                                                            \
                copy_words<uint4>(cache, jobs, units, layers, heads, dw, token_inner, s_layer,  \
                                  s_page, s_kv, s_head, s_token);                               \
                break;                                                                          \
            case 8:                                                                             \
                copy_words<uint2>(cache, jobs, units, layers, heads, dw, token_inner, s_layer,  \
                                  s_page, s_kv, s_head, s_token);                               \
                break;                                                                          \
            case 4:                                                                             \
                copy_words<unsigned int>(cache, jobs, units, layers, heads, dw, token_inner,    \
                                         s_layer, s_page, s_kv, s_head, s_token);               \
                break;                                                                          \
            default:                                                                            \
                copy_words<unsigned short>(cache, jobs, units, layers, heads, dw, token_inner,  \
                                           s_layer, s_page, s_kv, s_head, s_token);             \
                break;                                                                          \
        }                                                                                       \
    }

PAGE_COPY(page_copy_f32, float)
PAGE_COPY(page_copy_f16, __half)
PAGE_COPY(page_copy_bf16, __nv_bfloat16)
