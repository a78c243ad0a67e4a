/*
 * Tree decode through the C API on a CUDA device, on memory this program allocates itself
 * with the CUDA driver API and on its own stream: the same forest and reference as
 * tree_decode.c. Link with -lcuda. Runs on a GPU or on the project's emulated CUDA device:
 *
 *   TREEPO_C_CUDA=1 scripts/c-example.sh
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "example_forest.h"
#include "treepo.h"

/* The few driver API declarations used (the real <cuda.h> is used when it is installed). */
#if defined(__has_include)
#if __has_include(<cuda.h>)
#include <cuda.h>
#define HAVE_CUDA_H 1
#endif
#endif
#ifndef HAVE_CUDA_H
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;
#define CU_STREAM_NON_BLOCKING 0x1
CUresult cuInit(unsigned int flags);
CUresult cuDeviceGet(CUdevice *device, int ordinal);
CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev);
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev);
CUresult cuCtxSetCurrent(CUcontext ctx);
CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes);
CUresult cuMemFree_v2(CUdeviceptr dptr);
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes);
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes);
CUresult cuStreamCreate(CUstream *stream, unsigned int flags);
CUresult cuStreamSynchronize(CUstream stream);
CUresult cuStreamDestroy_v2(CUstream stream);
CUresult cuGetErrorString(CUresult error, const char **str);
#endif

#define CU(call)                                                                        \
    do {                                                                                \
        CUresult r_ = (call);                                                           \
        if (r_ != 0) {                                                                  \
            const char *s_ = "?";                                                       \
            cuGetErrorString(r_, &s_);                                                  \
            fprintf(stderr, "%s:%d: %s failed: %d %s\n", __FILE__, __LINE__, #call, (int)r_, s_); \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* A device allocation of `bytes`, optionally filled from `host`. */
static CUdeviceptr device_alloc(size_t bytes, const void *host) {
    CUdeviceptr p = 0;
    CU(cuMemAlloc_v2(&p, bytes));
    if (host) CU(cuMemcpyHtoD_v2(p, host, bytes));
    return p;
}

/* treepo takes device pointers as void* (what cudaMalloc or torch's data_ptr give). */
#define DPTR(p) ((void *)(uintptr_t)(p))

int main(void) {
    /* The application owns the context (the device's primary context) and a stream. */
    CUdevice cu_dev;
    CUcontext ctx;
    CUstream stream;
    CU(cuInit(0));
    CU(cuDeviceGet(&cu_dev, 0));
    CU(cuDevicePrimaryCtxRetain(&ctx, cu_dev));
    CU(cuCtxSetCurrent(ctx));
    CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));

    printf("treepo %s, CUDA device 0 on the caller's stream\n", treepo_version());
    TreepoDevice *base = NULL, *dev = NULL;
    TreepoDecoder *dec = NULL;
    CHECK(treepo_device_cuda(0, &base));
    CHECK(treepo_device_with_cuda_stream(base, stream, &dev));
    treepo_device_free(base); /* dev keeps the context and kernels alive */
    CHECK(treepo_decoder_new(&dec));

    TreepoKvLayout layout;
    size_t kv_len = 0;
    CHECK(treepo_kv_layout(TREEPO_KV_LAYOUT_KIND_NHD, LAYERS, PAGES, KV_HEADS, PAGE_SIZE, HEAD_DIM,
                           &layout));
    CHECK(treepo_kv_layout_required_len(&layout, &kv_len));
    size_t rows = total_rows();
    size_t q_len = rows * QO_HEADS * HEAD_DIM, lse_len = rows * QO_HEADS;
    float *kv = malloc(kv_len * sizeof(float));
    float *q = malloc(q_len * sizeof(float));
    float *out = malloc(q_len * sizeof(float));
    float *lse = malloc(lse_len * sizeof(float));
    if (!kv || !q || !out || !lse) return 1;
    fill(kv, kv_len, 1);
    fill(q, q_len, 2);
    CUdeviceptr d_kv = device_alloc(kv_len * sizeof(float), kv);
    CUdeviceptr d_q = device_alloc(q_len * sizeof(float), q);
    CUdeviceptr d_out = device_alloc(q_len * sizeof(float), NULL);
    CUdeviceptr d_lse = device_alloc(lse_len * sizeof(float), NULL);
    const float sm_scale = 1.0f / sqrtf((float)HEAD_DIM);

    /* Plan once (host tables are copied), run: the work is enqueued on `stream`. */
    CHECK(treepo_decoder_plan(dec, dev, INDPTR, BATCH, INDICES, 15, LAST_PAGE_LEN, Q_ROWS, QO_HEADS,
                              KV_HEADS, HEAD_DIM, PAGE_SIZE, PAGES, TREEPO_PLAN_KIND_TREE_FILL, 4));
    CHECK(treepo_decoder_run(dec, dev, TREEPO_DTYPE_F32, DPTR(d_q), q_len, DPTR(d_kv), kv_len,
                             &layout, LAYER, sm_scale, DPTR(d_out), q_len, (float *)DPTR(d_lse),
                             lse_len));
    CU(cuStreamSynchronize(stream));
    CU(cuMemcpyDtoH_v2(out, d_out, q_len * sizeof(float)));
    CU(cuMemcpyDtoH_v2(lse, d_lse, lse_len * sizeof(float)));
    double err = max_error(q, kv, &layout, sm_scale, out, lse);
    printf("plan tree_fill: %zu rows, max abs error vs reference %.3g\n", rows, err);

    /* A host pointer is not device memory: rejected with a message, nothing launched. */
    TreepoStatus st = treepo_decoder_run(dec, dev, TREEPO_DTYPE_F32, q, q_len, DPTR(d_kv), kv_len,
                                         &layout, LAYER, sm_scale, DPTR(d_out), q_len, NULL, 0);
    printf("host q on CUDA -> %s: %s\n", treepo_status_name(st), treepo_last_error());

    /* Free treepo's objects (their device work is done) before the stream and the memory. */
    treepo_decoder_free(dec);
    treepo_device_free(dev);
    CU(cuStreamSynchronize(stream));
    CU(cuStreamDestroy_v2(stream));
    CU(cuMemFree_v2(d_kv));
    CU(cuMemFree_v2(d_q));
    CU(cuMemFree_v2(d_out));
    CU(cuMemFree_v2(d_lse));
    CU(cuDevicePrimaryCtxRelease_v2(cu_dev));
    free(kv);
    free(q);
    free(out);
    free(lse);
    const double tol = 1e-4;
    if (!(err <= tol) || st != TREEPO_STATUS_INVALID_ARGUMENT) {
        fprintf(stderr, "FAIL: max error %.3g (tolerance %.1g), bad call status %d\n", err, tol, st);
        return 1;
    }
    printf("OK (tolerance %.1g)\n", tol);
    return 0;
}
