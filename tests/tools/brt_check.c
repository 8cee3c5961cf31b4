/* Test helper: compares beaconrt outputs with reference files.
 *   brt_check tensors A.safetensors:NAME B.safetensors:NAME TOL    max |a - b| <= TOL (same shape)
 *   brt_check ids OUT.json B.safetensors:NAME                        generated_ids equal
 *   brt_check lastrows A:NAME B:NAME ROWS TOL                        last ROWS rows of B vs A
 * Prints what it compared; exit 0 = match, 1 = mismatch, 2 = usage/IO error. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

static const brt_st_tensor *open_tensor(const char *spec, brt_st_set *set)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", spec);
    char *colon = strrchr(path, ':');
    if (!colon) {
        fprintf(stderr, "brt_check: %s: want FILE:TENSOR\n", spec);
        return NULL;
    }
    *colon = '\0';
    brt_err err;
    if (brt_st_set_open_file(path, set, &err) != BRT_OK) {
        fprintf(stderr, "brt_check: %s\n", err.msg);
        return NULL;
    }
    const brt_st_tensor *t = brt_st_set_find(set, colon + 1);
    if (!t)
        fprintf(stderr, "brt_check: %s: no tensor %s\n", path, colon + 1);
    return t;
}

static double get(const brt_st_tensor *t, int64_t i)
{
    if (t->dtype == BRT_DT_F32)
        return ((const float *)t->data)[i];
    if (t->dtype == BRT_DT_I64)
        return (double)((const int64_t *)t->data)[i];
    return NAN;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && (!strcmp(argv[1], "tensors") || !strcmp(argv[1], "lastrows"))) {
        int last = !strcmp(argv[1], "lastrows");
        brt_st_set sa, sb;
        const brt_st_tensor *a = open_tensor(argv[2], &sa), *b = open_tensor(argv[3], &sb);
        if (!a || !b)
            return 2;
        double tol = atof(argv[last ? 5 : 4]);
        int64_t n = a->numel, off_a = 0, off_b = 0;
        if (last) {
            int64_t rows = atoll(argv[4]), width = a->shape[a->ndim - 1];
            n = rows * width;
            off_a = a->numel - n;
            off_b = b->numel - n;
            if (off_a < 0 || off_b < 0) {
                fprintf(stderr, "brt_check: fewer than %lld rows\n", (long long)rows);
                return 1;
            }
        } else if (a->numel != b->numel || a->ndim != b->ndim) {
            fprintf(stderr, "brt_check: shapes differ (%lld vs %lld elements)\n", (long long)a->numel,
                    (long long)b->numel);
            return 1;
        }
        double worst = 0, sum = 0;
        int64_t at = -1, over = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs(get(a, off_a + i) - get(b, off_b + i));
            over += d > tol;
            if (!(d <= worst)) {
                worst = d;
                at = i;
            }
            sum += d;
        }
        int64_t width = a->shape[a->ndim - 1];
        printf("%s vs %s: %lld values, max |diff| %.3g (row %lld), mean %.3g, tolerance %g: %s", argv[2], argv[3],
               (long long)n, worst, (long long)(at >= 0 ? at / width : -1), n ? sum / n : 0, tol,
               worst <= tol ? "ok\n" : "MISMATCH");
        if (worst > tol)
            printf(" (%lld values over)\n", (long long)over);
        return worst <= tol ? 0 : 1;
    }
    if (argc == 4 && !strcmp(argv[1], "ids")) {
        json_error_t je;
        json_t *o = json_load_file(argv[2], 0, &je);
        json_t *ids = json_object_get(o, "generated_ids");
        brt_st_set sb;
        const brt_st_tensor *b = open_tensor(argv[3], &sb);
        if (!json_is_array(ids) || !b) {
            fprintf(stderr, "brt_check: %s: no generated_ids (%s)\n", argv[2], o ? "" : je.text);
            return 2;
        }
        int ok = (int64_t)json_array_size(ids) == b->numel;
        for (int64_t i = 0; ok && i < b->numel; i++)
            ok = json_integer_value(json_array_get(ids, (size_t)i)) == (json_int_t)get(b, i);
        printf("generated ids (%zu) vs %s: %s\n", json_array_size(ids), argv[3], ok ? "identical" : "DIFFERENT");
        if (!ok) {
            printf("  got:    ");
            for (size_t i = 0; i < json_array_size(ids); i++)
                printf(" %lld", (long long)json_integer_value(json_array_get(ids, i)));
            printf("\n  expect: ");
            for (int64_t i = 0; i < b->numel; i++)
                printf(" %lld", (long long)get(b, i));
            printf("\n");
        }
        return ok ? 0 : 1;
    }
    fprintf(stderr, "usage: brt_check tensors A:NAME B:NAME TOL | ids OUT.json B:NAME | lastrows A:NAME B:NAME ROWS TOL\n");
    return 2;
}
