// common.cuh — prepended by NVRTC compilation to every kernels/cuda/*.cu file.
//
// Conventions: kernels are `extern "C"` with symbols `{op}_{dtype}`; pointers arrive as raw
// device addresses with element offsets already applied; shapes are validated on the host
// (kernels trust them); accumulation is f32.
#define NEG_INF (__int_as_float(0xff800000))
#define POS_INF (__int_as_float(0x7f800000))
#include <cuda_fp16.h>
#include <cuda_bf16.h>

typedef unsigned int u32;
typedef long long i64;

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

__device__ __forceinline__ MaxSum ms_merge(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.m, b.m);
    if (m == NEG_INF) return MaxSum{NEG_INF, 0.0f};
    // An empty side has s = 0 and m = -inf: expf(-inf) = 0, so it contributes 0.
    return MaxSum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ void ms_push(MaxSum& st, float z) {
    if (z > st.m) {
        st.s = st.s * expf(st.m - z) + 1.0f;  // empty: 0 * expf(-inf) = 0
        st.m = z;
    } else {
        st.s += expf(z - st.m);
    }
}

// (max, sum) over the block; every thread gets the result (merge is commutative, so the butterfly
// gives every lane the same bits). `sm`, `ss` hold >= 32 floats.
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
