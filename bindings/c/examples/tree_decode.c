/*
 * Tree decode through the C API on the CPU device: plan from the engine's block tables, run
 * one layer on caller-owned host memory, check against a plain softmax-attention reference.
 *
 *   scripts/c-example.sh        (builds the library, compiles and runs this file)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_forest.h"
#include "treepo.h"

int main(void) {
    printf("treepo %s, CPU device\n", treepo_version());
    TreepoDevice *dev = NULL;
    TreepoDecoder *dec = NULL;
    CHECK(treepo_device_cpu(&dev));
    CHECK(treepo_decoder_new(&dec));

    /* The cache: one allocation holding K and V of both layers, HND layout. */
    TreepoKvLayout layout;
    size_t kv_len = 0;
    CHECK(treepo_kv_layout(TREEPO_KV_LAYOUT_KIND_HND, LAYERS, PAGES, KV_HEADS, PAGE_SIZE, HEAD_DIM,
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
    const float sm_scale = 1.0f / sqrtf((float)HEAD_DIM);

    /* Every strategy reads the same data; TREE_FILL is the one to use. */
    const int32_t kinds[3] = {TREEPO_PLAN_KIND_NAIVE, TREEPO_PLAN_KIND_TREE, TREEPO_PLAN_KIND_TREE_FILL};
    const char *names[3] = {"naive", "tree", "tree_fill"};
    double worst = 0.0;
    for (int k = 0; k < 3; k++) {
        uint32_t arg = kinds[k] == TREEPO_PLAN_KIND_TREE_FILL ? 4 : 0;
        CHECK(treepo_decoder_plan(dec, dev, INDPTR, BATCH, INDICES, 15, LAST_PAGE_LEN, Q_ROWS,
                                  QO_HEADS, KV_HEADS, HEAD_DIM, PAGE_SIZE, PAGES, kinds[k], arg));
        size_t planned_rows = 0;
        CHECK(treepo_decoder_num_rows(dec, &planned_rows));
        if (planned_rows != rows) {
            fprintf(stderr, "planned %zu rows, expected %zu\n", planned_rows, rows);
            return 1;
        }
        memset(out, 0xff, q_len * sizeof(float)); /* NaN: an unwritten element fails the check */
        CHECK(treepo_decoder_run(dec, dev, TREEPO_DTYPE_F32, q, q_len, kv, kv_len, &layout, LAYER,
                                 sm_scale, out, q_len, lse, lse_len));
        double err = max_error(q, kv, &layout, sm_scale, out, lse);
        printf("plan %-9s: %zu rows, max abs error vs reference %.3g\n", names[k], rows, err);
        if (err > worst || err != err) worst = err != err ? INFINITY : err;
    }

    /* A bad call reports a status and a message instead of crashing. */
    TreepoStatus st = treepo_decoder_run(dec, dev, TREEPO_DTYPE_F32, q, q_len - 1, kv, kv_len,
                                         &layout, LAYER, sm_scale, out, q_len, NULL, 0);
    printf("bad q_len -> %s: %s\n", treepo_status_name(st), treepo_last_error());

    treepo_decoder_free(dec);
    treepo_device_free(dev);
    free(kv);
    free(q);
    free(out);
    free(lse);
    const double tol = 1e-4;
    if (!(worst <= tol) || st != TREEPO_STATUS_INVALID_ARGUMENT) {
        fprintf(stderr, "FAIL: max error %.3g (tolerance %.1g), bad call status %d\n", worst, tol, st);
        return 1;
    }
    printf("OK (tolerance %.1g)\n", tol);
    return 0;
}
