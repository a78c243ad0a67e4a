// gather_logprob.cu — out[r] = log_softmax(scale * x[r])[tokens[r]] and, when entropy is non-null,
// entropy[r] = -sum p log p (0 log 0 = 0), with the numerics of softmax.cu: z = fl(scale * x),
// m = max z, S = sum exp(z - m); log p_tok = (z_tok - m) - log S; H = log S - sum_{e>0} e (z - m) / S.
// A masked (-inf) token gives -inf; a token outside [0, cols) (the -1 of an empty draw) or a row
// of only -inf gives NaN.
// Layout: x [rows, cols]; tokens [rows] i32; out, entropy [rows].
// Launch: one block per row, 1024 threads: one online (max, sum) pass (common.cuh), a second
// pass for the entropy only when asked.
extern "C" __global__ void gather_logprob_f32(const float* __restrict__ x,
                                              const int* __restrict__ tokens,
                                              float* __restrict__ out, float* __restrict__ entropy,
                                              u32 rows, u32 cols, float scale) {
    __shared__ float scratch[32];
    const u32 row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (i64)row * cols;
    const MaxSum st = row_max_sum(xr, cols, scale);
    const float qnan = __int_as_float(0x7fc00000);
    if (st.m == NEG_INF) {
        if (threadIdx.x == 0) {
            out[row] = qnan;
            if (entropy != nullptr) entropy[row] = qnan;
        }
        return;
    }
    const float log_s = logf(st.s);
    if (entropy != nullptr) {
        float a = 0.0f;
        for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
            const float v = xr[i];
            if (v != NEG_INF) {
                const float z = __fmul_rn(scale, v) - st.m;
                const float e = expf(z);
                if (e > 0.0f) a += e * z;
            }
        }
        a = block_sum(a, scratch);
        if (threadIdx.x == 0) entropy[row] = log_s - a / st.s;
    }
    if (threadIdx.x == 0) {
        const int tok = tokens[row];
        float lp = qnan;
        if (tok >= 0 && (u32)tok < cols) {
            const float v = xr[tok];
            lp = v == NEG_INF ? NEG_INF : (__fmul_rn(scale, v) - st.m) - log_s;
        }
        out[row] = lp;
    }
}
