#include "engine/kvstate.h"

#include <stdlib.h>
#include <string.h>

void brt_layer_state_init(brt_layer_state *ls, brt_kvpool *pool, int32_t kv_dim, brt_dtype mem_dtype, int keep_kpre)
{
    const brt_dtype sd = brt_kvpool_state_dtype(pool);
    memset(ls, 0, sizeof *ls);
    brt_kvseq_init(&ls->sink_k, sd, kv_dim, pool);
    brt_kvseq_init(&ls->sink_v, sd, kv_dim, pool);
    brt_kvseq_init(&ls->mem_k, mem_dtype, kv_dim, pool);
    brt_kvseq_init(&ls->mem_v, mem_dtype, kv_dim, pool);
    brt_kvseq_init(&ls->raw_k, sd, kv_dim, pool);
    brt_kvseq_init(&ls->raw_v, sd, kv_dim, pool);
    brt_kvseq_init(&ls->raw_kpre, sd, kv_dim, pool);
    ls->has_kpre = keep_kpre;
}

void brt_layer_state_clear(brt_layer_state *ls, brt_kvpool *pool)
{
    brt_kvseq_clear(&ls->sink_k, pool);
    brt_kvseq_clear(&ls->sink_v, pool);
    brt_kvseq_clear(&ls->mem_k, pool);
    brt_kvseq_clear(&ls->mem_v, pool);
    brt_kvseq_clear(&ls->raw_k, pool);
    brt_kvseq_clear(&ls->raw_v, pool);
    brt_kvseq_clear(&ls->raw_kpre, pool);
    ls->raw_base = 0;
}

void brt_kv_ctx_free(brt_kv_ctx *kc)
{
    free(kc->runs);
    kc->runs = NULL;
    kc->runs_cap = 0;
}

brt_status brt_kv_runs_reserve(brt_kv_ctx *kc, int32_t n, brt_err *err)
{
    if (n <= kc->runs_cap)
        return BRT_OK;
    int32_t cap = n > 2 * kc->runs_cap ? n : 2 * kc->runs_cap;
    brt_run *r = realloc(kc->runs, (size_t)cap * sizeof *r);
    if (!r)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for %d row runs", n);
    kc->runs = r;
    kc->runs_cap = cap;
    return BRT_OK;
}

brt_status brt_rope_rows(brt_kv_ctx *kc, brt_mat x, int32_t rows, int32_t heads, const int32_t *pos, brt_err *err)
{
    if (rows <= 0)
        return BRT_OK;
    return kc->be->rope(kc->be, x, rows, heads, &kc->rope, pos, err);
}

/* Write the gathered rows src (n in all) to seq's slots [seq->n, seq->n + n). */
static brt_status append_runs(brt_kv_ctx *kc, brt_kvseq *seq, const brt_run *src, int32_t n_src, int32_t n, int rotate,
                              int32_t first_pos, brt_err *err)
{
    if (n <= 0)
        return BRT_OK;
    BRT_TRY(brt_kvseq_reserve(seq, kc->pool, n, err));
    brt_run stack[8], *dst = stack;
    const int32_t cap = n / seq->per_block + 2;
    if (cap > 8 && !(dst = malloc((size_t)cap * sizeof *dst)))
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    const int32_t nd = brt_kvseq_runs(seq, kc->pool, seq->n, n, dst, cap);
    brt_status st = kc->be->copy_rows(kc->be, dst, nd, src, n_src, seq->width, rotate ? &kc->rope : NULL, NULL,
                                      first_pos, err);
    if (dst != stack)
        free(dst);
    if (st == BRT_OK)
        seq->n += n;
    return st;
}

brt_status brt_kv_append(brt_kv_ctx *kc, brt_kvseq *seq, brt_mat rows, int32_t n, int rotate, int32_t first_pos,
                         brt_err *err)
{
    brt_run src = {rows, n};
    return append_runs(kc, seq, &src, 1, n, rotate, first_pos, err);
}

brt_status brt_kv_append_runs(brt_kv_ctx *kc, brt_kvseq *seq, const brt_run *src, int32_t n_src, int rotate,
                              int32_t first_pos, brt_err *err)
{
    int32_t n = 0;
    for (int32_t i = 0; i < n_src; i++)
        n += src[i].n;
    return append_runs(kc, seq, src, n_src, n, rotate, first_pos, err);
}

brt_status brt_kv_rebase_raw(brt_kv_ctx *kc, brt_layer_state *ls, int32_t base, brt_err *err)
{
    if (ls->raw_base == base)
        return BRT_OK;
    ls->raw_base = base;
    const int32_t n = ls->raw_k.n;
    if (n == 0)
        return BRT_OK;
    const int32_t cap = n / ls->raw_k.per_block + 2;
    BRT_TRY(brt_kv_runs_reserve(kc, 2 * cap, err));
    brt_run *dst = kc->runs, *src = kc->runs + cap;
    const int32_t nd = brt_kvseq_runs(&ls->raw_k, kc->pool, 0, n, dst, cap);
    const int32_t ns = brt_kvseq_runs(&ls->raw_kpre, kc->pool, 0, n, src, cap);
    return kc->be->copy_rows(kc->be, dst, nd, src, ns, ls->raw_k.width, &kc->rope, NULL, base, err);
}

int32_t brt_kv_add_spans(const brt_kv_ctx *kc, const brt_kvseq *k, const brt_kvseq *v, brt_kv_span *out, int32_t n,
                         int32_t cap)
{
    return n + brt_kvseq_spans(k, v, kc->pool, out + n, cap - n);
}
