/* The CPU backend: the op table over the thread pool, dispatching to the best SIMD kernels
 * this processor runs. Work is split by output (columns and rows of a GEMM, query vectors of
 * attention), never by a reduction, so the thread count does not change any number. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cpu/simd/simd_ops.h"
#include "cpu/threadpool.h"
#include "kernels.h"

typedef struct cpu_impl {
    brt_pool *pool;
    const brt_simd_ops *simd;
    float **scratch;       /* per thread, for attention */
    int64_t scratch_floats;
} cpu_impl;

static cpu_impl *impl_of(brt_backend *be) { return be->impl; }

/* ---- GEMM ----------------------------------------------------------------------------- */

typedef struct {
    const brt_simd_ops *simd;
    const float *a;
    int64_t lda, m;
    const brt_weight *w, *bias;
    float *c;
    int64_t ldc;
    int64_t col_chunk, row_chunk, n_col_tasks;
} gemm_job;

static void gemm_task(void *arg, int64_t t, int thread)
{
    gemm_job *j = arg;
    int64_t ct = t % j->n_col_tasks, rt = t / j->n_col_tasks;
    int64_t n0 = ct * j->col_chunk, n1 = n0 + j->col_chunk;
    if (n1 > j->w->rows)
        n1 = j->w->rows;
    int64_t r0 = rt * j->row_chunk, r1 = r0 + j->row_chunk;
    if (r1 > j->m)
        r1 = j->m;
    if (n0 >= n1 || r0 >= r1)
        return;
    j->simd->gemm_cols(j->a + r0 * j->lda, j->lda, r1 - r0, j->w, j->bias, j->c + r0 * j->ldc, j->ldc, n0, n1);
}

static void cpu_gemm(brt_backend *be, const float *a, int64_t lda, int64_t m, const brt_weight *w,
                     const brt_weight *bias, float *c, int64_t ldc)
{
    cpu_impl *ci = impl_of(be);
    if (m <= 0)
        return;
    const int64_t nr = ci->simd->gemm_nr, n = w->rows, T = be->n_threads;
    int64_t tiles = (n + nr - 1) / nr;
    /* columns first (weights are read once per column chunk); rows too when columns are few */
    int64_t col_tasks = tiles < T * 4 ? tiles : T * 4;
    int64_t row_tasks = 1;
    if (col_tasks < T * 2 && m >= 64)
        row_tasks = (T * 2 + col_tasks - 1) / col_tasks;
    gemm_job j = {ci->simd, a, lda, m, w, bias, c, ldc, 0, 0, 0};
    j.col_chunk = (tiles + col_tasks - 1) / col_tasks * nr;
    j.n_col_tasks = (n + j.col_chunk - 1) / j.col_chunk;
    j.row_chunk = (m + row_tasks - 1) / row_tasks;
    j.row_chunk = (j.row_chunk + 7) / 8 * 8;
    int64_t rtasks = (m + j.row_chunk - 1) / j.row_chunk;
    brt_pool_run(ci->pool, j.n_col_tasks * rtasks, gemm_task, &j);
}

static void cpu_logits(brt_backend *be, const float *x, int64_t ldx, int64_t m, const brt_weight *lm_head,
                       float *out, int64_t ldo)
{
    cpu_gemm(be, x, ldx, m, lm_head, NULL, out, ldo);
}

/* ---- row-parallel ops ------------------------------------------------------------------ */

typedef struct {
    const brt_simd_ops *simd;
    int64_t rows, chunk;
    /* op arguments */
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy;
    const float *w;
    float eps;
    int64_t n;
    int32_t heads, hd;
    const float *pos, *inv_freq;
    const brt_weight *table;
    const int32_t *ids;
    int op;
} rows_job;

enum { OP_RMSNORM, OP_SILU, OP_ADD, OP_ROPE, OP_EMBED };

static void rows_task(void *arg, int64_t t, int thread)
{
    rows_job *j = arg;
    int64_t r0 = t * j->chunk, r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    for (int64_t r = r0; r < r1; r++) {
        switch (j->op) {
        case OP_RMSNORM:
            j->simd->rmsnorm_row(j->x + r * j->ldx, j->w, j->eps, j->y + r * j->ldy, j->n);
            break;
        case OP_SILU:
            j->simd->silu_mul_row(j->y + r * j->ldy, j->x + r * j->ldx, j->n);
            break;
        case OP_ADD:
            j->simd->add_row(j->y + r * j->ldy, j->x + r * j->ldx, j->n);
            break;
        case OP_ROPE: {
            float cs[1024], sn[1024]; /* head_dim/2 <= 1024, checked at model load */
            const int32_t half = j->hd / 2;
            for (int32_t i = 0; i < half; i++) {
                float ang = j->pos[r] * j->inv_freq[i];
                cs[i] = cosf(ang);
                sn[i] = sinf(ang);
            }
            j->simd->rope_row(j->y + r * j->ldy, j->heads, j->hd, cs, sn);
            break;
        }
        case OP_EMBED: {
            size_t es = brt_dtype_size(j->table->dtype);
            const void *src = (const char *)j->table->data + (size_t)j->ids[r] * (size_t)j->table->cols * es;
            j->simd->to_f32_row(src, j->table->dtype, j->y + r * j->ldy, j->table->cols);
            break;
        }
        }
    }
}

static void run_rows(brt_backend *be, rows_job *j)
{
    cpu_impl *ci = impl_of(be);
    j->simd = ci->simd;
    int64_t tasks = be->n_threads * 4;
    if (tasks > j->rows)
        tasks = j->rows;
    if (tasks < 1)
        return;
    j->chunk = (j->rows + tasks - 1) / tasks;
    brt_pool_run(ci->pool, (j->rows + j->chunk - 1) / j->chunk, rows_task, j);
}

static void cpu_rmsnorm(brt_backend *be, const float *x, int64_t ldx, const float *w, float eps, float *y,
                        int64_t ldy, int64_t rows, int64_t dim)
{
    rows_job j = {.rows = rows, .x = x, .ldx = ldx, .y = y, .ldy = ldy, .w = w, .eps = eps, .n = dim, .op = OP_RMSNORM};
    run_rows(be, &j);
}

static void cpu_silu_mul(brt_backend *be, float *gate, int64_t ldg, const float *up, int64_t ldu, int64_t rows,
                         int64_t n)
{
    rows_job j = {.rows = rows, .x = up, .ldx = ldu, .y = gate, .ldy = ldg, .n = n, .op = OP_SILU};
    run_rows(be, &j);
}

static void cpu_add(brt_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows, int64_t n)
{
    rows_job j = {.rows = rows, .x = x, .ldx = ldx, .y = y, .ldy = ldy, .n = n, .op = OP_ADD};
    run_rows(be, &j);
}

static void cpu_rope(brt_backend *be, float *x, int64_t ldx, int64_t rows, int32_t heads, int32_t hd,
                     const float *pos, const float *inv_freq)
{
    rows_job j = {.rows = rows, .y = x, .ldy = ldx, .heads = heads, .hd = hd, .pos = pos, .inv_freq = inv_freq, .op = OP_ROPE};
    run_rows(be, &j);
}

static void cpu_embed(brt_backend *be, const brt_weight *table, const int32_t *ids, int64_t n, float *out,
                      int64_t ldo)
{
    rows_job j = {.rows = n, .y = out, .ldy = ldo, .table = table, .ids = ids, .op = OP_EMBED};
    run_rows(be, &j);
}

/* ---- attention -------------------------------------------------------------------------- */

typedef struct {
    const brt_attn_args *a;
    cpu_impl *ci;
    int64_t *task_start; /* prefix of tasks per segment, [n_segs + 1] */
    int32_t qv_per_kvh_tasks_unused;
} attn_job;

static void attn_task(void *arg, int64_t t, int thread)
{
    attn_job *j = arg;
    const brt_attn_args *a = j->a;
    int32_t s = 0;
    while (t >= j->task_start[s + 1])
        s++;
    const brt_attn_seg *seg = &a->segs[s];
    const int32_t G = a->n_heads / a->n_kv_heads, nqv = seg->rows * G;
    const int32_t blocks = (nqv + BRT_ATTN_QV_MAX - 1) / BRT_ATTN_QV_MAX;
    int64_t local = t - j->task_start[s];
    int32_t kvh = (int32_t)(local / blocks), blk = (int32_t)(local % blocks);
    int32_t qv0 = blk * BRT_ATTN_QV_MAX, qv1 = qv0 + BRT_ATTN_QV_MAX < nqv ? qv0 + BRT_ATTN_QV_MAX : nqv;
    j->ci->simd->attn(a, seg, kvh, qv0, qv1, j->ci->scratch[thread]);
}

static void cpu_attention(brt_backend *be, const brt_attn_args *a)
{
    cpu_impl *ci = impl_of(be);
    int64_t need = brt_simd_attn_scratch_floats(a->head_dim);
    if (need > ci->scratch_floats) {
        for (int i = 0; i < be->n_threads; i++) {
            free(ci->scratch[i]);
            ci->scratch[i] = aligned_alloc(64, (size_t)((need * 4 + 63) / 64 * 64));
        }
        ci->scratch_floats = need;
    }
    int64_t stack_starts[65];
    int64_t *starts = a->n_segs < 64 ? stack_starts : malloc(((size_t)a->n_segs + 1) * sizeof *starts);
    starts[0] = 0;
    const int32_t G = a->n_heads / a->n_kv_heads;
    for (int32_t s = 0; s < a->n_segs; s++) {
        int32_t nqv = a->segs[s].rows * G;
        int32_t blocks = (nqv + BRT_ATTN_QV_MAX - 1) / BRT_ATTN_QV_MAX;
        starts[s + 1] = starts[s] + (int64_t)blocks * a->n_kv_heads;
    }
    attn_job j = {a, ci, starts, 0};
    brt_pool_run(ci->pool, starts[a->n_segs], attn_task, &j);
    if (starts != stack_starts)
        free(starts);
}

static void cpu_argmax(brt_backend *be, const float *x, int64_t ldx, int64_t rows, int64_t n, int32_t *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * ldx;
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++)
            if (p[i] > p[best])
                best = i;
        out[r] = (int32_t)best;
    }
}

static void cpu_destroy(brt_backend *be)
{
    if (!be)
        return;
    cpu_impl *ci = impl_of(be);
    if (ci) {
        brt_pool_destroy(ci->pool);
        for (int i = 0; i < be->n_threads; i++)
            free(ci->scratch[i]);
        free(ci->scratch);
        free(ci);
    }
    free(be);
}

static const brt_simd_ops *pick_isa(const char *isa)
{
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (isa && !strcmp(isa, "generic"))
        return &brt_simd_generic;
    if (isa && !strcmp(isa, "avx2"))
        return has2 ? &brt_simd_avx2 : NULL;
    if (isa && !strcmp(isa, "avx512"))
        return has512 ? &brt_simd_avx512 : NULL;
    if (isa && *isa)
        return NULL;
    return has512 ? &brt_simd_avx512 : has2 ? &brt_simd_avx2 : &brt_simd_generic;
}

brt_backend *brt_cpu_backend_create(int n_threads, const char *isa)
{
    const brt_simd_ops *simd = pick_isa(isa);
    if (!simd)
        return NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    brt_backend *be = calloc(1, sizeof *be);
    cpu_impl *ci = calloc(1, sizeof *ci);
    if (!be || !ci) {
        free(be);
        free(ci);
        return NULL;
    }
    ci->simd = simd;
    ci->pool = brt_pool_create(n_threads);
    be->n_threads = brt_pool_threads(ci->pool);
    ci->scratch = calloc((size_t)be->n_threads, sizeof *ci->scratch);
    be->impl = ci;
    static const char *names[] = {"cpu-avx512", "cpu-avx2", "cpu-generic"};
    be->name = simd == &brt_simd_avx512 ? names[0] : simd == &brt_simd_avx2 ? names[1] : names[2];
    be->gemm = cpu_gemm;
    be->rmsnorm = cpu_rmsnorm;
    be->rope = cpu_rope;
    be->attention = cpu_attention;
    be->silu_mul = cpu_silu_mul;
    be->add = cpu_add;
    be->embed = cpu_embed;
    be->logits = cpu_logits;
    be->argmax = cpu_argmax;
    be->destroy = cpu_destroy;
    return be;
}
