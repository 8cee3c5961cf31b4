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

/* ---- state images ------------------------------------------------------------------------- */

static int put_u32(brt_buf *b, uint32_t v) { return brt_buf_append(b, &v, sizeof v); }

static int get_u32(const uint8_t **cur, const uint8_t *end, uint32_t *v)
{
    if ((size_t)(end - *cur) < sizeof *v)
        return -1;
    memcpy(v, *cur, sizeof *v);
    *cur += sizeof *v;
    return 0;
}

static brt_kvseq *layer_seqs(brt_layer_state *ls, int i)
{
    brt_kvseq *seqs[] = {&ls->sink_k, &ls->sink_v, &ls->mem_k, &ls->mem_v, &ls->raw_k, &ls->raw_v, &ls->raw_kpre};
    return i < (int)(sizeof seqs / sizeof seqs[0]) ? seqs[i] : NULL;
}

#define LAYER_SEQS 7

static brt_status seq_export(const brt_kvseq *s, brt_kvpool *pool, brt_buf *out, brt_err *err)
{
    brt_backend *be = brt_kvpool_backend(pool);
    const size_t row = (size_t)s->width * brt_dtype_size(s->dtype);
    if (put_u32(out, (uint32_t)s->dtype) || put_u32(out, (uint32_t)s->width) || put_u32(out, (uint32_t)s->n))
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for a state image");
    for (int32_t i = 0; i < s->n; i += s->per_block) { /* a block at a time: a view lies in one block */
        const int32_t n = s->n - i < s->per_block ? s->n - i : s->per_block;
        const size_t at = out->len;
        if (brt_buf_reserve(out, (size_t)n * row) != 0)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory for a state image");
        BRT_TRY(be->get_rows(be, brt_kvseq_view(s, pool, i), out->data + at, n, s->width, err));
        out->len = at + (size_t)n * row;
        out->data[out->len] = '\0';
    }
    return BRT_OK;
}

static brt_status seq_import(brt_kvseq *s, brt_kvpool *pool, const uint8_t **cur, const uint8_t *end, brt_err *err)
{
    brt_backend *be = brt_kvpool_backend(pool);
    uint32_t dt, width, n;
    if (get_u32(cur, end, &dt) || get_u32(cur, end, &width) || get_u32(cur, end, &n))
        return brt_errf(err, BRT_ERR_FORMAT, "the state image ends inside a region header");
    if (dt != (uint32_t)s->dtype || width != (uint32_t)s->width)
        return brt_errf(err, BRT_ERR_FORMAT, "a region of the image holds %u x dtype %u, this layer %d x dtype %d",
                        width, dt, s->width, (int)s->dtype);
    const size_t row = (size_t)s->width * brt_dtype_size(s->dtype);
    if (n > (uint32_t)INT32_MAX || (size_t)(end - *cur) / (row ? row : 1) < n)
        return brt_errf(err, BRT_ERR_FORMAT, "the state image is shorter than its %u slots", n);
    brt_kvseq_clear(s, pool);
    BRT_TRY(brt_kvseq_reserve(s, pool, (int32_t)n, err));
    for (int32_t i = 0; i < (int32_t)n; i += s->per_block) {
        const int32_t k = (int32_t)n - i < s->per_block ? (int32_t)n - i : s->per_block;
        BRT_TRY(be->set_rows(be, brt_kvseq_view(s, pool, i), *cur, k, s->width, err));
        *cur += (size_t)k * row;
    }
    s->n = (int32_t)n;
    return BRT_OK;
}

brt_status brt_layer_state_export(const brt_layer_state *ls, brt_kvpool *pool, brt_buf *out, brt_err *err)
{
    if (put_u32(out, (uint32_t)ls->raw_base) || put_u32(out, (uint32_t)ls->has_kpre))
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for a state image");
    for (int i = 0; i < LAYER_SEQS; i++)
        BRT_TRY(seq_export(layer_seqs((brt_layer_state *)ls, i), pool, out, err));
    return BRT_OK;
}

brt_status brt_layer_state_import(brt_layer_state *ls, brt_kvpool *pool, const uint8_t **cur, const uint8_t *end,
                                  brt_err *err)
{
    uint32_t base, kpre;
    if (get_u32(cur, end, &base) || get_u32(cur, end, &kpre))
        return brt_errf(err, BRT_ERR_FORMAT, "the state image ends inside a layer header");
    if (kpre != (uint32_t)ls->has_kpre || base > (uint32_t)INT32_MAX)
        return brt_errf(err, BRT_ERR_FORMAT, "the image's layer keeps pre-RoPE keys %s, this one %s",
                        kpre ? "yes" : "no", ls->has_kpre ? "yes" : "no");
    for (int i = 0; i < LAYER_SEQS; i++)
        BRT_TRY(seq_import(layer_seqs(ls, i), pool, cur, end, err));
    ls->raw_base = (int32_t)base;
    return BRT_OK;
}

brt_status brt_layer_state_copy(brt_layer_state *dst, brt_kvpool *dp, const brt_layer_state *src, brt_kvpool *sp,
                                brt_err *err)
{
    for (int i = 0; i < LAYER_SEQS; i++) {
        brt_status st = brt_kvseq_copy(layer_seqs(dst, i), dp, layer_seqs((brt_layer_state *)src, i), sp, err);
        if (st != BRT_OK) {
            brt_layer_state_clear(dst, dp);
            return st;
        }
    }
    dst->raw_base = src->raw_base;
    dst->has_kpre = src->has_kpre;
    return BRT_OK;
}
