/* The CPU backend's compute ops over the thread pool. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_impl.h"
#include "sample.h"

/* ---- GEMM ----------------------------------------------------------------------------- */

typedef struct {
    const brt_simd_ops *simd;
    const float *a;
    int64_t lda, m;
    const brt_weight *w, *bias;
    float *c;
    int64_t ldc;
    int64_t col_chunk, row_chunk, n_col_tasks;
    float *const *scratch; /* per thread */
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
    j->simd->gemm_cols(j->a + r0 * j->lda, j->lda, r1 - r0, j->w, j->bias, j->c + r0 * j->ldc, j->ldc, n0, n1,
                       j->scratch[thread]);
}

static brt_status cpu_gemm(brt_backend *be, brt_mat a, int64_t m, const brt_weight *w, const brt_weight *bias,
                           brt_mat c, brt_err *err)
{
    cpu_impl *ci = cpu_of(be);
    if (m <= 0)
        return BRT_OK;
    const int64_t nr = ci->simd->gemm_nr, mr = ci->simd->gemm_mr, n = w->rows, T = be->n_threads;
    int64_t tiles = (n + nr - 1) / nr;
    gemm_job j = {ci->simd, cpu_ptr(a), a.ld, m, w, bias, cpu_ptr(c), c.ld, 0, 0, 0, NULL};
    int64_t col_tasks = 1, row_tasks = 1;
    if (m >= 96 * T) {
        /* many rows: split rows only. A task packs its own rows of A once and streams all the
         * weights past them (it would do that per block of rows anyway); split by columns, every
         * task would pack all of A again. Tasks of 512 rows (the many-rows path's row block) or
         * more where there are that many (each task reads and packs all the weights once: fewer,
         * longer tasks do that fewer times; 256-row tasks were 1.5-3% slower on two threads), T to
         * 4T of them (one task on one thread), a multiple of T so that every thread gets the
         * same share (5 tasks on 2 threads would leave one thread idle for a fifth of the time) */
        row_tasks = T == 1 ? 1 : m / 512 < T ? T : m / 512 < T * 4 ? m / 512 / T * T : T * 4;
    } else {
        /* few rows (the weights are read in place): columns first (weights are read once per
         * column chunk, and a chunk's rows stay near in cache from one k block to the next); rows
         * too when columns are few */
        col_tasks = tiles < T * 4 ? tiles : T * 4;
        if (col_tasks < T * 2 && m >= 64)
            row_tasks = (T * 2 + col_tasks - 1) / col_tasks;
    }
    j.col_chunk = (tiles + col_tasks - 1) / col_tasks * nr;
    j.n_col_tasks = (n + j.col_chunk - 1) / j.col_chunk;
    j.row_chunk = (m + row_tasks - 1) / row_tasks;
    j.row_chunk = (j.row_chunk + mr - 1) / mr * mr; /* whole register tiles */
    int64_t rtasks = (m + j.row_chunk - 1) / j.row_chunk;
    BRT_TRY(brt_cpu_scratch(be, ci->simd->gemm_scratch_floats(j.row_chunk, w->cols), err));
    j.scratch = ci->scratch;
    brt_pool_run(ci->pool, j.n_col_tasks * rtasks, gemm_task, &j);
    return BRT_OK;
}

static brt_status cpu_logits(brt_backend *be, brt_mat x, int64_t m, const brt_weight *lm_head, brt_mat out,
                             brt_err *err)
{
    return cpu_gemm(be, x, m, lm_head, NULL, out, err);
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
    const int32_t *pos;
    float pos_div;
    const float *inv_freq;
    const brt_weight *table, *alt;
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
            float cs[1024], sn[1024]; /* head_dim/2 <= 1024, checked when a stage is made */
            const int32_t half = j->hd / 2;
            float p = (float)j->pos[r];
            if (j->pos_div != 1.0f)
                p = p / j->pos_div;
            for (int32_t i = 0; i < half; i++) {
                float ang = p * j->inv_freq[i];
                cs[i] = cosf(ang);
                sn[i] = sinf(ang);
            }
            j->simd->rope_row(j->y + r * j->ldy, j->heads, j->hd, cs, sn);
            break;
        }
        case OP_EMBED: {
            float *dst = j->y + r * j->ldy;
            const int32_t id = j->ids[r];
            if (id == BRT_EMBED_ZERO) {
                memset(dst, 0, (size_t)j->table->cols * sizeof(float));
                break;
            }
            const brt_weight *tb = id == BRT_EMBED_ALT ? j->alt : j->table;
            size_t es = brt_dtype_size(tb->dtype);
            const void *src = (const char *)tb->data + (size_t)(id < 0 ? 0 : id) * (size_t)tb->cols * es;
            j->simd->to_f32_row(src, tb->dtype, dst, tb->cols);
            break;
        }
        }
    }
}

static void run_rows(brt_backend *be, rows_job *j)
{
    cpu_impl *ci = cpu_of(be);
    j->simd = ci->simd;
    int64_t tasks = be->n_threads * 4;
    if (tasks > j->rows)
        tasks = j->rows;
    if (tasks < 1)
        return;
    j->chunk = (j->rows + tasks - 1) / tasks;
    brt_pool_run(ci->pool, (j->rows + j->chunk - 1) / j->chunk, rows_task, j);
}

static brt_status cpu_rmsnorm(brt_backend *be, brt_mat x, const brt_weight *w, float eps, brt_mat y, int64_t rows,
                              int64_t dim, brt_err *err)
{
    rows_job j = {.rows = rows, .x = cpu_ptr(x), .ldx = x.ld, .y = cpu_ptr(y), .ldy = y.ld, .w = w->data,
                  .eps = eps, .n = dim, .op = OP_RMSNORM};
    run_rows(be, &j);
    return BRT_OK;
}

static brt_status cpu_silu_mul(brt_backend *be, brt_mat gate, brt_mat up, int64_t rows, int64_t n, brt_err *err)
{
    rows_job j = {.rows = rows, .x = cpu_ptr(up), .ldx = up.ld, .y = cpu_ptr(gate), .ldy = gate.ld, .n = n,
                  .op = OP_SILU};
    run_rows(be, &j);
    return BRT_OK;
}

static brt_status cpu_add(brt_backend *be, brt_mat y, brt_mat x, int64_t rows, int64_t n, brt_err *err)
{
    rows_job j = {.rows = rows, .x = cpu_ptr(x), .ldx = x.ld, .y = cpu_ptr(y), .ldy = y.ld, .n = n, .op = OP_ADD};
    run_rows(be, &j);
    return BRT_OK;
}

static brt_status cpu_rope(brt_backend *be, brt_mat x, int64_t rows, int32_t heads, const brt_rope *rope,
                           const int32_t *pos, brt_err *err)
{
    if (rope->head_dim / 2 > 1024)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "RoPE: head dimension %d beyond the CPU kernels' 2048",
                        rope->head_dim);
    rows_job j = {.rows = rows, .y = cpu_ptr(x), .ldy = x.ld, .heads = heads, .hd = rope->head_dim, .pos = pos,
                  .pos_div = rope->pos_div, .inv_freq = cpu_ptr(rope->inv_freq), .op = OP_ROPE};
    run_rows(be, &j);
    return BRT_OK;
}

static brt_status cpu_embed(brt_backend *be, const brt_weight *table, const brt_weight *alt, const int32_t *ids,
                            int64_t n, brt_mat out, brt_err *err)
{
    BRT_TRY(brt_check_embed_ids(table, alt && alt->data, ids, n, err));
    rows_job j = {.rows = n, .y = cpu_ptr(out), .ldy = out.ld, .table = table, .alt = alt, .ids = ids, .op = OP_EMBED};
    run_rows(be, &j);
    return BRT_OK;
}

/* ---- attention -------------------------------------------------------------------------- */

typedef struct {
    const brt_cpu_attn_args *a;
    cpu_impl *ci;
    int64_t *task_start; /* prefix of tasks per segment, [n_segs + 1] */
    int32_t *heads;      /* kv heads per task, per segment */
} attn_job;

/* Query vectors (rows x group) per task: up to BRT_ATTN_QV_MAX of one kv head. A segment of few
 * query vectors (decode) takes all its kv heads in one task instead: the task then reads whole
 * KV slots, which stream from memory ~2.5x faster than one head's slice of each, and a decode
 * step of many jobs still has a task per job. Which task computes what never changes a number. */
static int32_t attn_heads_per_task(int32_t nqv, int32_t n_kv)
{
    if (nqv > 16 || (int64_t)nqv * n_kv > BRT_ATTN_QV_MAX)
        return 1;
    return n_kv;
}

static void attn_task(void *arg, int64_t t, int thread)
{
    attn_job *j = arg;
    const brt_cpu_attn_args *a = j->a;
    int32_t s = 0;
    while (t >= j->task_start[s + 1])
        s++;
    const brt_cpu_attn_seg *seg = &a->segs[s];
    const int32_t G = a->n_heads / a->n_kv_heads, nqv = seg->rows * G, hpt = j->heads[s];
    const int32_t blocks = (nqv + BRT_ATTN_QV_MAX - 1) / BRT_ATTN_QV_MAX;
    int64_t local = t - j->task_start[s];
    int32_t kvh = (int32_t)(local / blocks) * hpt, blk = (int32_t)(local % blocks);
    int32_t kvh1 = kvh + hpt < a->n_kv_heads ? kvh + hpt : a->n_kv_heads;
    int32_t qv0 = blk * BRT_ATTN_QV_MAX, qv1 = qv0 + BRT_ATTN_QV_MAX < nqv ? qv0 + BRT_ATTN_QV_MAX : nqv;
    j->ci->simd->attn(a, seg, kvh, kvh1, qv0, qv1, j->ci->scratch[thread]);
}

static brt_status cpu_attention(brt_backend *be, const brt_attn_args *a, brt_err *err)
{
    cpu_impl *ci = cpu_of(be);
    if (a->n_segs <= 0)
        return BRT_OK;
    BRT_TRY(brt_cpu_scratch(be, brt_simd_attn_scratch_floats(a->head_dim), err));
    /* resolve the views */
    int64_t n_spans = 0;
    for (int32_t s = 0; s < a->n_segs; s++)
        n_spans += a->segs[s].n_spans;
    if (n_spans > ci->spans_cap) {
        int64_t cap = n_spans * 2;
        brt_cpu_kv_span *p = realloc(ci->spans, (size_t)cap * sizeof *p);
        if (!p)
            return brt_errf(err, BRT_ERR_NOMEM, "attention: out of memory for %lld key spans", (long long)n_spans);
        ci->spans = p;
        ci->spans_cap = cap;
    }
    if (a->n_segs > ci->segs_cap) {
        int64_t cap = (int64_t)a->n_segs * 2;
        brt_cpu_attn_seg *p = realloc(ci->segs, (size_t)cap * sizeof *p);
        if (!p)
            return brt_errf(err, BRT_ERR_NOMEM, "attention: out of memory for %d segments", a->n_segs);
        ci->segs = p;
        ci->segs_cap = cap;
    }
    int64_t used = 0;
    for (int32_t s = 0; s < a->n_segs; s++) {
        const brt_attn_seg *sg = &a->segs[s];
        brt_cpu_kv_span *sp = ci->spans + used;
        int32_t keys = 0;
        for (int32_t i = 0; i < sg->n_spans; i++) {
            const brt_kv_span *k = &sg->spans[i];
            if (k->k.ld != k->v.ld || k->k.dtype != k->v.dtype)
                return brt_errf(err, BRT_ERR_INTERNAL, "attention: a span's K and V differ in stride or dtype");
            sp[i] = (brt_cpu_kv_span){cpu_ptr(k->k), cpu_ptr(k->v), k->n, (int32_t)k->k.ld, k->k.dtype};
            keys += k->n;
        }
        if (keys != sg->n_keys)
            return brt_errf(err, BRT_ERR_INTERNAL, "attention: segment %d has %d keys in its spans, %d announced", s,
                            keys, sg->n_keys);
        ci->segs[s] = (brt_cpu_attn_seg){cpu_ptr(sg->q), cpu_ptr(sg->out), sg->rows, (int32_t)sg->q.ld,
                                         (int32_t)sg->out.ld, sp, sg->n_spans, sg->n_keys, sg->vis};
        used += sg->n_spans;
    }
    brt_cpu_attn_args ca = {ci->segs, a->n_segs, a->n_heads, a->n_kv_heads, a->head_dim, a->scale_div};
    int64_t stack_starts[65];
    int32_t stack_heads[64];
    int64_t *starts = stack_starts;
    int32_t *heads = stack_heads;
    if (a->n_segs >= 64) {
        starts = malloc(((size_t)a->n_segs + 1) * sizeof *starts);
        heads = malloc((size_t)a->n_segs * sizeof *heads);
        if (!starts || !heads) {
            free(starts);
            free(heads);
            return brt_errf(err, BRT_ERR_NOMEM, "attention: out of memory");
        }
    }
    starts[0] = 0;
    const int32_t G = a->n_heads / a->n_kv_heads;
    for (int32_t s = 0; s < a->n_segs; s++) {
        int32_t nqv = a->segs[s].rows * G;
        int32_t blocks = (nqv + BRT_ATTN_QV_MAX - 1) / BRT_ATTN_QV_MAX;
        heads[s] = attn_heads_per_task(nqv, a->n_kv_heads);
        starts[s + 1] = starts[s] + (int64_t)blocks * ((a->n_kv_heads + heads[s] - 1) / heads[s]);
    }
    attn_job j = {&ca, ci, starts, heads};
    brt_pool_run(ci->pool, starts[a->n_segs], attn_task, &j);
    if (starts != stack_starts) {
        free(starts);
        free(heads);
    }
    return BRT_OK;
}

/* ---- logits to results ------------------------------------------------------------------- */

typedef struct {
    const cpu_impl *ci;
    brt_mat logits;
    int32_t vocab;
    const brt_logit_req *req;
    brt_logit_out *out;
} logit_job;

/* one row: the SIMD log-sum-exp (the plain-C one where the row is not all finite), then the
 * reference's top-k and draw on this thread's scratch */
static void logit_task(void *arg, int64_t i, int thread)
{
    const logit_job *j = arg;
    const float *lg = (const float *)cpu_ptr(brt_mat_row(j->logits, i));
    double lse = NAN;
    if (brt_logit_needs_lse(&j->req[i])) {
        lse = j->ci->simd->logsumexp_row(lg, j->vocab);
        if (isnan(lse))
            lse = brt_logsumexp(lg, j->vocab);
    }
    brt_logit_row_lse(lg, j->vocab, lse, &j->req[i], &j->out[i], j->ci->work + (int64_t)thread * 2 * j->vocab);
}

/* Rows go over the pool (prompt log-probabilities ask for every position of a window). */
static brt_status cpu_logit_rows(brt_backend *be, brt_mat logits, int64_t n, int32_t vocab, const brt_logit_req *req,
                                 brt_logit_out *out, brt_err *err)
{
    cpu_impl *ci = cpu_of(be);
    const int64_t need = (int64_t)vocab * 2 * be->n_threads; /* [threads][2 * vocab] */
    if (need > ci->work_floats) {
        float *w = realloc(ci->work, (size_t)need * sizeof(float));
        if (!w)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory sampling over %d tokens", vocab);
        ci->work = w;
        ci->work_floats = need;
    }
    logit_job j = {ci, logits, vocab, req, out};
    brt_pool_run(ci->pool, n, logit_task, &j);
    return BRT_OK;
}

void brt_cpu_set_compute_ops(brt_backend *be)
{
    be->gemm = cpu_gemm;
    be->rmsnorm = cpu_rmsnorm;
    be->rope = cpu_rope;
    be->attention = cpu_attention;
    be->silu_mul = cpu_silu_mul;
    be->add = cpu_add;
    be->embed = cpu_embed;
    be->logits = cpu_logits;
    be->logit_rows = cpu_logit_rows;
}
