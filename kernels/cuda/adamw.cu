// adamw.cu — one AdamW step with decoupled weight decay, in place:
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  m̂ = m·inv_bc1;  v̂ = v·inv_bc2
//   θ −= lr·(m̂/(√v̂ + ε) + wd·θ·[decay == 1])
// inv_bc1 = 1/(1−β1^t), inv_bc2 = 1/(1−β2^t) are computed in f64 on the host. The decay term
// uses θ before the update (PyTorch's AdamW); elements whose mask is not exactly 1.0 are not
// decayed (a select, not a multiply, so a non-finite θ is never multiplied by 0).
// Layout: params, grads, m, v, decay: flat arrays of n elements.
// Launch: 1-D grid of 256-thread blocks, grid-stride loop.
extern "C" __global__ void adamw_f32(float* __restrict__ params, const float* __restrict__ grads,
                                     float* __restrict__ m, float* __restrict__ v,
                                     const float* __restrict__ decay, u32 n, float lr,
                                     float beta1, float beta2, float eps, float wd,
                                     float inv_bc1, float inv_bc2) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = grads[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * (g * g);
        m[i] = mi;
        v[i] = vi;
        const float p = params[i];
        const float mhat = mi * inv_bc1, vhat = vi * inv_bc2;
        float upd = mhat / (sqrtf(vhat) + eps);
        if (decay[i] == 1.0f) upd += wd * p;
        params[i] = p - lr * upd;
    }
}
