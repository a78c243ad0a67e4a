/*
 * Shared by tree_decode.c and tree_decode_cuda.c: a small forest of paged sequences with a
 * shared prefix, deterministic data, and a straightforward reference (softmax attention over
 * each sequence's gathered pages, in double precision).
 */
#ifndef TREEPO_EXAMPLE_FOREST_H
#define TREEPO_EXAMPLE_FOREST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "treepo.h"

/* Abort with treepo's message unless `call` returns TREEPO_STATUS_OK. */
#define CHECK(call)                                                                   \
    do {                                                                              \
        TreepoStatus st_ = (call);                                                    \
        if (st_ != TREEPO_STATUS_OK) {                                                \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,  \
                    treepo_status_name(st_), treepo_last_error());                    \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* 4 tokens per page, 2 KV heads, 8 query heads (GQA group 4), head_dim 64, 2 layers, 12 pages. */
enum { PAGE_SIZE = 4, KV_HEADS = 2, QO_HEADS = 8, HEAD_DIM = 64, LAYERS = 2, PAGES = 12, BATCH = 4 };

/*
 * The engine's block tables. Sequences 0-2 share a 12-token prompt in pages 7, 2, 11 (a
 * prefix shared page by page: branches start on a page boundary) and continue in pages of
 * their own; sequence 1 is longer and decodes 2 tokens at once (a segment append: q_rows = 2);
 * sequence 3 is another prompt. Page ids are arbitrary, some pages unused.
 */
static const int32_t INDPTR[BATCH + 1] = {0, 4, 9, 13, 15};
static const int32_t INDICES[15] = {7, 2, 11, 5, /**/ 7, 2, 11, 0, 9, /**/ 7, 2, 11, 4, /**/ 3, 8};
static const int32_t LAST_PAGE_LEN[BATCH] = {3, 2, 4, 1};
static const int32_t Q_ROWS[BATCH] = {1, 2, 1, 1};
static const size_t LAYER = 1; /* run the second layer of the cache */

static size_t total_rows(void) {
    size_t r = 0;
    for (int b = 0; b < BATCH; b++) r += (size_t)Q_ROWS[b];
    return r;
}

/* Deterministic values in [-1, 1). */
static void fill(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    }
}

/* Element (layer, page, kv, head, token, d) of the cache under `l`. */
static float kv_at(const float *kv, const TreepoKvLayout *l, size_t page, int which, size_t head,
                   size_t tok, size_t d) {
    return kv[LAYER * l->stride_layer + page * l->stride_page + (size_t)which * l->stride_kv +
              head * l->stride_head + tok * l->stride_token + d];
}

/*
 * Reference: row r of sequence b (its q_rows rows are its last positions, causal among
 * themselves) attends to the sequence's tokens 0..pos gathered from its pages. Returns the max
 * abs error of `out` and `lse` against it.
 */
static double max_error(const float *q, const float *kv, const TreepoKvLayout *l, float sm_scale,
                        const float *out, const float *lse) {
    double err = 0.0;
    size_t row = 0;
    double *s = malloc(sizeof(double) * PAGES * PAGE_SIZE);
    for (int b = 0; b < BATCH; b++) {
        int pages = INDPTR[b + 1] - INDPTR[b];
        size_t len = (size_t)(pages - 1) * PAGE_SIZE + (size_t)LAST_PAGE_LEN[b];
        for (int j = 0; j < Q_ROWS[b]; j++, row++) {
            size_t pos = len - (size_t)Q_ROWS[b] + (size_t)j;
            for (size_t h = 0; h < QO_HEADS; h++) {
                const float *qv = q + (row * QO_HEADS + h) * HEAD_DIM;
                size_t kh = h / (QO_HEADS / KV_HEADS);
                double m = -INFINITY, z = 0.0;
                for (size_t t = 0; t <= pos; t++) {
                    size_t page = (size_t)INDICES[INDPTR[b] + (int)(t / PAGE_SIZE)];
                    double dot = 0.0;
                    for (size_t d = 0; d < HEAD_DIM; d++)
                        dot += (double)qv[d] * kv_at(kv, l, page, 0, kh, t % PAGE_SIZE, d);
                    s[t] = dot * sm_scale;
                    if (s[t] > m) m = s[t];
                }
                for (size_t t = 0; t <= pos; t++) z += exp(s[t] - m);
                for (size_t d = 0; d < HEAD_DIM; d++) {
                    double o = 0.0;
                    for (size_t t = 0; t <= pos; t++) {
                        size_t page = (size_t)INDICES[INDPTR[b] + (int)(t / PAGE_SIZE)];
                        o += exp(s[t] - m) * kv_at(kv, l, page, 1, kh, t % PAGE_SIZE, d);
                    }
                    double e = fabs(o / z - out[(row * QO_HEADS + h) * HEAD_DIM + d]);
                    if (e > err || e != e) err = e != e ? INFINITY : e;
                }
                double e = fabs(m + log(z) - lse[row * QO_HEADS + h]);
                if (e > err || e != e) err = e != e ? INFINITY : e;
            }
        }
    }
    free(s);
    return err;
}

#endif /* TREEPO_EXAMPLE_FOREST_H */
