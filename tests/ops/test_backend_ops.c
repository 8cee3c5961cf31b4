/* Op tests for a backend: every op of the table in kernels/kernels.h, checked against a plain-C
 * reference in this file that accumulates in double, on awkward sizes and views, with the fixed
 * tolerances below. Learnt from llama.cpp's tests/test-backend-ops.cpp: one program for every
 * backend, one line per case.
 *
 *   test_backend_ops --backend cpu|cuda [--precision bf16|f32] [--isa avx512|avx2|generic]
 *                    [--filter SUBSTRING] [--quick]
 *
 * --filter runs the cases whose name holds SUBSTRING; --quick drops the largest GEMM shape and
 * shortens the long contexts.
 *
 * Exit 0: every case passed; 1: a case failed, or the backend could not be created; 2: bad usage;
 * 77 (ctest's skip): this build has no CUDA backend, no GPU is visible, or the CPU lacks the
 * instruction set asked for.
 *
 * Every array lives in backend memory: inputs are written with set_rows, results read back with
 * get_rows, never through a buffer's base (a device pointer on CUDA). Each buffer starts poisoned
 * with NaN and the host keeps what the whole buffer should hold (tbuf.want), so an output an op
 * leaves unwritten, or an element it writes outside its view, shows as well as a wrong value. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "sample.h"

/* ---- tolerances -------------------------------------------------------------------------
 * A case's error is max|out - ref| / max(1, max|ref|) over the case, ref computed in double;
 * attention measures each query row against its own largest |ref| instead (a softmax average over
 * thousands of keys is often far below 1, and keys dropped or mis-weighted change it by its own
 * size, which max(1, .) would hide). Columns: f32 = the CPU backend and cuda --precision f32 (TF32
 * off); bf16 = cuda's default mode (bf16 GEMM inputs and KV state). */
enum { T_GEMM, T_ATTN, T_LOGITS, T_ROW, T_ROPE, T_EXACT, T_BF16_OUT, T_EMBED, T_SAMPLE, T_COUNT };
static const struct {
    double f32, bf16;
} k_tol[T_COUNT] = {
    /* f32: up to 1636 f32 products summed in some fixed order, ~1e-6 of the largest output.
     * bf16: each activation (and an f32 weight) rounded to bf16, 2^-9 relative, before its
     * product. */
    [T_GEMM] = {1e-5, 2e-2},
    /* per query row (see above). f32: the CPU's tiled online softmax measures 7e-6 at 64K keys and
     * a key-by-key f32 loop about 2e-5 (the running sums' rounding); a key dropped or q rounded to
     * bf16 moves a row by 1e-3 or more. bf16: q rounded to bf16 alone gives 4e-3; the
     * probabilities and the state may be bf16 too. */
    [T_ATTN] = {5e-5, 2e-2},
    /* the gemm against lm_head, as T_GEMM */
    [T_LOGITS] = {1e-5, 2e-2},
    /* rmsnorm, silu_mul, add: f32 activations on every backend, a few f32 roundings an element */
    [T_ROW] = {1e-5, 1e-5},
    /* RoPE: kernels.h defines the angle as the float product p * inv_freq with p = (float)pos /
     * pos_div, and the reference forms it the same way, so only cos/sin and the rotation round (an
     * ulp or two, at position 500000 as at 0: cosf/sinf reduce large arguments exactly). A backend
     * that forms the angle another way (in double, or with fast __sinf) is off by up to 0.016 rad
     * (half a float ulp of 500000) and fails on purpose: keys cached by one backend must match
     * another's. */
    [T_ROPE] = {1e-5, 1e-5},
    /* moves and conversions: set/get/zero/copy_rows, f32 <-> bf16 rounded to nearest even */
    [T_EXACT] = {0, 0},
    /* RoPE then rounding to bf16: the backend's f32 rotation and the reference's double one may
     * round to neighbouring bf16 values, one ulp = 2^-7 relative at most */
    [T_BF16_OUT] = {8e-3, 8e-3},
    /* embed: exact conversions; in bf16 mode a table may be kept as bf16 (weight_upload may
     * convert, and a tied lm_head shares the copy): half an ulp, 2^-9 */
    [T_EMBED] = {0, 4e-3},
    /* logit_rows: the same logits on both sides, log-probabilities in double rounded to f32 */
    [T_SAMPLE] = {1e-5, 1e-5},
};

/* ---- host numbers ------------------------------------------------------------------------ */

static uint16_t to_bf16(float f) /* round to nearest even; NaN stays a quiet NaN */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t to_f16(float f) /* round to nearest even; the inputs here are finite and |f| <= 1 */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const float a = fabsf(f);
    if (isnan(f))
        return 0x7e00;
    if (a >= 65520.0f)
        return sign | 0x7c00;
    if (a < 6.103515625e-05f) /* subnormal: a multiple of 2^-24 (nearbyint rounds to even) */
        return sign | (uint16_t)nearbyintf(a * 16777216.0f);
    uint32_t h = ((((u >> 23) & 0xffu) - 112u) << 10) | ((u & 0x7fffffu) >> 13);
    const uint32_t rest = u & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is the right result */
    return sign | (uint16_t)h;
}

static float from_f16(uint16_t h)
{
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float f = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return h & 0x8000 ? -f : f;
}

/* x as the nearest value of dt */
static float round_to(brt_dtype dt, float x)
{
    return dt == BRT_DT_BF16 ? from_bf16(to_bf16(x)) : dt == BRT_DT_F16 ? from_f16(to_f16(x)) : x;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_backend_ops: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void *xmalloc(size_t n) { return xrealloc(NULL, n); }

/* [n] f32 values as packed elements of dt (F32, F16 or BF16) */
static void *pack_dt(const float *x, int64_t n, brt_dtype dt)
{
    void *p = xmalloc((size_t)n * brt_dtype_size(dt));
    for (int64_t i = 0; i < n; i++) {
        if (dt == BRT_DT_F32)
            ((float *)p)[i] = x[i];
        else
            ((uint16_t *)p)[i] = dt == BRT_DT_BF16 ? to_bf16(x[i]) : to_f16(x[i]);
    }
    return p;
}

static void unpack_dt(const void *p, int64_t n, brt_dtype dt, float *x)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = dt == BRT_DT_F32    ? ((const float *)p)[i]
               : dt == BRT_DT_BF16 ? from_bf16(((const uint16_t *)p)[i])
                                   : from_f16(((const uint16_t *)p)[i]);
}

static double dot(const float *a, const float *b, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)a[i] * b[i];
        s1 += (double)a[i + 1] * b[i + 1];
        s2 += (double)a[i + 2] * b[i + 2];
        s3 += (double)a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += (double)a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* ---- random inputs -------------------------------------------------------------------------
 * One generator, reseeded from each group's name, so a case sees the same numbers whatever
 * --filter selects. */

static uint64_t g_rng;

static void seed(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    g_rng = h | 1;
}

static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

static int32_t rnd_int(int32_t n) { return (int32_t)(rnd() % (uint64_t)n); }

/* uniform in [-1, 1] but at least 1/64 from 0: a zero input would hide a missing term */
static float rnd_val(void)
{
    const double u = (double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    return (float)(u < 0 ? u * (63.0 / 64) - 1.0 / 64 : u * (63.0 / 64) + 1.0 / 64);
}

/* ---- the suite ------------------------------------------------------------------------------ */

/* A backend buffer and what the host knows it holds. */
typedef struct tbuf {
    brt_buffer *b;
    brt_dtype dt;          /* F32 or BF16 */
    int64_t n;             /* elements */
    float *want;           /* [n]: what the buffer should hold (NaN: never written) */
    float *got;            /* [n]: what it held when last read back (NULL before) */
} tbuf;

typedef struct suite {
    brt_backend *be;
    int bf16;              /* cuda's bf16 mode: the bf16 column of the tolerance table */
    int exact_packing;     /* the CPU backend keeps micro-batch packing bit-exact */
    int quick;
    const char *filter;
    int n_ok, n_fail;
    brt_err err;           /* filled by a backend call that fails */
    int bad;               /* a backend call of the current case failed (later ones are skipped) */
    int broken;            /* a buffer or weight of the current group is missing: its cases all fail */
    char why[BRT_ERR_MSG_MAX + 256];
    char note[256];        /* where the worst element of the last comparison was */
    tbuf **bufs;           /* the current group's buffers, freed by end_group */
    int n_bufs, cap_bufs;
    /* host copies of uploaded weights, freed only after the backend: a backend may know its copy
     * by the host address (aliases share one copy), so no address is reused while it lives */
    void **keep;
    int n_keep, cap_keep;
} suite;

static double tol(const suite *S, int which) { return S->bf16 ? k_tol[which].bf16 : k_tol[which].f32; }

static int wanted(const suite *S, const char *name) { return !S->filter || strstr(name, S->filter); }

/* A backend call: when it fails the case fails with the call and its message; the case's later
 * calls are skipped (their outputs stay NaN). */
#define CALL(S, expr) ((S)->bad || (S)->broken ? (void)0 : check_call((S), (expr), #expr))

static void check_call(suite *S, brt_status st, const char *what)
{
    if (st == BRT_OK)
        return;
    S->bad = 1;
    const char *args = strchr(what, '(');
    snprintf(S->why, sizeof S->why, "%.*s(...) returned %s: %s", args ? (int)(args - what) : (int)strlen(what), what,
             brt_status_name(st), S->err.msg);
}

static void report(suite *S, const char *name, double err, double t)
{
    if (wanted(S, name)) {
        const int ok = !S->bad && !S->broken && err <= t;
        printf("%s %s %.3g (tol %.3g)\n", ok ? "ok" : "FAIL", name, err, t);
        if (S->bad || S->broken)
            printf("    %s\n", S->why);
        else if (!ok && S->note[0])
            printf("    %s\n", S->note);
        fflush(stdout);
        if (ok)
            S->n_ok++;
        else
            S->n_fail++;
    }
    S->bad = 0;
    S->note[0] = '\0';
}

/* A call that must fail (bad arguments): the error is 1 when it returned BRT_OK. */
static void report_error_status(suite *S, const char *name, brt_status st)
{
    if (st == BRT_OK)
        snprintf(S->note, sizeof S->note, "returned ok");
    report(S, name, st == BRT_OK ? 1.0 : 0.0, 0);
}

/* The same rows computed alone and inside a bigger batch: the CPU backend must give the same bits
 * (kernels.h); on other backends (cuBLAS may pick algorithms per shape) the difference is only
 * printed. */
static void report_packing(suite *S, const char *name, double diff, int64_t differing)
{
    if (!wanted(S, name)) {
        S->bad = 0;
        return;
    }
    const int bad = S->bad || S->broken;
    if (S->exact_packing) {
        const int ok = !bad && differing == 0;
        printf("%s %s %.3g (tol 0, bitwise)\n", ok ? "ok" : "FAIL", name, diff);
        if (bad)
            printf("    %s\n", S->why);
        else if (!ok)
            printf("    %lld elements differ in their bits\n", (long long)differing);
        if (ok)
            S->n_ok++;
        else
            S->n_fail++;
    } else {
        printf("%s %s %.3g (tol none: information only on %s)\n", bad ? "FAIL" : "ok", name, diff, S->be->name);
        if (bad) {
            printf("    %s\n", S->why);
            S->n_fail++;
        } else {
            S->n_ok++;
        }
    }
    fflush(stdout);
    S->bad = 0;
}

/* Error of what a buffer holds against what it should (see the tolerance table). An element that
 * should be NaN (never written) and is not, or the reverse, makes it infinite. row > 0: every run
 * of row elements is measured against its own largest |want| (attention). */
static double compare(suite *S, const float *got, const float *want, int64_t n, int64_t row)
{
    const int64_t len = row > 0 ? row : n;
    double worst = 0;
    for (int64_t r0 = 0; r0 < n; r0 += len) {
        const int64_t r1 = r0 + len < n ? r0 + len : n;
        double scale = 0;
        for (int64_t i = r0; i < r1; i++)
            if (!isnan(want[i]) && fabs(want[i]) > scale)
                scale = fabs(want[i]);
        if (row > 0 ? scale == 0 : scale < 1)
            scale = 1;
        for (int64_t i = r0; i < r1; i++) {
            if (!isnan(want[i]) != !isnan(got[i])) {
                snprintf(S->note, sizeof S->note, "element %lld of the buffer: got %g, want %g%s", (long long)i, got[i],
                         want[i], isnan(want[i]) ? " (written outside the op's view)" : " (never written)");
                return INFINITY;
            }
            if (isnan(want[i]))
                continue;
            const double e = fabs((double)got[i] - want[i]) / scale;
            if (!(e <= worst)) {
                worst = e;
                snprintf(S->note, sizeof S->note, "worst: element %lld: got %.9g, want %.9g", (long long)i, got[i],
                         want[i]);
            }
        }
    }
    return worst;
}

/* Largest |a - b| over n elements, and how many differ in their bits. */
static double bit_diff(const float *a, const float *b, int64_t n, int64_t *differing)
{
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], 4) == 0)
            continue;
        (*differing)++;
        const double e = isnan(a[i]) || isnan(b[i]) ? INFINITY : fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
    }
    return d;
}

static void tb_upload(suite *S, tbuf *t)
{
    void *host = pack_dt(t->want, t->n, t->dt);
    CALL(S, S->be->set_rows(S->be, brt_mat_make(t->b, 0, t->n, t->dt), host, 1, t->n, &S->err));
    free(host);
}

/* A buffer of n elements of dt, poisoned with NaN. */
static tbuf *tb_new(suite *S, int64_t n, brt_dtype dt)
{
    tbuf *t = xmalloc(sizeof *t);
    memset(t, 0, sizeof *t);
    t->dt = dt;
    t->n = n;
    t->want = xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        t->want[i] = NAN;
    CALL(S, S->be->buffer_alloc(S->be, (size_t)n * brt_dtype_size(dt), BRT_MEM_DEVICE, &t->b, &S->err));
    S->broken |= S->bad;
    if (S->n_bufs == S->cap_bufs) {
        S->cap_bufs = S->cap_bufs ? 2 * S->cap_bufs : 32;
        S->bufs = xrealloc(S->bufs, (size_t)S->cap_bufs * sizeof *S->bufs);
    }
    S->bufs[S->n_bufs++] = t;
    tb_upload(S, t);
    return t;
}

/* The view of rows from `row` on, ld elements apart. */
static brt_mat tb_mat(const tbuf *t, int64_t row, int64_t ld)
{
    return brt_mat_make(t->b, row * ld * (int64_t)brt_dtype_size(t->dt), ld, t->dt);
}

/* Random values (times scale, rounded to the buffer's dtype) into rows [row, row + rows), columns
 * [col, col + cols) of a view with ld; the caller uploads. */
static void tb_fill(tbuf *t, int64_t row, int64_t ld, int64_t rows, int64_t col, int64_t cols, float scale)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            t->want[(row + r) * ld + col + c] = round_to(t->dt, scale * rnd_val());
}

/* Read the whole buffer back into t->got (NaN when the read is skipped after a failed call). */
static void tb_download(suite *S, tbuf *t)
{
    if (!t->got)
        t->got = xmalloc((size_t)t->n * sizeof(float));
    void *host = xmalloc((size_t)t->n * brt_dtype_size(t->dt));
    CALL(S, S->be->get_rows(S->be, brt_mat_make(t->b, 0, t->n, t->dt), host, 1, t->n, &S->err));
    if (S->bad || S->broken)
        for (int64_t i = 0; i < t->n; i++)
            t->got[i] = NAN;
    else
        unpack_dt(host, t->n, t->dt, t->got);
    free(host);
}

static double tb_check(suite *S, tbuf *t, int64_t row)
{
    tb_download(S, t);
    return compare(S, t->got, t->want, t->n, row);
}

static void end_group(suite *S)
{
    for (int i = 0; i < S->n_bufs; i++) {
        tbuf *t = S->bufs[i];
        if (t->b)
            S->be->buffer_free(S->be, t->b);
        free(t->want);
        free(t->got);
        free(t);
    }
    S->n_bufs = 0;
    S->bad = 0;
    S->broken = 0;
}

/* A weight (brt_weight with host data) and its values as f32 for the reference. */
typedef struct {
    brt_weight w;
    float *val;            /* [rows, cols] */
} tweight;

static void tw_make(suite *S, tweight *t, brt_dtype dt, int64_t rows, int64_t cols, const char *name)
{
    const int64_t n = rows * cols;
    t->val = xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        t->val[i] = round_to(dt, rnd_val());
    void *data = pack_dt(t->val, n, dt);
    if (S->n_keep == S->cap_keep) {
        S->cap_keep = S->cap_keep ? 2 * S->cap_keep : 64;
        S->keep = xrealloc(S->keep, (size_t)S->cap_keep * sizeof *S->keep);
    }
    S->keep[S->n_keep++] = data;
    t->w = (brt_weight){data, dt, rows, cols, name, NULL, dt, 0};
    CALL(S, S->be->weight_upload(S->be, &t->w, &S->err));
    S->broken |= S->bad;
}

static const char *dt_name(brt_dtype dt)
{
    return dt == BRT_DT_F32 ? "f32" : dt == BRT_DT_F16 ? "f16" : dt == BRT_DT_BF16 ? "bf16" : "?";
}

/* ---- set_rows, get_rows, zero_rows ------------------------------------------------------------ */

static void test_rows(suite *S)
{
    static const brt_dtype dts[2] = {BRT_DT_F32, BRT_DT_BF16};
    const int64_t rows = 13, cols = 100, ld = 117, r0 = 3;
    brt_backend *be = S->be;
    for (int d = 0; d < 2; d++) {
        const brt_dtype dt = dts[d];
        char n_set[160], n_sub[160], n_zero[160];
        snprintf(n_set, sizeof n_set, "set_rows/get_rows %s rows=%lld cols=%lld ld=%lld round trip", dt_name(dt),
                 (long long)rows, (long long)cols, (long long)ld);
        snprintf(n_sub, sizeof n_sub, "get_rows %s rows=%lld cols=50 from column 7 ld=%lld", dt_name(dt),
                 (long long)rows - 4, (long long)ld);
        snprintf(n_zero, sizeof n_zero, "zero_rows %s rows=4 cols=%lld ld=%lld", dt_name(dt), (long long)cols,
                 (long long)ld);
        if (!wanted(S, n_set) && !wanted(S, n_sub) && !wanted(S, n_zero))
            continue;
        seed(n_set);
        tbuf *t = tb_new(S, (r0 + rows + 2) * ld, dt); /* [r0 + rows + 2, ld] dt, [rows, cols] at row r0 */
        float *src = xmalloc((size_t)(rows * cols) * sizeof(float)); /* [rows, cols] */
        for (int64_t i = 0; i < rows * cols; i++)
            src[i] = round_to(dt, rnd_val());
        void *packed = pack_dt(src, rows * cols, dt);
        CALL(S, be->set_rows(be, tb_mat(t, r0, ld), packed, rows, cols, &S->err));
        for (int64_t r = 0; r < rows; r++)
            memcpy(t->want + (r0 + r) * ld, src + r * cols, (size_t)cols * sizeof(float));
        double err = tb_check(S, t, 0);
        /* and read back through the same view */
        void *back = xmalloc((size_t)(rows * cols) * brt_dtype_size(dt));
        float *backf = xmalloc((size_t)(rows * cols) * sizeof(float));
        memset(back, 0xff, (size_t)(rows * cols) * brt_dtype_size(dt)); /* NaN in both dtypes */
        CALL(S, be->get_rows(be, tb_mat(t, r0, ld), back, rows, cols, &S->err));
        unpack_dt(back, rows * cols, dt, backf);
        const double e2 = compare(S, backf, src, rows * cols, 0);
        report(S, n_set, err > e2 ? err : e2, tol(S, T_EXACT));

        /* a view that starts inside a row and is narrower than its rows */
        const int64_t sr = rows - 4, sc = 50;
        memset(back, 0xff, (size_t)(sr * sc) * brt_dtype_size(dt));
        CALL(S, be->get_rows(be, brt_mat_col(tb_mat(t, r0 + 2, ld), 7), back, sr, sc, &S->err));
        unpack_dt(back, sr * sc, dt, backf);
        for (int64_t r = 0; r < sr; r++)
            memcpy(src + r * sc, t->want + (r0 + 2 + r) * ld + 7, (size_t)sc * sizeof(float));
        report(S, n_sub, compare(S, backf, src, sr * sc, 0), tol(S, T_EXACT));

        CALL(S, be->zero_rows(be, tb_mat(t, r0 + 5, ld), 4, cols, &S->err));
        for (int64_t r = 0; r < 4; r++)
            for (int64_t c = 0; c < cols; c++)
                t->want[(r0 + 5 + r) * ld + c] = 0.0f;
        report(S, n_zero, tb_check(S, t, 0), tol(S, T_EXACT));
        free(src);
        free(packed);
        free(back);
        free(backf);
        end_group(S);
    }
}

/* ---- gemm ---------------------------------------------------------------------------------------- */

/* The CPU backend's GEMM contract (kernels/cpu/simd/simd_kernels.c): each output is one chain of
 * fused multiply-adds over k in order from +0, then + bias, on every instruction set and path.
 * Checks big ([mb, n], the backend's result with the weight as uploaded: packed panels) bit for
 * bit against that chain in plain C (fmaf) on its first rows, and against the same rows computed
 * with the weight read in place (no packed copy: the path that transposes the file's layout). */
static void gemm_cpu_order(suite *S, brt_dtype dt, int64_t n, int64_t k, int bias, const tweight *W,
                           const tweight *B, const float *A, const float *big, int64_t mb)
{
    char oname[200], iname[200];
    snprintf(oname, sizeof oname, "gemm order %s weights n=%lld k=%lld%s: bits = fmaf chain over k in order",
             dt_name(dt), (long long)n, (long long)k, bias ? " +bias" : "");
    snprintf(iname, sizeof iname, "gemm in place %s weights n=%lld k=%lld%s: bits = from the packed copy", dt_name(dt),
             (long long)n, (long long)k, bias ? " +bias" : "");
    if (wanted(S, oname)) {
        const int64_t rows = mb < 24 ? mb : 24;
        int64_t differing = 0;
        double e = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < n; j++) {
                float acc = 0.0f;
                for (int64_t x = 0; x < k; x++)
                    acc = fmaf(A[i * k + x], W->val[j * k + x], acc);
                if (bias)
                    acc = acc + B->val[j];
                e = fmax(e, bit_diff(&acc, &big[i * n + j], 1, &differing));
            }
        S->bad = 0;
        report_packing(S, oname, e, differing);
    }
    if (wanted(S, iname)) {
        brt_weight wi = W->w;
        wi.dev = NULL; /* the kernels then read the file's [out, in] layout */
        tbuf *a = tb_new(S, mb * k, BRT_DT_F32); /* [mb, k] f32 */
        memcpy(a->want, A, (size_t)(mb * k) * sizeof(float));
        tb_upload(S, a);
        tbuf *c = tb_new(S, mb * n, BRT_DT_F32); /* [mb, n] f32 */
        memcpy(c->want, big, (size_t)(mb * n) * sizeof(float));
        CALL(S, S->be->gemm(S->be, tb_mat(a, 0, k), mb, &wi, bias ? &B->w : NULL, tb_mat(c, 0, n), &S->err));
        int64_t differing = 0;
        double e = 0;
        if (!S->bad) {
            tb_download(S, c);
            e = bit_diff(c->got, big, mb * n, &differing);
        }
        report_packing(S, iname, e, differing);
    }
}

static void test_gemm(suite *S)
{
    static const brt_dtype dts[3] = {BRT_DT_F32, BRT_DT_F16, BRT_DT_BF16};
    /* k = 576 is one k block on the CPU, 1636 is 512 + 512 + 612: the last blocks take short tails */
    static const int64_t shapes[5][2] = {{1000, 100}, {576, 576}, {64, 1636}, {2048, 768}, {4100, 257}};
    /* the full batch first: the smaller ones are its rows again (packing) */
    static const int64_t ms[5] = {131, 1, 3, 17, 64};
    enum { MB = 131 };
    brt_backend *be = S->be;
    for (int d = 0; d < 3; d++)
        for (int s = 0; s < 5; s++) {
            const brt_dtype dt = dts[d];
            const int64_t n = shapes[s][0], k = shapes[s][1];
            const int bias = (d + s) % 2; /* each dtype and each shape is run with and without */
            if (S->quick && s == 3)
                continue;
            char names[5][160], pname[200];
            int any = 0;
            for (int mi = 0; mi < 5; mi++) {
                const int padded = (mi + s) % 2;
                int len = snprintf(names[mi], sizeof names[mi], "gemm %s weights m=%lld n=%lld k=%lld%s", dt_name(dt),
                                   (long long)ms[mi], (long long)n, (long long)k, bias ? " +bias" : "");
                if (padded)
                    snprintf(names[mi] + len, sizeof names[mi] - (size_t)len, " lda=%lld ldc=%lld", (long long)k + 3,
                             (long long)n + 5);
                any |= wanted(S, names[mi]);
            }
            snprintf(pname, sizeof pname,
                     "packing gemm %s weights n=%lld k=%lld%s: rows of m=1,3,17,64 alone = in m=%d",
                     dt_name(dt), (long long)n, (long long)k, bias ? " +bias" : "", MB);
            if (!any && !wanted(S, pname))
                continue;
            seed(pname);
            tweight W, B = {{0}, NULL};
            tw_make(S, &W, dt, n, k, "w");
            if (bias)
                tw_make(S, &B, dt, 1, n, "bias");
            float *A = xmalloc((size_t)(MB * k) * sizeof(float)); /* [MB, k] activations */
            for (int64_t i = 0; i < MB * k; i++)
                A[i] = rnd_val();
            float *R = xmalloc((size_t)(MB * n) * sizeof(float)); /* [MB, n] reference */
            for (int64_t i = 0; i < MB; i++)
                for (int64_t j = 0; j < n; j++)
                    R[i * n + j] = (float)(dot(A + i * k, W.val + j * k, k) + (bias ? B.val[j] : 0.0));
            float *big = xmalloc((size_t)(MB * n) * sizeof(float)); /* [MB, n] the backend's full batch */
            double pack = 0;
            int64_t differing = 0;
            int pack_bad = 0;
            for (int mi = 0; mi < 5; mi++) {
                const int64_t m = ms[mi], r0 = (MB - m) / 3;
                const int padded = (mi + s) % 2;
                const int64_t lda = padded ? k + 3 : k, ldc = padded ? n + 5 : n, ar = padded ? 2 : 0,
                              cr = padded ? 1 : 0;
                tbuf *a = tb_new(S, (ar + m) * lda, BRT_DT_F32); /* [ar + m, lda] f32: rows r0.. of A at row ar */
                for (int64_t i = 0; i < m; i++)
                    memcpy(a->want + (ar + i) * lda, A + (r0 + i) * k, (size_t)k * sizeof(float));
                tb_upload(S, a);
                tbuf *c = tb_new(S, (cr + m) * ldc, BRT_DT_F32); /* [cr + m, ldc] f32 */
                for (int64_t i = 0; i < m; i++)
                    memcpy(c->want + (cr + i) * ldc, R + (r0 + i) * n, (size_t)n * sizeof(float));
                CALL(S, be->gemm(be, tb_mat(a, ar, lda), m, &W.w, bias ? &B.w : NULL, tb_mat(c, cr, ldc), &S->err));
                pack_bad |= S->bad;
                report(S, names[mi], tb_check(S, c, 0), tol(S, T_GEMM));
                for (int64_t i = 0; i < m; i++) {
                    const float *row = c->got + (cr + i) * ldc;
                    if (mi == 0)
                        memcpy(big + i * n, row, (size_t)n * sizeof(float));
                    else {
                        const double e = bit_diff(row, big + (r0 + i) * n, n, &differing);
                        pack = e > pack ? e : pack;
                    }
                }
            }
            S->bad = pack_bad;
            report_packing(S, pname, pack, differing);
            if (S->exact_packing)
                gemm_cpu_order(S, dt, n, k, bias, &W, &B, A, big, MB);
            free(W.val);
            free(B.val);
            free(A);
            free(R);
            free(big);
            end_group(S);
        }
}

/* ---- rmsnorm, silu_mul, add ------------------------------------------------------------------- */

static void test_rmsnorm(suite *S)
{
    static const struct {
        int64_t dim, rows;
        int in_place, padded;
    } cs[] = {{64, 1, 1, 0},   {64, 33, 0, 1},  {100, 7, 1, 1},   {100, 33, 0, 0},
              {576, 5, 0, 1},  {576, 33, 1, 0}, {4096, 1, 0, 0},  {4096, 9, 1, 1}};
    brt_backend *be = S->be;
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int64_t dim = cs[ci].dim, rows = cs[ci].rows, xr = cs[ci].padded ? 1 : 0;
        const int64_t ldx = cs[ci].padded ? dim + 9 : dim, ldy = cs[ci].padded ? dim + 2 : dim;
        const float eps = ci % 2 ? 1e-6f : 1e-5f;
        char name[160];
        int len = snprintf(name, sizeof name, "rmsnorm dim=%lld rows=%lld %s eps=%g", (long long)dim, (long long)rows,
                           cs[ci].in_place ? "in place" : "out of place", eps);
        if (cs[ci].padded)
            snprintf(name + len, sizeof name - (size_t)len, cs[ci].in_place ? " ld=%lld" : " ldx=%lld ldy=%lld",
                     (long long)ldx, (long long)ldy);
        if (!wanted(S, name))
            continue;
        seed(name);
        tweight w;
        tw_make(S, &w, BRT_DT_F32, 1, dim, "norm");
        tbuf *x = tb_new(S, (xr + rows) * ldx, BRT_DT_F32); /* [xr + rows, ldx] f32 */
        tb_fill(x, xr, ldx, rows, 0, dim, 1.0f);
        tb_upload(S, x);
        tbuf *y = cs[ci].in_place ? x : tb_new(S, rows * ldy, BRT_DT_F32); /* [rows, ldy] f32 */
        const int64_t yr = cs[ci].in_place ? xr : 0, ly = cs[ci].in_place ? ldx : ldy;
        for (int64_t r = 0; r < rows; r++) {
            const float *xv = x->want + (xr + r) * ldx;
            const double inv = 1.0 / sqrt(dot(xv, xv, dim) / (double)dim + eps);
            float *yv = y->want + (yr + r) * ly;
            for (int64_t i = 0; i < dim; i++)
                yv[i] = (float)(w.val[i] * (xv[i] * inv));
        }
        CALL(S, be->rmsnorm(be, tb_mat(x, xr, ldx), &w.w, eps, tb_mat(y, yr, ly), rows, dim, &S->err));
        report(S, name, tb_check(S, y, 0), tol(S, T_ROW));
        free(w.val);
        end_group(S);
    }
}

static void test_silu_add(suite *S)
{
    static const struct {
        int64_t n, rows;
        int padded;
    } cs[] = {{1, 3, 0}, {7, 5, 1}, {100, 1, 0}, {1553, 4, 1}, {8192, 2, 0}, {15, 4, 1}, {576, 9, 0}, {4099, 3, 1}};
    brt_backend *be = S->be;
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++)
        for (int op = 0; op < 2; op++) { /* 0: silu_mul, 1: add */
            const int64_t n = cs[ci].n, rows = cs[ci].rows, yr = cs[ci].padded ? 1 : 0;
            const int64_t ldy = cs[ci].padded ? n + 7 : n, ldx = cs[ci].padded ? n + 4 : n;
            char name[160];
            int len = snprintf(name, sizeof name, "%s n=%lld rows=%lld", op ? "add" : "silu_mul", (long long)n,
                               (long long)rows);
            if (cs[ci].padded)
                snprintf(name + len, sizeof name - (size_t)len, op ? " ldy=%lld ldx=%lld" : " ldgate=%lld ldup=%lld",
                         (long long)ldy, (long long)ldx);
            if (!wanted(S, name))
                continue;
            seed(name);
            /* silu_mul: y = gate [yr + rows, ldy] f32 (in place), x = up [rows, ldx] f32; add: y += x */
            tbuf *y = tb_new(S, (yr + rows) * ldy, BRT_DT_F32), *x = tb_new(S, rows * ldx, BRT_DT_F32);
            /* gates over [-6, 6] and a saturated one per row exercise the exp */
            tb_fill(y, yr, ldy, rows, 0, n, op ? 1.0f : 6.0f);
            if (!op && n > 1)
                for (int64_t r = 0; r < rows; r++)
                    y->want[(yr + r) * ldy] = r % 2 ? 30.0f : -30.0f;
            tb_fill(x, 0, ldx, rows, 0, n, 1.0f);
            tb_upload(S, y);
            tb_upload(S, x);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t i = 0; i < n; i++) {
                    float *g = &y->want[(yr + r) * ldy + i];
                    const double u = x->want[r * ldx + i];
                    *g = (float)(op ? *g + u : *g / (1.0 + exp(-(double)*g)) * u);
                }
            if (op)
                CALL(S, be->add(be, tb_mat(y, yr, ldy), tb_mat(x, 0, ldx), rows, n, &S->err));
            else
                CALL(S, be->silu_mul(be, tb_mat(y, yr, ldy), tb_mat(x, 0, ldx), rows, n, &S->err));
            report(S, name, tb_check(S, y, 0), tol(S, T_ROW));
            end_group(S);
        }
}

/* ---- RoPE ------------------------------------------------------------------------------------ */

/* inv_freq as the stage computes it (HF: 1 / theta^(2i / d) in float) */
static void make_inv_freq(float *inv, int32_t hd, float theta)
{
    for (int32_t i = 0; i < hd / 2; i++)
        inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
}

/* y = x[heads * hd] rotated at pos: the angle as kernels.h defines it (a float product), the
 * rest in double */
static void ref_rope(const float *x, double *y, int32_t heads, int32_t hd, const float *inv, float pos_div, int32_t pos)
{
    const int32_t half = hd / 2;
    const float p = (float)pos / pos_div;
    for (int32_t i = 0; i < half; i++) {
        const float ang = p * inv[i];
        const double c = cos((double)ang), s = sin((double)ang);
        for (int32_t h = 0; h < heads; h++) {
            const double x1 = x[h * hd + i], x2 = x[h * hd + half + i];
            y[h * hd + i] = x1 * c - x2 * s;
            y[h * hd + half + i] = x2 * c + x1 * s;
        }
    }
}

static const int32_t k_positions[] = {500000, 0, 1, 17, 4095, 32768, 131071, 262143, 499999};
#define N_POSITIONS ((int32_t)(sizeof k_positions / sizeof k_positions[0]))

static void test_rope(suite *S)
{
    static const struct {
        int32_t hd, heads, rows;
        float pos_div, theta;
        int64_t extra; /* unrotated columns after the heads, and they must stay as they are */
    } cs[] = {{64, 1, 5, 1, 10000, 0},      {64, 8, 3, 4, 500000, 9},  {100, 3, 7, 1, 10000, 9},
              {100, 5, 2, 4, 10000, 0},     {128, 8, 9, 1, 500000, 0}, {128, 2, 4, 4, 500000, 9}};
    brt_backend *be = S->be;
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int32_t hd = cs[ci].hd, heads = cs[ci].heads, rows = cs[ci].rows, half = hd / 2;
        const int64_t w = (int64_t)heads * hd, ld = w + cs[ci].extra;
        char name[200];
        snprintf(name, sizeof name, "rope hd=%d heads=%d rows=%d pos<=500000 pos_div=%g theta=%g ld=%lld", hd, heads,
                 rows, cs[ci].pos_div, cs[ci].theta, (long long)ld);
        if (!wanted(S, name))
            continue;
        seed(name);
        float inv[1024];
        make_inv_freq(inv, hd, cs[ci].theta);
        tbuf *ib = tb_new(S, half, BRT_DT_F32); /* [hd / 2] f32 inv_freq */
        memcpy(ib->want, inv, (size_t)half * sizeof(float));
        tb_upload(S, ib);
        const brt_rope rope = {tb_mat(ib, 0, half), hd, cs[ci].pos_div};
        tbuf *x = tb_new(S, rows * ld, BRT_DT_F32); /* [rows, ld] f32 */
        tb_fill(x, 0, ld, rows, 0, ld, 1.0f);
        tb_upload(S, x);
        int32_t pos[16];
        double y[1024];
        for (int32_t r = 0; r < rows; r++) {
            pos[r] = r < 2 ? k_positions[r] : r % 3 ? k_positions[(r + (int32_t)ci) % N_POSITIONS] : rnd_int(500001);
            ref_rope(x->want + r * ld, y, heads, hd, inv, cs[ci].pos_div, pos[r]);
            for (int64_t i = 0; i < w; i++)
                x->want[r * ld + i] = (float)y[i];
        }
        CALL(S, be->rope(be, tb_mat(x, 0, ld), rows, heads, &rope, pos, &S->err));
        report(S, name, tb_check(S, x, 0), tol(S, T_ROPE));
        end_group(S);
    }
}

/* ---- copy_rows --------------------------------------------------------------------------------- */

enum { ROPE_NONE, ROPE_POS, ROPE_POS0 };

/* Runs over a set of test buffers: run i is n rows from row `row` of buffer `buf`. */
typedef struct {
    int buf;
    int64_t row;
    int32_t n;
} run_spec;

/* What row i of a copy_rows call becomes: the source row (f32 values) rotated when asked, rounded
 * to the destination's dtype. */
static void ref_copy_row(const float *src, float *dst, brt_dtype ddt, int64_t cols, int rope_kind, int32_t hd,
                         const float *inv, int32_t pos)
{
    if (rope_kind == ROPE_NONE) {
        for (int64_t c = 0; c < cols; c++)
            dst[c] = round_to(ddt, src[c]);
        return;
    }
    double y[4096];
    ref_rope(src, y, (int32_t)(cols / hd), hd, inv, 1.0f, pos);
    for (int64_t c = 0; c < cols; c++)
        dst[c] = round_to(ddt, (float)y[c]);
}

static void rope_suffix(char *s, size_t cap, int kind, int32_t hd, int32_t pos0)
{
    if (kind == ROPE_POS)
        snprintf(s, cap, " rope hd=%d pos[]", hd);
    else if (kind == ROPE_POS0)
        snprintf(s, cap, " rope hd=%d pos0=%d", hd, pos0);
    else
        s[0] = '\0';
}

static void test_copy_gather(suite *S)
{
    static const struct {
        brt_dtype sdt, ddt;
        int rope;
        int32_t hd, heads;
    } cs[] = {{BRT_DT_F32, BRT_DT_F32, ROPE_NONE, 0, 0},      {BRT_DT_F32, BRT_DT_BF16, ROPE_NONE, 0, 0},
              {BRT_DT_BF16, BRT_DT_F32, ROPE_NONE, 0, 0},     {BRT_DT_BF16, BRT_DT_BF16, ROPE_NONE, 0, 0},
              {BRT_DT_F32, BRT_DT_BF16, ROPE_POS, 128, 2},    {BRT_DT_BF16, BRT_DT_BF16, ROPE_POS0, 64, 4},
              {BRT_DT_F32, BRT_DT_F32, ROPE_POS, 100, 2},     {BRT_DT_BF16, BRT_DT_F32, ROPE_POS0, 128, 1}};
    /* sources: 3 buffers [rows, ld = cols + pad]; destinations: 2 */
    static const int64_t src_rows[3] = {40, 27, 64}, src_pad[3] = {0, 5, 0};
    static const int64_t dst_rows[2] = {60, 30}, dst_pad[2] = {3, 0};
    static const run_spec sruns[4] = {{1, 5, 7}, {0, 10, 1}, {2, 0, 33}, {0, 20, 12}};
    static const run_spec druns[3] = {{1, 4, 20}, {0, 0, 9}, {0, 30, 24}};
    const int32_t n = 53, pos0 = 499950;
    brt_backend *be = S->be;
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int64_t cols = cs[ci].rope ? (int64_t)cs[ci].hd * cs[ci].heads : 257;
        char name[220], rs[64];
        rope_suffix(rs, sizeof rs, cs[ci].rope, cs[ci].hd, pos0);
        snprintf(name, sizeof name,
                 "copy_rows %s->%s gather 4 runs of 3 buffers -> 3 runs of 2 buffers rows=%d cols=%lld%s",
                 dt_name(cs[ci].sdt), dt_name(cs[ci].ddt), n, (long long)cols, rs);
        if (!wanted(S, name))
            continue;
        seed(name);
        tbuf *sb[3], *db[2];
        int64_t sld[3], dld[2];
        for (int i = 0; i < 3; i++) {
            sld[i] = cols + src_pad[i];
            sb[i] = tb_new(S, src_rows[i] * sld[i], cs[ci].sdt); /* [src_rows, sld] sdt */
            tb_fill(sb[i], 0, sld[i], src_rows[i], 0, cols, 1.0f);
            tb_upload(S, sb[i]);
        }
        for (int i = 0; i < 2; i++) {
            dld[i] = cols + dst_pad[i];
            db[i] = tb_new(S, dst_rows[i] * dld[i], cs[ci].ddt); /* [dst_rows, dld] ddt */
        }
        brt_run src[4], dst[3];
        for (int i = 0; i < 4; i++)
            src[i] = (brt_run){tb_mat(sb[sruns[i].buf], sruns[i].row, sld[sruns[i].buf]), sruns[i].n};
        for (int i = 0; i < 3; i++)
            dst[i] = (brt_run){tb_mat(db[druns[i].buf], druns[i].row, dld[druns[i].buf]), druns[i].n};
        float inv[512];
        tbuf *ib = NULL;
        brt_rope rope = {{0}, cs[ci].hd, 1.0f};
        if (cs[ci].rope) {
            make_inv_freq(inv, cs[ci].hd, 10000.0f);
            ib = tb_new(S, cs[ci].hd / 2, BRT_DT_F32); /* [hd / 2] f32 */
            memcpy(ib->want, inv, (size_t)(cs[ci].hd / 2) * sizeof(float));
            tb_upload(S, ib);
            rope.inv_freq = tb_mat(ib, 0, cs[ci].hd / 2);
        }
        int32_t pos[53];
        for (int32_t i = 0; i < n; i++)
            pos[i] = i % 4 ? rnd_int(500001) : k_positions[(i / 4) % N_POSITIONS];
        /* the reference, row by row through both run lists */
        for (int32_t i = 0, si = 0, sk = 0, di = 0, dk = 0; i < n; i++) {
            const run_spec *a = &sruns[si], *b = &druns[di];
            const float *sv = sb[a->buf]->want + (a->row + sk) * sld[a->buf];
            float *dv = db[b->buf]->want + (b->row + dk) * dld[b->buf];
            ref_copy_row(sv, dv, cs[ci].ddt, cols, cs[ci].rope, cs[ci].hd, inv,
                         cs[ci].rope == ROPE_POS ? pos[i] : pos0 + i);
            if (++sk == a->n)
                si++, sk = 0;
            if (++dk == b->n)
                di++, dk = 0;
        }
        CALL(S, be->copy_rows(be, dst, 3, src, 4, cols, cs[ci].rope ? &rope : NULL,
                              cs[ci].rope == ROPE_POS ? pos : NULL, cs[ci].rope == ROPE_POS0 ? pos0 : 0, &S->err));
        const int t = !cs[ci].rope ? T_EXACT : cs[ci].ddt == BRT_DT_BF16 ? T_BF16_OUT : T_ROPE;
        double err = 0;
        for (int i = 0; i < 2; i++) {
            const double e = tb_check(S, db[i], 0);
            err = e > err ? e : err;
        }
        report(S, name, err, tol(S, t));
        end_group(S);
    }
}

/* Runs covering rows [r0, r1) of one buffer, split where blocks of `block` rows end (as a KV
 * sequence's runs are). */
static int32_t block_runs(const tbuf *t, int64_t ld, int64_t r0, int64_t r1, int64_t block, brt_run *out)
{
    int32_t n = 0;
    for (int64_t r = r0; r < r1;) {
        const int64_t end = (r / block + 1) * block < r1 ? (r / block + 1) * block : r1;
        out[n++] = (brt_run){tb_mat(t, r, ld), (int32_t)(end - r)};
        r = end;
    }
    return n;
}

/* A KV window drop: rows [s, n) move to [0, n - s) of the same buffer (the runs overlap). */
static void test_copy_shift(suite *S)
{
    static const struct {
        brt_dtype dt;
        int rope;
        int32_t hd, heads;
    } cs[] = {{BRT_DT_F32, ROPE_NONE, 0, 0},
              {BRT_DT_BF16, ROPE_NONE, 0, 0},
              {BRT_DT_BF16, ROPE_POS0, 128, 8},
              {BRT_DT_F32, ROPE_POS, 64, 4}};
    const int64_t n = 100, s = 37, block = 32;
    const int32_t pos0 = 123457;
    brt_backend *be = S->be;
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const brt_dtype dt = cs[ci].dt;
        const int64_t cols = cs[ci].rope ? (int64_t)cs[ci].hd * cs[ci].heads : 1027;
        char name[220], same[260], rs[64];
        rope_suffix(rs, sizeof rs, cs[ci].rope, cs[ci].hd, pos0);
        snprintf(name, sizeof name,
                 "copy_rows %s->%s in-place shift rows [%lld,%lld) -> [0,%lld) of one buffer, runs split at %lld-row "
                 "blocks, cols=%lld%s",
                 dt_name(dt), dt_name(dt), (long long)s, (long long)n, (long long)(n - s), (long long)block,
                 (long long)cols, rs);
        snprintf(same, sizeof same,
                 "copy_rows %s in-place shift by %lld cols=%lld%s equals the copy into another buffer",
                 dt_name(dt), (long long)s, (long long)cols, rs);
        if (!wanted(S, name) && !wanted(S, same))
            continue;
        seed(name);
        tbuf *x = tb_new(S, n * cols, dt), *z = tb_new(S, n * cols, dt); /* [n, cols] dt each */
        tb_fill(x, 0, cols, n, 0, cols, 1.0f);
        tb_upload(S, x);
        float inv[512];
        brt_rope rope = {{0}, cs[ci].hd, 1.0f};
        if (cs[ci].rope) {
            make_inv_freq(inv, cs[ci].hd, 500000.0f);
            tbuf *ib = tb_new(S, cs[ci].hd / 2, BRT_DT_F32); /* [hd / 2] f32 */
            memcpy(ib->want, inv, (size_t)(cs[ci].hd / 2) * sizeof(float));
            tb_upload(S, ib);
            rope.inv_freq = tb_mat(ib, 0, cs[ci].hd / 2);
        }
        int32_t pos[100];
        for (int64_t i = 0; i < n - s; i++) {
            pos[i] = (int32_t)(i * 4099 % 500001);
            ref_copy_row(x->want + (s + i) * cols, z->want + i * cols, dt, cols, cs[ci].rope, cs[ci].hd, inv,
                         cs[ci].rope == ROPE_POS ? pos[i] : pos0 + (int32_t)i);
        }
        brt_run dz[8], dx[8], sx[8];
        const int32_t nd = block_runs(z, cols, 0, n - s, block, dz), ns = block_runs(x, cols, s, n, block, sx);
        block_runs(x, cols, 0, n - s, block, dx);
        const brt_rope *rp = cs[ci].rope ? &rope : NULL;
        const int32_t *pp = cs[ci].rope == ROPE_POS ? pos : NULL;
        const int32_t p0 = cs[ci].rope == ROPE_POS0 ? pos0 : 0;
        CALL(S, be->copy_rows(be, dz, nd, sx, ns, cols, rp, pp, p0, &S->err));
        CALL(S, be->copy_rows(be, dx, nd, sx, ns, cols, rp, pp, p0, &S->err));
        memcpy(x->want, z->want, (size_t)((n - s) * cols) * sizeof(float)); /* rows [n - s, n) stay */
        const int t = !cs[ci].rope ? T_EXACT : dt == BRT_DT_BF16 ? T_BF16_OUT : T_ROPE;
        const int failed = S->bad;
        report(S, name, tb_check(S, x, 0), tol(S, t));
        S->bad = failed;
        tb_download(S, z);
        int64_t differing = 0;
        const double d = bit_diff(x->got, z->got, (n - s) * cols, &differing);
        if (differing)
            snprintf(S->note, sizeof S->note, "%lld elements differ in their bits", (long long)differing);
        report(S, same, differing ? (d > 0 ? d : INFINITY) : 0.0, 0);
        end_group(S);
    }

    const char *name = "copy_rows 10 destination rows for 11 source rows returns an error";
    if (wanted(S, name)) {
        tbuf *a = tb_new(S, 16 * 8, BRT_DT_F32), *b = tb_new(S, 16 * 8, BRT_DT_F32); /* [16, 8] f32 each */
        const brt_run dst = {tb_mat(a, 0, 8), 10}, src = {tb_mat(b, 0, 8), 11};
        report_error_status(S, name, be->copy_rows(be, &dst, 1, &src, 1, 8, NULL, NULL, 0, &S->err));
        end_group(S);
    }
}

/* ---- embed --------------------------------------------------------------------------------- */

static void test_embed(suite *S)
{
    static const struct {
        brt_dtype dt, alt_dt;
        int64_t dim;
    } cs[] = {{BRT_DT_F32, BRT_DT_F32, 576}, {BRT_DT_F16, BRT_DT_F16, 100}, {BRT_DT_BF16, BRT_DT_F32, 128}};
    static const int32_t ids[11] = {5, 0, 1002, BRT_EMBED_ALT, BRT_EMBED_ZERO, 17, BRT_EMBED_ALT, 999, 500,
                                    BRT_EMBED_ZERO, 3};
    const int64_t vocab = 1003, n = 11;
    brt_backend *be = S->be;
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int64_t dim = cs[ci].dim, ld = dim + 4;
        char name[200];
        snprintf(name, sizeof name,
                 "embed %s table vocab=%lld dim=%lld 11 ids incl. ALT (%s alt row 0) and ZERO out ld=%lld",
                 dt_name(cs[ci].dt), (long long)vocab, (long long)dim, dt_name(cs[ci].alt_dt), (long long)ld);
        if (!wanted(S, name))
            continue;
        seed(name);
        tweight tab, alt;
        tw_make(S, &tab, cs[ci].dt, vocab, dim, "embed");
        tw_make(S, &alt, cs[ci].alt_dt, 1, dim, "beacon");
        tbuf *out = tb_new(S, (1 + n) * ld, BRT_DT_F32); /* [1 + n, ld] f32, rows from 1 */
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < dim; c++)
                out->want[(1 + i) * ld + c] = ids[i] == BRT_EMBED_ZERO ? 0.0f
                                              : ids[i] == BRT_EMBED_ALT ? alt.val[c]
                                                                        : tab.val[ids[i] * dim + c];
        CALL(S, be->embed(be, &tab.w, &alt.w, ids, n, tb_mat(out, 1, ld), &S->err));
        report(S, name, tb_check(S, out, 0), tol(S, T_EMBED));
        free(tab.val);
        free(alt.val);
        end_group(S);
    }

    static const char *bad_names[3] = {"embed id 1003 of a 1003-row table returns an error",
                                       "embed id -3 (below BRT_EMBED_ZERO) returns an error",
                                       "embed BRT_EMBED_ALT without an alt table returns an error"};
    if (!wanted(S, bad_names[0]) && !wanted(S, bad_names[1]) && !wanted(S, bad_names[2]))
        return;
    seed(bad_names[0]);
    tweight tab;
    tw_make(S, &tab, BRT_DT_BF16, vocab, 64, "embed");
    tbuf *out = tb_new(S, 2 * 64, BRT_DT_F32); /* [2, 64] f32 */
    const int32_t bad[3][2] = {{3, 1003}, {-3, 3}, {BRT_EMBED_ALT, 3}};
    for (int i = 0; i < 3; i++)
        if (wanted(S, bad_names[i]))
            report_error_status(S, bad_names[i], be->embed(be, &tab.w, NULL, bad[i], 2, tb_mat(out, 0, 64), &S->err));
    free(tab.val);
    end_group(S);
}

/* ---- attention ---------------------------------------------------------------------------- */

#define MAX_SPANS 128
#define QSCALE 4.0f /* queries over [-4, 4]: scores spread like a trained model's, the softmax peaks */

/* A stand-in for a KV pool block: slots of ld elements, K at column 0 of k and V at column voff
 * of v (k == v: one buffer holds both, interleaved). */
typedef struct {
    tbuf *k, *v;
    int64_t ld, voff;
    int32_t slots, used;
} kv_block;

/* The keys of one segment under construction, and the host copies the reference reads. */
typedef struct {
    int32_t rows, q_row;           /* query rows; the first one's row in the call's q and out */
    int32_t n_spans, n_keys;
    brt_kv_span spans[MAX_SPANS];
    const float *hk[MAX_SPANS], *hv[MAX_SPANS]; /* each span's slot 0 on the host */
    int64_t hld[MAX_SPANS];
    brt_attn_vis *vis;             /* [rows] */
} seg_build;

typedef struct {
    int32_t nh, nkv, hd;
    int64_t kvd;                   /* nkv * hd: one K or V slot */
    tbuf *qkv;                     /* [rows, ldq] f32: this step's q | k | v, as a fused projection writes them */
    int64_t ldq;
    tbuf *out;                     /* [1 + rows, ldo] f32, row 0 never written */
    int64_t ldo;
} attn_ctx;

static void block_init(suite *S, kv_block *b, int32_t slots, int64_t kvd, brt_dtype dt, int interleaved)
{
    b->slots = slots;
    b->used = 0;
    b->ld = interleaved ? 2 * kvd : kvd;
    b->voff = interleaved ? kvd : 0;
    b->k = tb_new(S, slots * b->ld, dt); /* [slots, ld] dt */
    b->v = interleaved ? b->k : tb_new(S, slots * b->ld, dt);
}

/* n slots of random K and V from a block (after a gap of 0-2 slots, which stay NaN and must
 * never be read), as the segment's next span. */
static void seg_pool_span(seg_build *g, kv_block *b, int32_t n, int64_t kvd)
{
    const int32_t s0 = b->used + rnd_int(3);
    if (s0 + n > b->slots || g->n_spans == MAX_SPANS) {
        fprintf(stderr, "test_backend_ops: attention test layout overflows its blocks\n");
        exit(2);
    }
    b->used = s0 + n;
    tb_fill(b->k, s0, b->ld, n, 0, kvd, 1.0f);
    tb_fill(b->v, s0, b->ld, n, b->voff, kvd, 1.0f);
    const int i = g->n_spans++;
    g->spans[i] = (brt_kv_span){tb_mat(b->k, s0, b->ld), brt_mat_col(tb_mat(b->v, s0, b->ld), b->voff), n};
    g->hk[i] = b->k->want + s0 * b->ld;
    g->hv[i] = b->v->want + s0 * b->ld + b->voff;
    g->hld[i] = b->ld;
    g->n_keys += n;
}

/* The segment's own rows as its last span (f32, inside the fused qkv rows). */
static void seg_current_span(seg_build *g, const attn_ctx *A)
{
    const int i = g->n_spans++;
    const brt_mat row = tb_mat(A->qkv, g->q_row, A->ldq);
    g->spans[i] = (brt_kv_span){brt_mat_col(row, (int64_t)A->nh * A->hd),
                                brt_mat_col(row, (int64_t)(A->nh + A->nkv) * A->hd), g->rows};
    g->hk[i] = A->qkv->want + g->q_row * A->ldq + (int64_t)A->nh * A->hd;
    g->hv[i] = g->hk[i] + A->kvd;
    g->hld[i] = A->ldq;
    g->n_keys += g->rows;
}

static brt_attn_vis vis1(int32_t lo, int32_t hi) { return (brt_attn_vis){{lo}, {hi}, 1}; }

/* Reference: per row and head, softmax in double over the visible keys of (q . k) / scale_div,
 * then the weighted sum of V; a row that sees no key gets zeros. Written into out->want. */
static void attn_ref(const attn_ctx *A, const seg_build *g, float scale_div)
{
    const int32_t G = A->nh / A->nkv, hd = A->hd;
    double *sc = xmalloc((size_t)g->n_keys * sizeof(double));
    unsigned char *seen = xmalloc((size_t)g->n_keys);
    double acc[256];
    for (int32_t r = 0; r < g->rows; r++) {
        const brt_attn_vis *v = &g->vis[r];
        memset(seen, 0, (size_t)g->n_keys);
        for (int32_t i = 0; i < v->n; i++)
            for (int32_t j = v->lo[i] > 0 ? v->lo[i] : 0; j < v->hi[i] && j < g->n_keys; j++)
                seen[j] = 1;
        for (int32_t h = 0; h < A->nh; h++) {
            const int64_t kvo = (int64_t)(h / G) * hd;
            const float *q = A->qkv->want + (g->q_row + r) * A->ldq + (int64_t)h * hd;
            float *o = A->out->want + (1 + g->q_row + r) * A->ldo + (int64_t)h * hd;
            double mx = -INFINITY, sum = 0;
            for (int32_t s = 0, j = 0; s < g->n_spans; s++)
                for (int32_t i = 0; i < g->spans[s].n; i++, j++)
                    if (seen[j]) {
                        sc[j] = dot(q, g->hk[s] + i * g->hld[s] + kvo, hd) / scale_div;
                        mx = sc[j] > mx ? sc[j] : mx;
                    }
            memset(acc, 0, sizeof acc);
            for (int32_t s = 0, j = 0; mx > -INFINITY && s < g->n_spans; s++)
                for (int32_t i = 0; i < g->spans[s].n; i++, j++)
                    if (seen[j]) {
                        const double p = exp(sc[j] - mx);
                        const float *vv = g->hv[s] + i * g->hld[s] + kvo;
                        sum += p;
                        for (int32_t d = 0; d < hd; d++)
                            acc[d] += p * vv[d];
                    }
            for (int32_t d = 0; d < hd; d++)
                o[d] = sum > 0 ? (float)(acc[d] / sum) : 0.0f;
        }
    }
    free(sc);
    free(seen);
}

static void attn_ctx_init(suite *S, attn_ctx *A, int32_t gqa, int32_t hd, int32_t rows)
{
    A->nkv = 2;
    A->nh = gqa * A->nkv;
    A->hd = hd;
    A->kvd = (int64_t)A->nkv * hd;
    A->ldq = (int64_t)(A->nh + 2 * A->nkv) * hd + 4;
    A->ldo = (int64_t)A->nh * hd + 3;
    A->qkv = tb_new(S, rows * A->ldq, BRT_DT_F32);
    tb_fill(A->qkv, 0, A->ldq, rows, 0, (int64_t)A->nh * hd, QSCALE);
    tb_fill(A->qkv, 0, A->ldq, rows, (int64_t)A->nh * hd, 2 * A->kvd, 1.0f);
    A->out = tb_new(S, (1 + rows) * A->ldo, BRT_DT_F32);
}

/* rows [r0, r0 + rows) of a segment as an op argument, writing into out */
static brt_attn_seg seg_arg(const attn_ctx *A, const seg_build *g, const tbuf *out, int32_t r0, int32_t rows)
{
    return (brt_attn_seg){tb_mat(A->qkv, g->q_row + r0, A->ldq), tb_mat(out, 1 + g->q_row + r0, A->ldo), rows,
                          g->spans, g->n_spans, g->n_keys, g->vis + r0};
}

static kv_block *pick_block(kv_block *bl, int nb, int *next, int32_t n)
{
    for (int t = 0; t < nb; t++) {
        kv_block *b = &bl[(*next + t) % nb];
        if (b->used + n + 2 <= b->slots) {
            *next = (*next + t + 1) % nb;
            return b;
        }
    }
    fprintf(stderr, "test_backend_ops: attention test layout overflows its blocks\n");
    exit(2);
}

/* Four jobs in one call, each its own key count and pattern:
 *   causal  37 rows, 127 pool keys + its rows: row r sees [0, P + r + 1)
 *   beacon  20 raw rows + 6 beacons over sink 4 + memory 36 + a raw window of 70: raw rows causal;
 *           beacon i sees [0, base) + its 15-column slice of the window + itself (so it sees
 *           nothing in most tiles of the window)
 *   decode  1 row over 1500 pool keys + itself
 *   sparse  5 rows over 300 pool keys: nothing at all; one key; three scattered intervals; only
 *           its own span; intervals across tile and span boundaries */
static void attn_multi(suite *S, int32_t gqa, int32_t hd, brt_dtype kvdt)
{
    enum { CAUSAL, BEACON, DECODE, SPARSE, NSEG };
    static const int32_t rows[NSEG] = {37, 26, 1, 5};
    static const int32_t pool[NSEG][4] = {{64, 50, 13, 0}, {4, 36, 32, 38}, {512, 512, 476, 0}, {100, 200, 0, 0}};
    int32_t keys[NSEG], total_rows = 0;
    for (int s = 0; s < NSEG; s++) {
        keys[s] = rows[s];
        for (int i = 0; i < 4; i++)
            keys[s] += pool[s][i];
        total_rows += rows[s];
    }
    char name[240], pname[240];
    snprintf(name, sizeof name,
             "attention gqa=%d hd=%d %s spans: 4 segments (causal %dx%d, beacon %dx%d, decode %dx%d, sparse %dx%d)",
             gqa, hd, dt_name(kvdt), rows[0], keys[0], rows[1], keys[1], rows[2], keys[2], rows[3], keys[3]);
    snprintf(pname, sizeof pname,
             "packing attention gqa=%d hd=%d %s spans: the beacon segment alone and rows 10..19 of the causal one "
             "alone = among all 4",
             gqa, hd, dt_name(kvdt));
    if (!wanted(S, name) && !wanted(S, pname))
        return;
    seed(name);
    brt_backend *be = S->be;
    attn_ctx A;
    attn_ctx_init(S, &A, gqa, hd, total_rows);
    kv_block bl[3];
    for (int i = 0; i < 3; i++)
        block_init(S, &bl[i], 800, A.kvd, kvdt, i == 2);
    seg_build g[NSEG];
    int next = 0;
    for (int s = 0, q_row = 0; s < NSEG; q_row += rows[s], s++) {
        g[s] = (seg_build){.rows = rows[s], .q_row = q_row};
        for (int i = 0; i < 4 && pool[s][i]; i++)
            seg_pool_span(&g[s], pick_block(bl, 3, &next, pool[s][i]), pool[s][i], A.kvd);
        seg_current_span(&g[s], &A);
        g[s].vis = xmalloc((size_t)rows[s] * sizeof(brt_attn_vis));
    }
    const int32_t P0 = keys[CAUSAL] - rows[CAUSAL];
    for (int32_t r = 0; r < rows[CAUSAL]; r++)
        g[CAUSAL].vis[r] = vis1(0, P0 + r + 1);
    const int32_t base = 40, R = 70, nr = 20, nb = 6, w = R + nr, stride = w / nb, bcol = base + w;
    for (int32_t j = 0; j < nr; j++)
        g[BEACON].vis[j] = vis1(0, base + R + j + 1);
    for (int32_t i = 0; i < nb; i++) {
        const int32_t hi = (i + 1) * stride < w ? (i + 1) * stride : w;
        g[BEACON].vis[nr + i] = (brt_attn_vis){{0, base + i * stride, bcol + i}, {base, base + hi, bcol + i + 1}, 3};
    }
    g[DECODE].vis[0] = vis1(0, keys[DECODE]);
    const int32_t nk = keys[SPARSE];
    g[SPARSE].vis[0] = (brt_attn_vis){{0}, {0}, 0};
    g[SPARSE].vis[1] = vis1(3, 4);
    g[SPARSE].vis[2] = (brt_attn_vis){{0, 200, nk - 1}, {10, 233, nk}, 3};
    g[SPARSE].vis[3] = vis1(nk - rows[SPARSE], nk);
    g[SPARSE].vis[4] = (brt_attn_vis){{31, 64, nk - rows[SPARSE] - 1}, {33, 65, nk - rows[SPARSE] + 1}, 3};
    tb_upload(S, A.qkv);
    for (int i = 0; i < 3; i++) {
        tb_upload(S, bl[i].k);
        if (bl[i].v != bl[i].k)
            tb_upload(S, bl[i].v);
    }
    const float scale_div = sqrtf((float)hd);
    for (int s = 0; s < NSEG; s++)
        attn_ref(&A, &g[s], scale_div);
    brt_attn_seg segs[NSEG];
    for (int s = 0; s < NSEG; s++)
        segs[s] = seg_arg(&A, &g[s], A.out, 0, rows[s]);
    brt_attn_args args = {segs, NSEG, A.nh, A.nkv, hd, scale_div};
    CALL(S, be->attention(be, &args, &S->err));
    const int failed = S->bad;
    report(S, name, tb_check(S, A.out, A.ldo), tol(S, T_ATTN));
    S->bad = failed;

    /* the same rows in other calls */
    tbuf *out2 = tb_new(S, A.out->n, BRT_DT_F32); /* [1 + rows, ldo] f32 */
    brt_attn_seg alone = seg_arg(&A, &g[BEACON], out2, 0, rows[BEACON]);
    args = (brt_attn_args){&alone, 1, A.nh, A.nkv, hd, scale_div};
    CALL(S, be->attention(be, &args, &S->err));
    alone = seg_arg(&A, &g[CAUSAL], out2, 10, 10);
    CALL(S, be->attention(be, &args, &S->err));
    tb_download(S, out2);
    double diff = 0;
    int64_t differing = 0;
    const int64_t w_out = (int64_t)A.nh * hd;
    for (int32_t r = 0; r < rows[BEACON] + 10; r++) {
        const int64_t row = 1 + (r < rows[BEACON] ? g[BEACON].q_row + r : g[CAUSAL].q_row + 10 + r - rows[BEACON]);
        const double e = bit_diff(out2->got + row * A.ldo, A.out->got + row * A.ldo, w_out, &differing);
        diff = e > diff ? e : diff;
    }
    report_packing(S, pname, diff, differing);
    for (int s = 0; s < NSEG; s++)
        free(g[s].vis);
    end_group(S);
}

/* One job over a long context: n_keys keys in spans of 700..2600 slots from 8 blocks in shuffled
 * order, 6 query rows: causal over everything, beacon-like (the first 1/16 of the keys + a middle
 * stretch + itself), everything, a window starting off any tile boundary, the first 37 keys + the
 * last two thirds, causal. Then each row alone in its own call, which must give the same bits:
 * with 6 rows the kernel takes several query vectors at once where alone it takes one row's. */
static void attn_long(suite *S, int32_t gqa, int32_t hd, brt_dtype kvdt, int32_t n_keys)
{
    enum { NB = 8, ROWS = 6 };
    const int32_t P = n_keys - ROWS;
    char tag[64];
    snprintf(tag, sizeof tag, "attention long %d %d %d", gqa, hd, n_keys);
    seed(tag);
    /* spans per block, then shuffled: blocks are used in no particular order, as in a pool */
    int32_t sp_block[MAX_SPANS], sp_n[MAX_SPANS], n_sp = 0, share[NB];
    for (int b = 0; b < NB; b++) {
        share[b] = P / NB + (b == NB - 1 ? P % NB : 0);
        for (int32_t left = share[b]; left > 0;) {
            int32_t len = 700 + rnd_int(1901);
            len = len > left ? left : len;
            sp_block[n_sp] = b;
            sp_n[n_sp++] = len;
            left -= len;
        }
    }
    for (int i = n_sp - 1; i > 0; i--) {
        const int j = rnd_int(i + 1);
        int32_t tb = sp_block[i], tn = sp_n[i];
        sp_block[i] = sp_block[j], sp_n[i] = sp_n[j];
        sp_block[j] = tb, sp_n[j] = tn;
    }
    char name[200], pname[240];
    snprintf(name, sizeof name, "attention gqa=%d hd=%d keys=%d in %d spans rows=%d %s spans (causal, beacon-like)",
             gqa, hd, n_keys, n_sp + 1, ROWS, dt_name(kvdt));
    snprintf(pname, sizeof pname, "packing attention gqa=%d hd=%d keys=%d %s spans: each of the %d rows alone = all together",
             gqa, hd, n_keys, dt_name(kvdt), ROWS);
    if (!wanted(S, name) && !wanted(S, pname))
        return;
    brt_backend *be = S->be;
    attn_ctx A;
    attn_ctx_init(S, &A, gqa, hd, ROWS);
    kv_block bl[NB];
    for (int b = 0; b < NB; b++)
        block_init(S, &bl[b], share[b] + 3 * (share[b] / 700 + 1), A.kvd, kvdt, b % 2);
    seg_build *g = xmalloc(sizeof *g);
    *g = (seg_build){.rows = ROWS};
    for (int i = 0; i < n_sp; i++)
        seg_pool_span(g, &bl[sp_block[i]], sp_n[i], A.kvd);
    seg_current_span(g, &A);
    brt_attn_vis vis[ROWS] = {vis1(0, P + 1),
                              {{0, P / 2 - P / 8, P + 1}, {P / 16, P / 2 + P / 7, P + 2}, 3},
                              vis1(0, P + 3),
                              vis1(P / 5 + 7, P + 4),
                              {{0, P / 3 + 5}, {37, P + 5}, 2},
                              vis1(0, P + 6)};
    g->vis = vis;
    tb_upload(S, A.qkv);
    for (int b = 0; b < NB; b++) {
        tb_upload(S, bl[b].k);
        if (bl[b].v != bl[b].k)
            tb_upload(S, bl[b].v);
    }
    const float scale_div = sqrtf((float)hd);
    attn_ref(&A, g, scale_div);
    brt_attn_seg seg = seg_arg(&A, g, A.out, 0, ROWS);
    const brt_attn_args args = {&seg, 1, A.nh, A.nkv, hd, scale_div};
    CALL(S, be->attention(be, &args, &S->err));
    const int failed = S->bad;
    report(S, name, tb_check(S, A.out, A.ldo), tol(S, T_ATTN));
    S->bad = failed;

    tbuf *out2 = tb_new(S, A.out->n, BRT_DT_F32); /* [1 + rows, ldo] f32 */
    for (int32_t r = 0; r < ROWS; r++) {
        brt_attn_seg one = seg_arg(&A, g, out2, r, 1);
        const brt_attn_args a1 = {&one, 1, A.nh, A.nkv, hd, scale_div};
        CALL(S, be->attention(be, &a1, &S->err));
    }
    tb_download(S, out2);
    int64_t differing = 0;
    double diff = 0;
    for (int32_t r = 0; r < ROWS; r++) {
        const double e = bit_diff(out2->got + (1 + r) * A.ldo, A.out->got + (1 + r) * A.ldo, (int64_t)A.nh * hd,
                                  &differing);
        diff = e > diff ? e : diff;
    }
    report_packing(S, pname, diff, differing);
    free(g);
    end_group(S);
}

static void test_attention(suite *S)
{
    static const int32_t gqas[3] = {1, 4, 8}, hds[3] = {64, 100, 128};
    static const brt_dtype dts[2] = {BRT_DT_F32, BRT_DT_BF16};
    for (int a = 0; a < 3; a++)
        for (int h = 0; h < 3; h++)
            for (int d = 0; d < 2; d++)
                attn_multi(S, gqas[a], hds[h], dts[d]);
    attn_long(S, 4, 128, BRT_DT_BF16, S->quick ? 16384 : 65536);
    attn_long(S, 8, 64, BRT_DT_F32, S->quick ? 8192 : 32768);
}

/* ---- logits and logit_rows -------------------------------------------------------------------- */

/* The request of row `row` in round `round`: every kind comes round for every row. */
static brt_logit_req make_req(int32_t row, int32_t round, int32_t vocab)
{
    brt_logit_req q = {-1, 0, 1, 0.0f, 1.0f, 1000u + 17u * (uint64_t)round + (uint64_t)row,
                       3u * (uint64_t)round + (uint64_t)row};
    switch ((row + 2 * round) % 6) {
    case 0: q.target = rnd_int(vocab); break;                                                 /* greedy */
    case 1: q.top_k = 1, q.temperature = 0.8f; break;                                         /* target -1 */
    case 2: q.target = vocab, q.top_k = 5, q.temperature = 0.8f, q.top_p = 0.9f; break;       /* out of range */
    case 3: q.target = 0, q.top_k = 20, q.sample = 0; break;
    case 4: q.target = vocab - 1, q.top_k = 20, q.temperature = 0.8f, q.top_p = 0.9f; break;
    default: q.target = rnd_int(vocab), q.top_k = 5, q.temperature = 0.8f; break;
    }
    return q;
}

/* |a - b| / max(1, |b|) for log-probabilities; NaN must match NaN */
static double lp_err(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0.0 : INFINITY;
    if (a == b) /* -inf at a masked token */
        return 0.0;
    return fabs((double)a - b) / (fabs(b) > 1 ? fabs(b) : 1.0);
}

/* One result against brt_logit_row's: tokens exactly, log-probabilities within tolerance. */
static double cmp_logit_out(suite *S, const brt_logit_req *q, const brt_logit_out *got, const brt_logit_out *want,
                            int64_t row, int32_t round)
{
    if (q->sample && got->sampled != want->sampled) {
        snprintf(S->note, sizeof S->note, "row %lld round %d: sampled %d, want %d (T=%g top_p=%g)", (long long)row,
                 round, got->sampled, want->sampled, q->temperature, q->top_p);
        return INFINITY;
    }
    double e = lp_err(got->target_logprob, want->target_logprob);
    if (q->sample) {
        const double es = lp_err(got->sampled_logprob, want->sampled_logprob);
        e = es > e ? es : e;
    }
    for (int32_t j = 0; j < q->top_k; j++) {
        if (got->top[j].token != want->top[j].token) {
            snprintf(S->note, sizeof S->note, "row %lld round %d: top[%d] is token %d, want %d", (long long)row,
                     round, j, got->top[j].token, want->top[j].token);
            return INFINITY;
        }
        const double et = lp_err(got->top[j].logprob, want->top[j].logprob);
        e = et > e ? et : e;
    }
    if (!(e <= tol(S, T_SAMPLE)) && !S->note[0])
        snprintf(S->note, sizeof S->note, "row %lld round %d: a log-probability off by %.3g", (long long)row, round, e);
    return e;
}

/* logit_rows over rows of a logits view, for several rounds of requests, against brt_logit_row
 * on the same logits as the host reads them back. */
static double check_logit_rows(suite *S, const tbuf *t, int64_t row0, int64_t ld, int64_t n, int32_t vocab,
                               int32_t rounds)
{
    brt_backend *be = S->be;
    brt_logit_req *req = xmalloc((size_t)n * sizeof *req);
    brt_logit_out *got = xmalloc((size_t)n * sizeof *got);
    brt_logit_out want;
    float *work = xmalloc((size_t)vocab * 2 * sizeof(float));
    double err = 0;
    for (int32_t r = 0; r < rounds; r++) {
        for (int64_t i = 0; i < n; i++)
            req[i] = make_req((int32_t)i, r, vocab);
        memset(got, 0xff, (size_t)n * sizeof *got);
        CALL(S, be->logit_rows(be, tb_mat(t, row0, ld), n, vocab, req, got, &S->err));
        for (int64_t i = 0; i < n && !S->bad && !S->broken; i++) {
            brt_logit_row(t->got + (row0 + i) * ld, vocab, &req[i], &want, work);
            const double e = cmp_logit_out(S, &req[i], &got[i], &want, i, r);
            err = e > err ? e : err;
        }
    }
    free(req);
    free(got);
    free(work);
    return err;
}

static void test_logits(suite *S)
{
    static const struct {
        int32_t vocab;
        brt_dtype dt;
        int64_t dim, m;
        int padded;
    } cs[] = {{1003, BRT_DT_F32, 64, 5, 1}, {32000, BRT_DT_BF16, 576, 4, 0}, {49152, BRT_DT_F16, 256, 3, 1}};
    enum { ROUNDS = 3 };
    brt_backend *be = S->be;
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int32_t vocab = cs[ci].vocab;
        const int64_t dim = cs[ci].dim, m = cs[ci].m, ld = cs[ci].padded ? vocab + 5 : vocab;
        char name[160], rname[300];
        snprintf(name, sizeof name, "logits %s lm_head vocab=%d dim=%lld m=%lld ld=%lld", dt_name(cs[ci].dt), vocab,
                 (long long)dim, (long long)m, (long long)ld);
        snprintf(rname, sizeof rname,
                 "logit_rows vocab=%d %lld rows x %d rounds on the logits op's output ld=%lld: greedy, T=0.8 top_p 1 "
                 "and 0.9, top_k 0/1/5/20, targets incl. -1 and out of range",
                 vocab, (long long)m, ROUNDS, (long long)ld);
        if (!wanted(S, name) && !wanted(S, rname))
            continue;
        seed(name);
        tweight lm;
        tw_make(S, &lm, cs[ci].dt, vocab, dim, "lm_head");
        tbuf *x = tb_new(S, m * dim, BRT_DT_F32); /* [m, dim] f32 */
        /* logits with a spread of about 2.5 (u uniform: var(x . w) = dim * s^2 / 9), so sampling at
         * T = 0.8 has many candidates */
        tb_fill(x, 0, dim, m, 0, dim, 7.5f / sqrtf((float)dim));
        tb_upload(S, x);
        tbuf *out = tb_new(S, m * ld, BRT_DT_F32); /* [m, ld] f32 */
        for (int64_t i = 0; i < m; i++)
            for (int32_t j = 0; j < vocab; j++)
                out->want[i * ld + j] = (float)dot(x->want + i * dim, lm.val + (int64_t)j * dim, dim);
        CALL(S, be->logits(be, tb_mat(x, 0, dim), m, &lm.w, tb_mat(out, 0, ld), &S->err));
        const int failed = S->bad;
        report(S, name, tb_check(S, out, 0), tol(S, T_LOGITS));
        S->bad = failed;
        report(S, rname, check_logit_rows(S, out, 0, ld, m, vocab, ROUNDS), tol(S, T_SAMPLE));
        free(lm.val);
        end_group(S);
    }

    /* logits uploaded as they are: ties, flat and offset rows */
    static const int32_t vocabs[2] = {1003, 32000};
    for (int vi = 0; vi < 2; vi++) {
        enum { ROWS = 6, SROUNDS = 4 };
        const int32_t vocab = vocabs[vi];
        const int64_t ld = vocab + 7;
        char name[300];
        snprintf(name, sizeof name,
                 "logit_rows vocab=%d %d rows x %d rounds of set logits ld=%lld: a tied maximum, 30 tied at the top-k "
                 "cut, flat, offset +40, one dominant token, every 11th token masked to -inf",
                 vocab, ROWS, SROUNDS, (long long)ld);
        if (!wanted(S, name))
            continue;
        seed(name);
        tbuf *t = tb_new(S, (1 + ROWS) * ld, BRT_DT_F32); /* [1 + ROWS, ld] f32, rows from 1 */
        for (int32_t r = 0; r < ROWS; r++) {
            float *l = t->want + (1 + r) * ld;
            for (int32_t j = 0; j < vocab; j++)
                l[j] = r == 2 ? 0.01f * rnd_val() : r == 3 ? 40.0f + 3.0f * rnd_val() : 3.0f * rnd_val();
            if (r == 0)
                l[10] = l[700] = 4.5f;
            if (r == 1)
                for (int32_t j = 0; j < 30; j++)
                    l[(j * 31 + 5) % vocab] = 3.5f;
            if (r == 4)
                l[vocab / 3] = 25.0f;
            if (r == 5) /* not all finite: a backend's fast path must give way */
                for (int32_t j = 0; j < vocab; j += 11)
                    l[j] = -INFINITY;
        }
        tb_upload(S, t);
        tb_download(S, t);
        report(S, name, check_logit_rows(S, t, 1, ld, ROWS, vocab, SROUNDS), tol(S, T_SAMPLE));
        end_group(S);
    }
}

/* ---- main ------------------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: test_backend_ops --backend cpu|cuda [--precision bf16|f32] [--isa avx512|avx2|generic] "
                    "[--filter SUBSTRING] [--quick]\n");
    return 2;
}

/* NULL when this CPU runs the kernels of isa, else why not (the CPU backend's own test, by cpuid) */
static const char *isa_missing(const char *isa)
{
    __builtin_cpu_init();
    if (!strcmp(isa, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
                   ? NULL
                   : "avx512f, avx512bw, avx512vl and avx512dq";
    if (!strcmp(isa, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")
                   ? NULL
                   : "avx2, fma and f16c";
    return NULL;
}

int main(int argc, char **argv)
{
    const char *backend = NULL, *precision = NULL, *isa = NULL, *filter = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--backend"))
            backend = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--precision"))
            precision = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--isa"))
            isa = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--filter"))
            filter = argv[++i];
        else
            return usage();
    }
    if (!backend || (strcmp(backend, "cpu") && strcmp(backend, "cuda")) ||
        (precision && strcmp(precision, "bf16") && strcmp(precision, "f32")) ||
        (isa && strcmp(isa, "avx512") && strcmp(isa, "avx2") && strcmp(isa, "generic")))
        return usage();
    if (!strcmp(backend, "cuda")) {
        if (!strstr(brt_backend_devices(), "cuda")) {
            printf("SKIP: this build has no CUDA backend (brt_backend_devices() = \"%s\": nvcc was not found when it "
                   "was configured, -DBRT_CUDA=OFF, or kernels/cuda has no .cu sources yet)\n",
                   brt_backend_devices());
            return 77;
        }
        if (brt_backend_gpu_count() == 0) {
            printf("SKIP: the CUDA backend is built but no GPU is visible to this process "
                   "(brt_backend_gpu_count() = 0)\n");
            return 77;
        }
    } else if (isa && isa_missing(isa)) {
        printf("SKIP: this CPU cannot run the %s kernels (they need %s)\n", isa, isa_missing(isa));
        return 77;
    }

    brt_backend_opts o = {backend, 0, isa, 0, precision};
    brt_backend *be = NULL;
    brt_err err;
    brt_err_clear(&err);
    if (brt_backend_create(&o, &be, &err) != BRT_OK) {
        printf("FAIL: cannot create the %s backend: %s\n", backend, err.msg);
        return 1;
    }
    suite S = {0};
    S.be = be;
    S.bf16 = strcmp(backend, "cpu") && !(precision && !strcmp(precision, "f32"));
    S.exact_packing = !strcmp(be->device, "cpu");
    S.quick = quick;
    S.filter = filter;
    printf("backend %s, %s tolerances, %d threads%s%s%s\n", be->name, S.bf16 ? "bf16" : "f32", be->n_threads,
           quick ? ", quick" : "", filter ? ", filter " : "", filter ? filter : "");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    test_rows(&S);
    test_gemm(&S);
    test_rmsnorm(&S);
    test_silu_add(&S);
    test_rope(&S);
    test_copy_gather(&S);
    test_copy_shift(&S);
    test_embed(&S);
    test_attention(&S);
    test_logits(&S);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (S.n_ok + S.n_fail == 0)
        printf("FAIL: no case ran%s%s\n", filter ? ": nothing matches the filter " : "", filter ? filter : "");
    printf("summary: %s: %d cases, %d ok, %d failed (%.1f s)\n", be->name, S.n_ok + S.n_fail, S.n_ok, S.n_fail,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    const int failed = S.n_fail > 0 || S.n_ok == 0;
    be->destroy(be);
    for (int i = 0; i < S.n_keep; i++)
        free(S.keep[i]);
    free(S.keep);
    free(S.bufs);
    return failed ? 1 : 0;
}
