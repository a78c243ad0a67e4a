// decode_tile.cuh — the shared core of paged_decode.cu and tree_decode.cu (prepended to both by
// `cuda::sources`): one CTA attends the query vectors of a contiguous row range — all q heads of
// one KV head (GQA) — to a contiguous range of KV positions held in a page list. The vectors are
// processed in passes (64 vectors on the MMA path, 16 on the SIMT path, below), and each pass
// reads every K/V token of the range once: a job of M vectors reads its K/V ceil(M / pass) times
// (e.g. 4 times for 32 leaves x GQA group 8 = 256 vectors on the MMA path). Host mirror of the
// factor: `decode_geom::cuda_kv_passes` (printed by the tree_decode bench).
//
// Layouts
//   K/V element (page, kv, head, token, d) at kv[page*s_page + kv*s_kv + head*s_head +
//   token*s_token + d] (kv already points at the layer; d contiguous; HND or NHD).
//   q, out        [rows, hq, D]   caller rows (row_to_q maps plan rows; identity when null)
//   partial_o     [P, hq, D] f32, partial_lse [P, hq] f32
//   Query vector m of a job (0 <= m < nrows*group) is row row_begin + m/group, head
//   kvh*group + m%group. Position kv_start + i lives in pages[i >> log2_ps], slot i & (ps-1).
//   A query at position p sees keys at positions <= p (causal) inside [kv_start, kv_end).
//
// Numerics: f32 accumulation; online softmax in base 2 (scores times sm_scale*log2(e)); the LSE
// written out is the NATURAL log (m*ln2 + ln l). A query vector that sees no key of the range
// yields o = 0, lse = -inf (an empty state, a no-op in merge_states).
//
// Launch geometry (both kernels): blockDim = DEC_THREADS (128, 4 warps), one CTA per (job, kv
// head), dynamic shared memory = max of the two paths (host mirror: `decode_geom::smem_bytes`).
// The path is chosen per CTA (block-uniform):
//  * MMA  (f16/bf16, >= 16 query vectors and TREEPO_HAS_MMA, i.e. sm_80+; on sm_75 every CTA
//    takes the SIMT path with the same launch): tensor cores, mma.sync.aligned.m16n8k16 with f32
//    accumulation. Passes of 64 query vectors (warp w owns vectors 16w..16w+15), KV blocks of 32
//    tokens staged in shared memory (K as [32][D+8], V transposed as [D][40]; the +8 padding
//    makes every fragment load bank-conflict free). S = Q·Kᵀ and O += P·V stay in registers
//    (FlashAttention-2 style: the S accumulator fragment is re-packed as the A fragment of P).
//  * SIMT (f32, < 16 query vectors e.g. one leaf, or sm_75): CUDA cores, passes of 16 vectors,
//    KV blocks of 16 tokens converted to f32 in shared memory; one thread per (vector, key) dot
//    product, a warp per vector for the softmax, each thread owns D/8 outputs of the pass.
// Requirements (checked on the host): D in {64, 128}; q, the layer base and all strides are
// 16-byte aligned (vectorized loads).

#define DEC_THREADS 128
#define MMA_Q 64
#define MMA_KB 32
#define SIMT_Q 16
#define SIMT_KB 16
#define DEC_LN2 0.69314718055994531f

struct DecJob {
    const int* pages;           // page id of the job's first position
    int kv_start, kv_end;       // positions [kv_start, kv_end)
    int row_begin, nrows;       // query rows (plan order)
    const int* q_pos;           // position of each plan row; null: implicit (below)
    int last_pos;               // implicit: the job's last row sits at last_pos, rows before it
    const int* row_to_q;        // plan row -> caller row; null: identity
    const int* partial_indptr;  // states of each plan row; null: every row written directly
    int slot;                   // which state of each row this job produces
};

template <typename T>
struct DecArgs {
    const T* q;
    const T* kv;
    i64 s_page, s_kv, s_head, s_token;
    int log2_ps, hq, group;
    float scale_log2;
    float* partial_o;
    float* partial_lse;
    T* out;
    float* lse_out;  // may be null
};

__device__ __forceinline__ int dec_pos(const DecJob& j, int r) {
    return j.q_pos ? j.q_pos[r] : j.last_pos - (j.row_begin + j.nrows - 1 - r);
}

__device__ __forceinline__ int dec_q_row(const DecJob& j, int r) {
    return j.row_to_q ? j.row_to_q[r] : r;
}

// Where the results of plan row r go: the caller row (direct) or a partial-state index.
struct DecDest {
    bool direct;
    i64 idx;
};

__device__ __forceinline__ DecDest dec_dest(const DecJob& j, int r) {
    DecDest d;
    if (j.partial_indptr == nullptr || j.partial_indptr[r + 1] - j.partial_indptr[r] == 1) {
        d.direct = true;
        d.idx = dec_q_row(j, r);
    } else {
        d.direct = false;
        d.idx = (i64)j.partial_indptr[r] + j.slot;
    }
    return d;
}

template <typename T, int D>
__device__ __forceinline__ void dec_store(const DecArgs<T>& a, DecDest ds, int head, int d,
                                          float v) {
    if (ds.direct)
        a.out[(ds.idx * a.hq + head) * D + d] = from_f32<T>(v);
    else
        a.partial_o[(ds.idx * a.hq + head) * D + d] = v;
}

template <typename T>
__device__ __forceinline__ void dec_store_lse(const DecArgs<T>& a, DecDest ds, int head,
                                              float lse) {
    if (ds.direct) {
        if (a.lse_out != nullptr) a.lse_out[ds.idx * a.hq + head] = lse;
    } else {
        a.partial_lse[ds.idx * a.hq + head] = lse;
    }
}

// First element of K (which = 0) or V (which = 1) of position `pos` for KV head kvh.
template <typename T>
__device__ __forceinline__ const T* dec_kv_row(const DecArgs<T>& a, const DecJob& j, int kvh,
                                               int pos, int which) {
    const int rel = pos - j.kv_start;
    const int page = j.pages[rel >> a.log2_ps];
    const int slot = rel & ((1 << a.log2_ps) - 1);
    return a.kv + (i64)page * a.s_page + (i64)which * a.s_kv + (i64)kvh * a.s_head +
           (i64)slot * a.s_token;
}

// Causal limit of query vector m: the last position it sees in this job, or -1 (none).
template <typename T>
__device__ __forceinline__ int dec_lim(const DecArgs<T>& a, const DecJob& j, int m, int M) {
    if (m >= M) return -1;
    return min(dec_pos(j, j.row_begin + m / a.group), j.kv_end - 1);
}

// ---------------------------------------------------------------------------------------------
// SIMT path (CUDA cores).
// ---------------------------------------------------------------------------------------------

// Loads positions [t0, t0 + SIMT_KB) of K or V as f32 into dst[t*ld + d]; zero past kv_hi.
template <typename T, int D>
__device__ __forceinline__ void dec_load_f32(const DecArgs<T>& a, const DecJob& j, int kvh,
                                             int t0, int kv_hi, float* dst, int ld, int which) {
    constexpr int E = 16 / (int)sizeof(T);  // elements per 16-byte vector
    constexpr int VPR = D / E;              // vectors per token row
    for (int c = threadIdx.x; c < SIMT_KB * VPR; c += DEC_THREADS) {
        const int t = c / VPR, part = c % VPR, pos = t0 + t;
        float* d = dst + t * ld + part * E;
        if (pos < kv_hi) {
            const uint4 raw =
                *reinterpret_cast<const uint4*>(dec_kv_row(a, j, kvh, pos, which) + part * E);
            const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
            for (int k = 0; k < E; ++k) d[k] = to_f32(e[k]);
        } else {
#pragma unroll
            for (int k = 0; k < E; ++k) d[k] = 0.0f;
        }
    }
}

template <typename T, int D>
__device__ void dec_simt(const DecArgs<T>& a, const DecJob& j, int kvh, int kv_hi,
                         unsigned char* smem) {
    constexpr int PER = SIMT_Q * D / DEC_THREADS;  // outputs per thread and pass
    float* Qf = reinterpret_cast<float*>(smem);    // [SIMT_Q][D]
    float* Kf = Qf + SIMT_Q * D;                   // [SIMT_KB][D+1] (odd stride: no conflicts)
    float* Vf = Kf + SIMT_KB * (D + 1);            // [SIMT_KB][D]
    float* Sf = Vf + SIMT_KB * D;                  // [SIMT_Q][SIMT_KB] scores, then P
    float* mrun = Sf + SIMT_Q * SIMT_KB;           // running max (base 2)
    float* lrun = mrun + SIMT_Q;                   // running sum
    float* alph = lrun + SIMT_Q;                   // this block's rescale factor
    int* lim = reinterpret_cast<int*>(alph + SIMT_Q);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int M = j.nrows * a.group;
    for (int q0 = 0; q0 < M; q0 += SIMT_Q) {
        __syncthreads();  // the previous pass is done with shared memory
        for (int idx = tid; idx < SIMT_Q * D; idx += DEC_THREADS) {
            const int i = idx / D, d = idx % D, m = q0 + i;
            float v = 0.0f;
            if (m < M) {
                const int r = j.row_begin + m / a.group;
                const int head = kvh * a.group + m % a.group;
                v = to_f32(a.q[((i64)dec_q_row(j, r) * a.hq + head) * D + d]);
            }
            Qf[idx] = v;
        }
        if (tid < SIMT_Q) {
            mrun[tid] = NEG_INF;
            lrun[tid] = 0.0f;
            lim[tid] = dec_lim(a, j, q0 + tid, M);
        }
        float acc[PER];
#pragma unroll
        for (int p = 0; p < PER; ++p) acc[p] = 0.0f;
        for (int t0 = j.kv_start; t0 < kv_hi; t0 += SIMT_KB) {
            __syncthreads();  // previous block consumed; Q/limits visible
            dec_load_f32<T, D>(a, j, kvh, t0, kv_hi, Kf, D + 1, 0);
            dec_load_f32<T, D>(a, j, kvh, t0, kv_hi, Vf, D, 1);
            __syncthreads();
            for (int idx = tid; idx < SIMT_Q * SIMT_KB; idx += DEC_THREADS) {
                const int i = idx / SIMT_KB, t = idx % SIMT_KB;
                const float* qr = Qf + i * D;
                const float* kr = Kf + t * (D + 1);
                float s = 0.0f;
#pragma unroll 16
                for (int d = 0; d < D; ++d) s = fmaf(qr[d], kr[d], s);
                Sf[idx] = (t0 + t <= lim[i]) ? s * a.scale_log2 : NEG_INF;
            }
            __syncthreads();
            for (int i = warp; i < SIMT_Q; i += DEC_THREADS / 32) {
                const float v = lane < SIMT_KB ? Sf[i * SIMT_KB + lane] : NEG_INF;
                const float mold = mrun[i];
                const float mnew = fmaxf(mold, warp_max(v));
                const float base = mnew == NEG_INF ? 0.0f : mnew;  // all masked: keep p = 0
                const float p = exp2f(v - base);
                if (lane < SIMT_KB) Sf[i * SIMT_KB + lane] = p;
                const float sum = warp_sum(p);
                if (lane == 0) {
                    const float al = exp2f(mold - base);
                    alph[i] = al;
                    lrun[i] = lrun[i] * al + sum;
                    mrun[i] = mnew;
                }
            }
            __syncthreads();
#pragma unroll
            for (int p = 0; p < PER; ++p) {
                const int o = tid + p * DEC_THREADS, i = o / D, d = o % D;
                const float* pr = Sf + i * SIMT_KB;
                float x = acc[p] * alph[i];
#pragma unroll
                for (int t = 0; t < SIMT_KB; ++t) x = fmaf(pr[t], Vf[t * D + d], x);
                acc[p] = x;
            }
        }
        __syncthreads();  // lrun/mrun final (also when no block ran)
#pragma unroll
        for (int p = 0; p < PER; ++p) {
            const int o = tid + p * DEC_THREADS, i = o / D, d = o % D, m = q0 + i;
            if (m >= M) continue;
            const int r = j.row_begin + m / a.group, head = kvh * a.group + m % a.group;
            const float l = lrun[i];
            const DecDest ds = dec_dest(j, r);
            dec_store<T, D>(a, ds, head, d, l > 0.0f ? acc[p] / l : 0.0f);
            if (d == 0) dec_store_lse(a, ds, head, l > 0.0f ? mrun[i] * DEC_LN2 + logf(l) : NEG_INF);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MMA path (tensor cores), f16/bf16 only.
// Fragment layouts of mma.m16n8k16 (PTX ISA), lane = 4*gid + tig:
//   A (16x16, row): reg0 = (gid, 2tig..+1), reg1 = (gid+8, 2tig..), reg2 = (gid, 2tig+8..),
//                   reg3 = (gid+8, 2tig+8..)         [low half = lower column]
//   B (16x8, col):  reg0 = (k 2tig..+1, n gid), reg1 = (k 2tig+8..+9, n gid)
//   C (16x8, f32):  c0,c1 = (gid, 2tig..+1), c2,c3 = (gid+8, 2tig..+1)
// ---------------------------------------------------------------------------------------------

// `ok`: whether the MMA path exists for T on this target (f16/bf16 with TREEPO_HAS_MMA). When
// it is false dec_mma<T, D> is never instantiated (dec_run's `if constexpr`).
template <typename T>
struct DecMma {
    static constexpr bool ok = false;
};

template <>
struct DecMma<__half> {
    static constexpr bool ok = TREEPO_HAS_MMA;
#if TREEPO_HAS_MMA
    static __device__ __forceinline__ void mma(float* c, const u32* a, u32 b0, u32 b1) {
        mma_m16n8k16_f16(c, a, b0, b1);
    }
#endif
    static __device__ __forceinline__ u32 pack(float lo, float hi) {
        union {
            __half2 h;
            u32 u;
        } c;
        c.h = __floats2half2_rn(lo, hi);
        return c.u;
    }
};

template <>
struct DecMma<__nv_bfloat16> {
    static constexpr bool ok = TREEPO_HAS_MMA;
#if TREEPO_HAS_MMA
    static __device__ __forceinline__ void mma(float* c, const u32* a, u32 b0, u32 b1) {
        mma_m16n8k16_bf16(c, a, b0, b1);
    }
#endif
    static __device__ __forceinline__ u32 pack(float lo, float hi) {
        union {
            __nv_bfloat162 h;
            u32 u;
        } c;
        c.h = __floats2bfloat162_rn(lo, hi);
        return c.u;
    }
};

template <typename T>
__device__ __forceinline__ u32 dec_ld32(const T* p) {
    return *reinterpret_cast<const u32*>(p);
}

template <typename T, int D>
__device__ void dec_mma(const DecArgs<T>& a, const DecJob& j, int kvh, int kv_hi,
                        unsigned char* smem) {
    using Ops = DecMma<T>;
    constexpr int QLD = D + 8;       // row stride (elements) of Qs and Ks
    constexpr int VLD = MMA_KB + 8;  // row stride of Vt
    constexpr int E = 8;             // 16-bit elements per 16-byte vector
    constexpr int VPR = D / E;
    constexpr int NT = MMA_KB / 8;   // n-tiles of S per block
    T* Qs = reinterpret_cast<T*>(smem);  // [MMA_Q][QLD]
    T* Ks = Qs + MMA_Q * QLD;            // [MMA_KB][QLD]
    T* Vt = Ks + MMA_KB * QLD;           // [D][VLD]  (V transposed)
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gid = lane >> 2, tig = lane & 3;
    const int M = j.nrows * a.group;
    for (int q0 = 0; q0 < M; q0 += MMA_Q) {
        __syncthreads();  // the previous pass is done with shared memory
        for (int c = tid; c < MMA_Q * VPR; c += DEC_THREADS) {
            const int i = c / VPR, part = c % VPR, m = q0 + i;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (m < M) {
                const int r = j.row_begin + m / a.group;
                const int head = kvh * a.group + m % a.group;
                v = *reinterpret_cast<const uint4*>(
                    a.q + ((i64)dec_q_row(j, r) * a.hq + head) * D + part * E);
            }
            *reinterpret_cast<uint4*>(Qs + i * QLD + part * E) = v;
        }
        __syncthreads();
        const int wm = warp * 16;            // this warp's first vector in the pass
        const bool active = q0 + wm < M;     // warp-uniform
        u32 qa[D / 16][4];
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
            const T* r0 = Qs + (wm + gid) * QLD + ks * 16 + tig * 2;
            const T* r1 = r0 + 8 * QLD;
            qa[ks][0] = dec_ld32(r0);
            qa[ks][1] = dec_ld32(r1);
            qa[ks][2] = dec_ld32(r0 + 8);
            qa[ks][3] = dec_ld32(r1 + 8);
        }
        int lim[2];
        lim[0] = dec_lim(a, j, q0 + wm + gid, M);
        lim[1] = dec_lim(a, j, q0 + wm + gid + 8, M);
        float o[D / 8][4];
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
        float mrun[2] = {NEG_INF, NEG_INF}, lrun[2] = {0.0f, 0.0f};  // lrun: this thread's part
        for (int t0 = j.kv_start; t0 < kv_hi; t0 += MMA_KB) {
            __syncthreads();  // every warp is done with the previous Ks/Vt
            for (int c = tid; c < MMA_KB * VPR; c += DEC_THREADS) {
                const int t = c / VPR, part = c % VPR, pos = t0 + t;
                uint4 k4 = make_uint4(0u, 0u, 0u, 0u), v4 = make_uint4(0u, 0u, 0u, 0u);
                if (pos < kv_hi) {
                    k4 = *reinterpret_cast<const uint4*>(dec_kv_row(a, j, kvh, pos, 0) + part * E);
                    v4 = *reinterpret_cast<const uint4*>(dec_kv_row(a, j, kvh, pos, 1) + part * E);
                }
                *reinterpret_cast<uint4*>(Ks + t * QLD + part * E) = k4;
                const T* ve = reinterpret_cast<const T*>(&v4);
#pragma unroll
                for (int k = 0; k < E; ++k) Vt[(part * E + k) * VLD + t] = ve[k];
            }
            __syncthreads();
            if (!active) continue;
            float s[NT][4];
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
                const T* kr = Ks + (nt * 8 + gid) * QLD + tig * 2;
#pragma unroll
                for (int ks = 0; ks < D / 16; ++ks)
                    Ops::mma(s[nt], qa[ks], dec_ld32(kr + ks * 16), dec_ld32(kr + ks * 16 + 8));
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int pos = t0 + nt * 8 + tig * 2 + (e & 1);
                    s[nt][e] = pos <= lim[e >> 1] ? s[nt][e] * a.scale_log2 : NEG_INF;
                }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float mx = NEG_INF;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mnew = fmaxf(mrun[h], mx);
                const float base = mnew == NEG_INF ? 0.0f : mnew;
                const float al = exp2f(mrun[h] - base);
                mrun[h] = mnew;
                float sum = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e2 = 0; e2 < 2; ++e2) {
                        const float p = exp2f(s[nt][2 * h + e2] - base);
                        s[nt][2 * h + e2] = p;
                        sum += p;
                    }
                lrun[h] = lrun[h] * al + sum;
#pragma unroll
                for (int dt = 0; dt < D / 8; ++dt) {
                    o[dt][2 * h] *= al;
                    o[dt][2 * h + 1] *= al;
                }
            }
#pragma unroll
            for (int kk = 0; kk < MMA_KB / 16; ++kk) {
                u32 pa[4];
                pa[0] = Ops::pack(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = Ops::pack(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = Ops::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = Ops::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int dt = 0; dt < D / 8; ++dt) {
                    const T* vr = Vt + (dt * 8 + gid) * VLD + kk * 16 + tig * 2;
                    Ops::mma(o[dt], pa, dec_ld32(vr), dec_ld32(vr + 8));
                }
            }
        }
        if (active) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float l = lrun[h];
                l += __shfl_xor_sync(0xffffffffu, l, 1);
                l += __shfl_xor_sync(0xffffffffu, l, 2);
                const int m = q0 + wm + gid + 8 * h;
                if (m >= M) continue;
                const int r = j.row_begin + m / a.group, head = kvh * a.group + m % a.group;
                const DecDest ds = dec_dest(j, r);
                const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
                for (int dt = 0; dt < D / 8; ++dt) {
                    dec_store<T, D>(a, ds, head, dt * 8 + tig * 2, o[dt][2 * h] * inv);
                    dec_store<T, D>(a, ds, head, dt * 8 + tig * 2 + 1, o[dt][2 * h + 1] * inv);
                }
                if (tig == 0)
                    dec_store_lse(a, ds, head, l > 0.0f ? mrun[h] * DEC_LN2 + logf(l) : NEG_INF);
            }
        }
    }
}

// Runs one job: the causal cut-off, then the MMA or SIMT path. Every thread of the CTA calls
// this with the same job (block-uniform); `s_max` is a shared int.
template <typename T, int D>
__device__ void dec_run(const DecArgs<T>& a, const DecJob& j, int kvh, unsigned char* smem,
                        int* s_max) {
    // Positions past the last row's position are masked for every row: stop there.
    if (threadIdx.x == 0) *s_max = -1;
    __syncthreads();
    int mx = -1;
    for (int i = threadIdx.x; i < j.nrows; i += DEC_THREADS) mx = max(mx, dec_pos(j, j.row_begin + i));
    atomicMax(s_max, mx);
    __syncthreads();
    const int kv_hi = max(j.kv_start, min(j.kv_end, *s_max + 1));
    if constexpr (DecMma<T>::ok) {
        if (j.nrows * a.group >= 16) {
            dec_mma<T, D>(a, j, kvh, kv_hi, smem);
            return;
        }
    }
    dec_simt<T, D>(a, j, kvh, kv_hi, smem);
}
