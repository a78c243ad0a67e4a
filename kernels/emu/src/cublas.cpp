// cublas.cpp — the stand-in libcublas.so of the emulated CUDA device: the handle calls cudarc
// makes and the GEMMs kernels/src/ops/gemm.rs uses (cublasGemmEx, cublasGemmStridedBatchedEx,
// cublasSgemm_v2), column-major as cuBLAS defines them, computed on the host in f64 and rounded
// once to the output type. As cuBLAS does: argument errors return CUBLAS_STATUS_INVALID_VALUE,
// and C is not read when beta == 0 (a NaN-poisoned C must not leak into the result).
#include <stdint.h>
#include <string.h>

#include <cstdio>
#include <vector>

#include "cuda_emu.h"

#define API extern "C" __attribute__((visibility("default")))

typedef int cublasStatus_t;
enum : int {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum : int { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
enum : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum : int { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };

namespace {
struct Handle {
    void* stream;
    int math_mode;
};

double load(const void* p, int type, size_t i) {
    switch (type) {
        case CUDA_R_32F: return static_cast<const float*>(p)[i];
        case CUDA_R_16F: return emu::f16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
        default: return emu::bf16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
    }
}
void store(void* p, int type, size_t i, double v) {
    switch (type) {
        case CUDA_R_32F: static_cast<float*>(p)[i] = (float)v; break;
        case CUDA_R_16F: static_cast<uint16_t*>(p)[i] = emu::f32_to_f16_bits((float)v); break;
        default: static_cast<uint16_t*>(p)[i] = emu::f32_to_bf16_bits((float)v); break;
    }
}

// C (m x n, ldc) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, column-major.
cublasStatus_t gemm(void* h, int ta, int tb, int m, int n, int k, const float* alpha,
                    const void* A, int at, int lda, long long sa, const void* B, int bt, int ldb,
                    long long sb, const float* beta, void* C, int ct, int ldc, long long sc,
                    int batch, int compute) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    auto ok_type = [](int t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; };
    if (!ok_type(at) || !ok_type(bt) || !ok_type(ct) || at != bt)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    const int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    const double al = *alpha, be = *beta;
    std::vector<double> a((size_t)m * k), b((size_t)k * n);
    for (int z = 0; z < batch; ++z) {
        const size_t ao = (size_t)(z * sa), bo = (size_t)(z * sb), co = (size_t)(z * sc);
        for (int i = 0; i < m; ++i)  // a[i*k + p] = op(A)(i, p)
            for (int p = 0; p < k; ++p)
                a[(size_t)i * k + p] = load(A, at, ao + (ta == CUBLAS_OP_N ? (size_t)i + (size_t)p * lda
                                                                             : (size_t)p + (size_t)i * lda));
        for (int j = 0; j < n; ++j)  // b[j*k + p] = op(B)(p, j)
            for (int p = 0; p < k; ++p)
                b[(size_t)j * k + p] = load(B, bt, bo + (tb == CUBLAS_OP_N ? (size_t)p + (size_t)j * ldb
                                                                             : (size_t)j + (size_t)p * ldb));
        // 4x4 register blocks of dot products over contiguous k (16 independent sums).
        for (int i0 = 0; i0 < m; i0 += 4)
            for (int j0 = 0; j0 < n; j0 += 4) {
                const int im = m - i0 < 4 ? m - i0 : 4, jm = n - j0 < 4 ? n - j0 : 4;
                double acc[4][4] = {};
                const double* ar[4];
                const double* bc[4];
                for (int x = 0; x < 4; ++x) ar[x] = &a[(size_t)(i0 + (x < im ? x : 0)) * k];
                for (int y = 0; y < 4; ++y) bc[y] = &b[(size_t)(j0 + (y < jm ? y : 0)) * k];
                for (int p = 0; p < k; ++p) {
                    const double a0 = ar[0][p], a1 = ar[1][p], a2 = ar[2][p], a3 = ar[3][p];
                    for (int y = 0; y < 4; ++y) {
                        const double bv = bc[y][p];
                        acc[0][y] += a0 * bv;
                        acc[1][y] += a1 * bv;
                        acc[2][y] += a2 * bv;
                        acc[3][y] += a3 * bv;
                    }
                }
                for (int x = 0; x < im; ++x)
                    for (int y = 0; y < jm; ++y) {
                        const size_t ci = co + (size_t)(i0 + x) + (size_t)(j0 + y) * ldc;
                        const double prior = be == 0.0 ? 0.0 : be * load(C, ct, ci);
                        store(C, ct, ci, al * acc[x][y] + prior);
                    }
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

API cublasStatus_t cublasCreate_v2(void** h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new Handle{nullptr, 0};
    return CUBLAS_STATUS_SUCCESS;
}
API cublasStatus_t cublasDestroy_v2(void* h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete static_cast<Handle*>(h);
    return CUBLAS_STATUS_SUCCESS;
}
API cublasStatus_t cublasSetStream_v2(void* h, void* s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    static_cast<Handle*>(h)->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
API cublasStatus_t cublasGetStream_v2(void* h, void** s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    *s = static_cast<Handle*>(h)->stream;
    return CUBLAS_STATUS_SUCCESS;
}
API cublasStatus_t cublasSetMathMode(void* h, int mode) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    static_cast<Handle*>(h)->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}
API cublasStatus_t cublasSetWorkspace_v2(void* h, void*, size_t) {
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
API cublasStatus_t cublasSetPointerMode_v2(void* h, int mode) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    return mode == 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;  // host scalars only
}
API cublasStatus_t cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha,
                                const void* A, int at, int lda, const void* B, int bt, int ldb,
                                const void* beta, void* C, int ct, int ldc, int compute, int) {
    return gemm(h, ta, tb, m, n, k, static_cast<const float*>(alpha), A, at, lda, 0, B, bt, ldb, 0,
                static_cast<const float*>(beta), C, ct, ldc, 0, 1, compute);
}
API cublasStatus_t cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k,
                                              const void* alpha, const void* A, int at, int lda,
                                              long long sa, const void* B, int bt, int ldb,
                                              long long sb, const void* beta, void* C, int ct,
                                              int ldc, long long sc, int batch, int compute, int) {
    return gemm(h, ta, tb, m, n, k, static_cast<const float*>(alpha), A, at, lda, sa, B, bt, ldb, sb,
                static_cast<const float*>(beta), C, ct, ldc, sc, batch, compute);
}
API cublasStatus_t cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha,
                                  const float* A, int lda, const float* B, int ldb,
                                  const float* beta, float* C, int ldc) {
    return gemm(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0, beta, C,
                CUDA_R_32F, ldc, 0, 1, CUBLAS_COMPUTE_32F);
}
