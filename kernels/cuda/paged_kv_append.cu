// paged_kv_append.cu — write the K and V rows of N new tokens into their page slots, one layer
// per launch (vLLM `reshape_and_cache`, FlashInfer `append_paged_kv_cache`).
//
// Layout (ops::PagedKvLayout), `cache` already pointing at the layer: element
// (page, kv, head, row, d) lives at page*s_page + kv*s_kv + head*s_head + row*s_token + d.
// Sources: token i, head h of k (v) starts at i*s_src + h*dw; s_src > H*dw lets a fused QKV
// projection output be appended in place. slots [N] int32: slot = page*page_size + row, checked
// on the host to be < num_pages*page_size (page_size = 1 << page_shift, page_mask = page_size-1).
//
// A pure copy: the kernel moves W-byte words, W in {2, 4, 8, 16} bytes, the largest size the
// host found dividing every base address, every stride and the head row length in bytes; all
// strides and `dw` (words per head row) arrive in words. The three dtype symbols share one body.
// Launch: grid (N), one block per token; blockDim a multiple of 32 (<= 256) looping over the
// token's 2*H*dw words (K words first, then V; heads outer, words inner: coalesced).

template <typename W>
__device__ __forceinline__ void append_words(const void* k_, const void* v_, void* cache_,
                                             const int* __restrict__ slots, u32 n, u32 heads,
                                             u32 dw, u32 page_shift, u32 page_mask, i64 s_page,
                                             i64 s_kv, i64 s_head, i64 s_token, i64 s_src) {
    const u32 t = blockIdx.x;
    if (t >= n) return;
    const W* k = static_cast<const W*>(k_);
    const W* v = static_cast<const W*>(v_);
    W* cache = static_cast<W*>(cache_);
    const u32 slot = (u32)slots[t];
    const i64 page = (i64)(slot >> page_shift);
    const i64 row = (i64)(slot & page_mask);
    W* dst = cache + page * s_page + row * s_token;
    const i64 src = (i64)t * s_src;
    const u32 per_kv = heads * dw;
    for (u32 w = threadIdx.x; w < 2u * per_kv; w += blockDim.x) {
        const u32 kv = w >= per_kv ? 1u : 0u;
        const u32 r = w - kv * per_kv;
        const u32 h = r / dw;
        const u32 d = r - h * dw;
        const W x = (kv ? v : k)[src + (i64)h * dw + d];
        dst[(i64)kv * s_kv + (i64)h * s_head + d] = x;
    }
}

#define PAGED_KV_APPEND(NAME, T)                                                               \
    extern "C" __global__ void NAME(const T* k, const T* v, T* cache, const int* slots, u32 n, \
                                    u32 heads, u32 dw, u32 page_shift, u32 page_mask,          \
                                    i64 s_page, i64 s_kv, i64 s_head, i64 s_token, i64 s_src,  \
                                    u32 word_bytes) {                                          \
        switch (word_bytes) {                                                                  \
            case 16:                                                                           \
                append_words<uint4>(k, v, cache, slots, n, heads, dw, page_shift, page_mask,   \
                                    s_page, s_kv, s_head, s_token, s_src);                     \
                break;                                                                         \
            case 8:                                                                            \
                append_words<uint2>(k, v, cache, slots, n, heads, dw, page_shift, page_mask,   \
                                    s_page, s_kv, s_head, s_token, s_src);                     \
                break;                                                                         \
            case 4:                                                                            \
                append_words<unsigned int>(k, v, cache, slots, n, heads, dw, page_shift,       \
                                           page_mask, s_page, s_kv, s_head, s_token, s_src);   \
                break;                                                                         \
            default:                                                                           \
                append_words<unsigned short>(k, v, cache, slots, n, heads, dw, page_shift,     \
                                             page_mask, s_page, s_kv, s_head, s_token, s_src); \
                break;                                                                         \
        }                                                                                      \
    }

PAGED_KV_APPEND(paged_kv_append_f32, float)
PAGED_KV_APPEND(paged_kv_append_f16, __half)
PAGED_KV_APPEND(paged_kv_append_bf16, __nv_bfloat16)
