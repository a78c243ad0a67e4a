// common.cuh — prepended by NVRTC compilation to every kernels/cuda/*.cu file.
//
// Conventions: kernels are `extern "C"` with symbols `{op}_{dtype}`; pointers arrive as raw
// device addresses with element offsets already applied; shapes are validated on the host
// (kernels trust them); accumulation is f32.
//
// Emulation seams (docs/cuda-emu.md): the same text also compiles as host C++ against the
// emulated CUDA device (kernels/emu), where TREEPO_CUDA_EMU is defined and kernels/emu/include
// supplies cuda_fp16.h/cuda_bf16.h. Everything that cannot be plain C++ lives behind that switch
// in exactly two places: the inline PTX of the MMA helpers below and DYNAMIC_SMEM.
//
// Architectures: sm_75 and newer. Tensor-core MMA (mma.sync m16n8k16) needs sm_80; kernels that
// use it test TREEPO_HAS_MMA (below) and run their CUDA-core path with the same launch geometry
// where it is 0.
#define NEG_INF (__int_as_float(0xff800000))
#define POS_INF (__int_as_float(0x7f800000))
#include <cuda_fp16.h>
#include <cuda_bf16.h>

typedef unsigned int u32;
typedef long long i64;

// The kernel's dynamic shared memory (the launch's sharedMemBytes) as `TYPE NAME[]`, 16-byte
// aligned. Under the emulator it is the block's NaN-filled buffer.
#ifndef TREEPO_CUDA_EMU
#define DYNAMIC_SMEM(TYPE, NAME) extern __shared__ __align__(16) TYPE NAME[]
#else
#define DYNAMIC_SMEM(TYPE, NAME) TYPE* NAME = reinterpret_cast<TYPE*>(::emu::dynamic_smem())
#endif

// 1 where mma.sync.aligned.m16n8k16 exists (sm_80+; the emulator implements it), else 0. NVRTC
// compiles device code only, so __CUDA_ARCH__ is always defined there; the emulator's host build
// has no __CUDA_ARCH__. Defined only when not already set, so a build may force the CUDA-core
// paths with -DTREEPO_HAS_MMA=0 (e.g. to exercise them under the emulator).
#ifndef TREEPO_HAS_MMA
#if defined(TREEPO_CUDA_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define TREEPO_HAS_MMA 1
#else
#define TREEPO_HAS_MMA 0
#endif
#endif

// d[0..4) += A(16x16, row) . B(16x8, col) with f32 accumulators: one warp-wide
// mma.sync.aligned.m16n8k16 (every lane of the warp must call it). Fragment layouts of the PTX
// ISA ("Matrix fragments for mma.m16n8k16"), with gid = lane / 4, tig = lane % 4:
//   A: a[0] = (gid, 2tig..+1), a[1] = (gid+8, 2tig..+1), a[2] = (gid, 2tig+8..+9), a[3] = (gid+8, 2tig+8..+9)
//   B: b0 = (k 2tig..+1, n gid), b1 = (k 2tig+8..+9, n gid)
//   C: d[0..1] = (gid, 2tig..+1), d[2..3] = (gid+8, 2tig..+1)
// (each 32-bit register holds two 16-bit elements, the lower column/k in the low half).
// The emulator implements both from the ISA tables (kernels/emu/include/cuda_emu.h). Defined only
// where TREEPO_HAS_MMA is 1: ptxas rejects .m16n8k16 below sm_80.
#if !defined(TREEPO_CUDA_EMU) && TREEPO_HAS_MMA
__device__ __forceinline__ void mma_m16n8k16_f16(float* d, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_m16n8k16_bf16(float* d, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block; every thread gets the result. `scratch` holds >= 32 floats.
// blockDim.x must be a multiple of 32.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// Max over the block; every thread gets the result. Same contract as block_sum.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : NEG_INF;
    return warp_max(v);
}

// Online softmax statistics of a row (softmax.cu, gather_logprob.cu): the running max of the
// scaled logits and the sum of exp(z - max).
struct MaxSum {
    float m;  // running max of z (-inf while empty)
    float s;  // sum of exp(z - m) (0 while empty)
};

// Symmetric in a and b, bit for bit: both products are rounded on their own (__fmul_rn) and
// added with __fadd_rn, so the compiler cannot contract one of them into an FMA (which would
// round a.s * ea and b.s * eb differently and make merge(a, b) != merge(b, a) by an ulp).
__device__ __forceinline__ MaxSum ms_merge(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.m, b.m);
    if (m == NEG_INF) return MaxSum{NEG_INF, 0.0f};
    // An empty side has s = 0 and m = -inf: expf(-inf) = 0, so it contributes 0.
    return MaxSum{m, __fadd_rn(__fmul_rn(a.s, expf(a.m - m)), __fmul_rn(b.s, expf(b.m - m)))};
}

__device__ __forceinline__ void ms_push(MaxSum& st, float z) {
    if (z > st.m) {
        st.s = st.s * expf(st.m - z) + 1.0f;  // empty: 0 * expf(-inf) = 0
        st.m = z;
    } else {
        st.s += expf(z - st.m);
    }
}

// (max, sum) over the block; every thread gets the result. Each butterfly step merges the same
// two states on both partner lanes, in opposite order; ms_merge is symmetric bit for bit, so
// every lane ends with the same s bits and the same m (up to the sign of a zero max, which
// feeds identical exponentials). `sm`, `ss` hold >= 32 floats.
__device__ __forceinline__ MaxSum block_max_sum(MaxSum v, float* sm, float* ss) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        MaxSum w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
        v = ms_merge(v, w);
    }
    __syncthreads();
    if (lane == 0) { sm[warp] = v.m; ss[warp] = v.s; }
    __syncthreads();
    v = lane < nwarps ? MaxSum{sm[lane], ss[lane]} : MaxSum{NEG_INF, 0.0f};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        MaxSum w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
        v = ms_merge(v, w);
    }
    return v;
}

// (max, sum) of the finite scaled logits z = fl(scale * x) of one row, for the whole block;
// (-inf, 0) when every entry is -inf. __fmul_rn keeps NVCC from fusing the scaling into a later
// subtraction, so z is rounded exactly as the CPU reference rounds it.
__device__ __forceinline__ MaxSum row_max_sum(const float* __restrict__ xr, u32 cols, float scale) {
    __shared__ float sm[32], ss[32];
    MaxSum st{NEG_INF, 0.0f};
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        const float v = xr[i];
        if (v != NEG_INF) ms_push(st, __fmul_rn(scale, v));
    }
    return block_max_sum(st, sm, ss);
}

// Ordered key of a float: unsigned order = float order for non-NaN values, with -0 == +0
// (logit_mask.cu's threshold search).
__device__ __forceinline__ u32 ordered_key(float x) {
    u32 b = __float_as_uint(x);
    if (b == 0x80000000u) b = 0u;
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
