// cuda_emu.h — the CUDA device language as host C++, for the emulated CUDA device.
//
// The kernels in kernels/cuda/*.cu compile unchanged against this header (g++ -std=c++17
// -DTREEPO_CUDA_EMU, with kernels/emu/include on the include path so <cuda_fp16.h> and
// <cuda_bf16.h> resolve here). Every CUDA thread runs the kernel body as an ordinary C++ function
// on its own stack: a cooperative fiber (the default, deterministic) or an OS thread (builds
// with TREEPO_EMU_THREADS: `scripts/cuda-emu.sh --schedule threads` and the sanitizer builds).
// Whatever
// needs more than one thread — __syncthreads*, warp shuffles/votes, __syncwarp and
// mma.sync.m16n8k16 — is a *collective*: the calling thread parks until every participant has
// arrived, then the runtime (kernels/emu/src/runtime.cpp) computes all results at once.
//
// What this models faithfully: thread/block indexing; barrier and warp-collective semantics
// with their masks (a collective that not every participant reaches is reported, not hung);
// mma.m16n8k16 fragment layouts from the PTX ISA tables; f16/bf16 conversions bit-exact with
// Rust's `half` crate; dynamic shared memory filled with NaN bytes before each block.
// What it cannot: the memory model (fibers interleave only at collectives), timing, tensor-core
// rounding (products are exact, the sum is done in f64 and rounded once), fast-math intrinsics
// (__expf is expf), FMA contraction (host code is compiled with -ffp-contract=off).
// The contract of the seams in the kernel sources is in docs/cuda-emu.md.
#pragma once
#ifndef TREEPO_CUDA_EMU
#define TREEPO_CUDA_EMU 1
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

// ------------------------------------------------------------------ built-in vector types
struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// ------------------------------------------------------------------ runtime interface
namespace emu {

// The state of the CUDA thread running on this OS thread (set by the scheduler at every switch).
struct ThreadCtx {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    unsigned tid;   // linear thread index in the block
    void* block;    // the runtime's block state
};
extern thread_local ThreadCtx* t_cur;

// Warp collective kinds (runtime.cpp resolves them).
enum Kind : int {
    SHFL_IDX = 0,
    SHFL_UP,
    SHFL_DOWN,
    SHFL_XOR,
    VOTE_BALLOT,
    VOTE_ANY,
    VOTE_ALL,
    SYNCWARP,
    MMA_F16,
    MMA_BF16,
};
// Block barrier kinds.
enum Bar : int { BAR_SYNC = 0, BAR_COUNT, BAR_OR, BAR_AND };

// Operands of one lane's mma.m16n8k16 (the lane's own registers).
struct MmaLane {
    float* d;
    const unsigned* a;
    unsigned b0, b1;
};

// Parks the calling lane at a warp collective over `mask` until every lane of the mask has
// arrived; returns this lane's result. `value` is the lane's 64-bit operand, `arg` the lane's
// source lane / delta / lane mask, `width` the shuffle segment, `ptr` kind-specific (MmaLane*).
uint64_t warp_op(int kind, unsigned mask, uint64_t value, int arg, int width, void* ptr,
                 const char* file, int line);
// Parks the calling thread at the block barrier; returns the count/or/and of `pred` over the
// block for BAR_COUNT/OR/AND.
int block_barrier(int kind, int pred, const char* file, int line);
// The block's dynamic shared memory (sharedMemBytes of the launch, NaN-filled before the block).
void* dynamic_smem();
// __trap(): aborts the launch with an error naming the site.
[[noreturn]] void trap(const char* file, int line);

template <typename T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle operands are at most 64 bits");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof(T));
    return u;
}
template <typename T>
inline T from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof(T));
    return v;
}
template <typename T>
inline T shfl(int kind, const char* f, int l, unsigned mask, T v, int arg, int width = 32) {
    return from_bits<T>(warp_op(kind, mask, to_bits(v), arg, width, nullptr, f, l));
}
inline unsigned vote(int kind, const char* f, int l, unsigned mask, int pred) {
    return (unsigned)warp_op(kind, mask, pred != 0, 0, 32, nullptr, f, l);
}
inline void mma(int kind, float* d, const unsigned* a, unsigned b0, unsigned b1, const char* f,
                int l) {
    MmaLane op{d, a, b0, b1};
    warp_op(kind, 0xffffffffu, 0, 0, 32, &op, f, l);
}

}  // namespace emu

// ------------------------------------------------------------------ the device language
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Static shared memory: one copy per kernel variable and per OS thread that runs blocks. Fiber
// builds run blocks in parallel on worker threads, one block per worker at a time, so a
// `static thread_local` is exactly one block's shared memory; builds with one OS thread per CUDA
// thread (TREEPO_EMU_THREADS, the sanitizer builds) run blocks one after another and share a
// plain `static`. Static shared memory is not poisoned: only dynamic shared memory is NaN-filled.
#if defined(TREEPO_EMU_THREADS)
#define __shared__ static
#else
#define __shared__ static thread_local
#endif
#define __constant__ static

#define threadIdx (::emu::t_cur->thread_idx)
#define blockIdx (::emu::t_cur->block_idx)
#define blockDim (::emu::t_cur->block_dim)
#define gridDim (::emu::t_cur->grid_dim)
#define warpSize 32

#define __syncthreads() ((void)::emu::block_barrier(::emu::BAR_SYNC, 1, __FILE__, __LINE__))
#define __syncthreads_count(p) ::emu::block_barrier(::emu::BAR_COUNT, (p), __FILE__, __LINE__)
#define __syncthreads_or(p) ::emu::block_barrier(::emu::BAR_OR, (p), __FILE__, __LINE__)
#define __syncthreads_and(p) ::emu::block_barrier(::emu::BAR_AND, (p), __FILE__, __LINE__)
#define __syncwarp(...) ::emu::syncwarp_(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) ::emu::shfl(::emu::SHFL_IDX, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::emu::shfl(::emu::SHFL_UP, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::emu::shfl(::emu::SHFL_DOWN, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::emu::shfl(::emu::SHFL_XOR, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(m, p) ::emu::vote(::emu::VOTE_BALLOT, __FILE__, __LINE__, (m), (p))
#define __any_sync(m, p) ((int)::emu::vote(::emu::VOTE_ANY, __FILE__, __LINE__, (m), (p)))
#define __all_sync(m, p) ((int)::emu::vote(::emu::VOTE_ALL, __FILE__, __LINE__, (m), (p)))
#define __trap() ::emu::trap(__FILE__, __LINE__)
// The named tensor-core helpers of common.cuh (their PTX versions are compiled out here).
#define mma_m16n8k16_f16(d, a, b0, b1) ::emu::mma(::emu::MMA_F16, (d), (a), (b0), (b1), __FILE__, __LINE__)
#define mma_m16n8k16_bf16(d, a, b0, b1) ::emu::mma(::emu::MMA_BF16, (d), (a), (b0), (b1), __FILE__, __LINE__)

namespace emu {
inline void syncwarp_(const char* f, int l, unsigned mask = 0xffffffffu) {
    warp_op(SYNCWARP, mask, 0, 0, 32, nullptr, f, l);
}
}  // namespace emu

// ------------------------------------------------------------------ 16-bit floats
// Storage-only types; conversions round to nearest even exactly as Rust's `half` 2.x does
// (NaN keeps its sign and top payload bits and gets the quiet bit).
struct __half { unsigned short __x; };
struct __half2 { __half x, y; };
struct __nv_bfloat16 { unsigned short __x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __half half;
typedef __half2 half2;

namespace emu {
inline float f16_bits_to_f32(unsigned short h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {  // infinity, or NaN with the quiet bit set (as `half` does)
        bits = sign | 0x7f800000u | (man != 0 ? 0x00400000u : 0u) | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                ++e;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
inline unsigned short f32_to_f16_bits(float value) {
    uint32_t x;
    memcpy(&x, &value, 4);
    const uint32_t sign = x & 0x80000000u, exp = x & 0x7f800000u, man = x & 0x007fffffu;
    if (exp == 0x7f800000u) {
        const uint32_t nan_bit = man == 0 ? 0u : 0x0200u;
        return (unsigned short)((sign >> 16) | 0x7c00u | nan_bit | (man >> 13));
    }
    const uint32_t half_sign = sign >> 16;
    const int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1f) return (unsigned short)(half_sign | 0x7c00u);
    if (half_exp <= 0) {
        if (14 - half_exp > 24) return (unsigned short)half_sign;
        const uint32_t m = man | 0x00800000u;
        uint32_t half_man = m >> (14 - half_exp);
        const uint32_t round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) != 0 && (m & (3 * round_bit - 1)) != 0) half_man += 1;
        return (unsigned short)(half_sign | half_man);
    }
    const uint32_t hb = half_sign | ((uint32_t)half_exp << 10) | (man >> 13);
    const uint32_t round_bit = 0x00001000u;
    if ((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) return (unsigned short)(hb + 1);
    return (unsigned short)hb;
}
inline float bf16_bits_to_f32(unsigned short h) {
    // NaN gets the quiet bit, as `half` does.
    const uint32_t bits = (uint32_t)((h & 0x7fffu) > 0x7f80u ? (h | 0x0040u) : h) << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
inline unsigned short f32_to_bf16_bits(float value) {
    uint32_t x;
    memcpy(&x, &value, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x0040u);
    const uint32_t round_bit = 0x00008000u;
    if ((x & round_bit) != 0 && (x & (3 * round_bit - 1)) != 0)
        return (unsigned short)((x >> 16) + 1);
    return (unsigned short)(x >> 16);
}
}  // namespace emu

inline float __half2float(__half h) { return emu::f16_bits_to_f32(h.__x); }
inline __half __float2half_rn(float f) { return __half{emu::f32_to_f16_bits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return emu::bf16_bits_to_f32(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{emu::f32_to_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline __half2 __floats2half2_rn(float lo, float hi) {
    return __half2{__float2half_rn(lo), __float2half_rn(hi)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }

// ------------------------------------------------------------------ math and bit intrinsics
// Correctly rounded single operations (host code is built with -ffp-contract=off, so these are
// never fused with a neighbour, as on the GPU).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
// Fast-math intrinsics: the accurate function (the GPU's approximation is not modelled).
inline float __expf(float x) { return expf(x); }
inline float __exp2f(float x) { return exp2f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x != x ? 0.0f : x)); }

inline float __int_as_float(int i) { return emu::from_bits<float>((uint32_t)i); }
inline float __uint_as_float(unsigned i) { return emu::from_bits<float>(i); }
inline int __float_as_int(float f) { return (int)(uint32_t)emu::to_bits(f); }
inline unsigned __float_as_uint(float f) { return (uint32_t)emu::to_bits(f); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
template <typename T>
inline T __ldg(const T* p) { return *p; }

// CUDA's min/max: overloads for every arithmetic pair (usual conversions; floats as fminf/fmaxf).
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
template <typename A, typename B, typename C = typename std::common_type<A, B>::type,
          typename = typename std::enable_if<std::is_integral<C>::value>::type>
inline C min(A a, B b) { return (C)a < (C)b ? (C)a : (C)b; }
template <typename A, typename B, typename C = typename std::common_type<A, B>::type,
          typename = typename std::enable_if<std::is_integral<C>::value>::type>
inline C max(A a, B b) { return (C)a > (C)b ? (C)a : (C)b; }

// ------------------------------------------------------------------ atomics
// Sequentially consistent host atomics: exact under fibers, visible to ThreadSanitizer under
// OS threads.
template <typename T>
inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline float atomicAdd(float* p, float v) {
    uint32_t* u = reinterpret_cast<uint32_t*>(p);
    uint32_t old = __atomic_load_n(u, __ATOMIC_SEQ_CST), upd;
    do {
        upd = __float_as_uint(__uint_as_float(old) + v);
    } while (!__atomic_compare_exchange_n(u, &old, upd, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return __uint_as_float(old);
}
template <typename T>
inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <typename T>
inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
template <typename T>
inline T atomicCAS(T* p, T cmp, T v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
template <typename T>
inline T atomicMax(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    return old;
}
template <typename T>
inline T atomicMin(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    return old;
}
template <typename T>
inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
template <typename T>
inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ------------------------------------------------------------------ kernel registration
namespace emu {
// A host-compiled kernel: its name (the cubin symbol), a type-erased pointer and the thunk that
// unpacks cuLaunchKernel's `kernelParams` (one pointer per parameter) into a call.
struct KernelInfo {
    const char* name;
    void* fn;
    void (*thunk)(void* fn, void** params);
    unsigned nparams;
    uint64_t ptr_mask;  // bit i: parameter i is a pointer (checked against allocations)
};
void register_kernel(const KernelInfo& k);

template <typename... A, size_t... I>
inline void call_with(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<typename std::remove_cv<A>::type*>(p[I])...);
}
template <typename... A>
inline void thunk_for(void* fn, void** p) {
    call_with(reinterpret_cast<void (*)(A...)>(fn), p, std::index_sequence_for<A...>{});
}
template <typename... A>
constexpr uint64_t ptr_mask_of() {
    const bool is_ptr[] = {false, std::is_pointer<A>::value...};
    uint64_t m = 0;
    for (unsigned i = 1; i < sizeof...(A) + 1 && i <= 64; ++i)
        if (is_ptr[i]) m |= 1ull << (i - 1);
    return m;
}
struct Registrar {
    template <typename... A>
    Registrar(const char* name, void (*f)(A...)) {
        register_kernel(KernelInfo{name, reinterpret_cast<void*>(f), &thunk_for<A...>,
                                   (unsigned)sizeof...(A),
                                   ptr_mask_of<A...>()});
    }
};
}  // namespace emu
#define TREEPO_EMU_REGISTER(NAME) static ::emu::Registrar treepo_emu_reg_##NAME(#NAME, &NAME);
