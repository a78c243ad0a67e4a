// swiglu.cu — out[i] = silu(gate[i]) * up[i], silu(a) = a / (1 + exp(-a)) (PyTorch's formula, f32).
// Layout: flat arrays of n elements (out may not alias the inputs). Launch: 1-D grid, 256 threads,
// grid-stride loop with a 64-bit index (a 32-bit one wraps when i + stride passes 2^32, for n near
// the u32 limit). expf (not __expf): full accuracy; very negative a gives -0 * up.
extern "C" __global__ void swiglu_f32(const float* __restrict__ gate, const float* __restrict__ up,
                                      float* __restrict__ out, u32 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float a = gate[i];
        out[i] = (a / (1.0f + expf(-a))) * up[i];
    }
}
