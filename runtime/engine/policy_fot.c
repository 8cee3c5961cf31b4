/* LongLLaMA / Focused Transformer memory layers, exact to the official code (CStanKonrad/
 * long_llama, design longllama.md §3-§5).
 *
 * Calls: the tokens that arrive together (the prompt, then each generated token) form a call.
 * A call of N tokens runs windows [0, W), [W, 2W)... over its first N - last_context_length
 * tokens (the last of them short), then the remaining tokens at once. Without a local cache the
 * windows run NO-CACHE (memory layers append the window to memory after attending; other layers
 * keep nothing); the rest runs CACHE: when cache + chunk > W the whole cache is flushed (into
 * memory in memory layers, before attention; dropped elsewhere). Positions are relative to the
 * local cache start; memory keys are pre-RoPE (rotated "as if at 0", the identity) and stored
 * in mem_dtype. */
#include "engine/policy.h"


static int fot_plan_next(brt_plan *p, const brt_model_config *cfg, const int32_t *tokens, int64_t avail,
                         int32_t chunk, brt_step *st, brt_err *err)
{
    const brt_fot_config *f = &cfg->fot;
    if (p->fed >= avail)
        return 0;
    if (p->fed >= p->call_end) { /* a new call: the tokens that arrived together */
        p->call_begin = p->fed;
        p->call_end = avail;
    }
    const int64_t N = p->call_end - p->call_begin;
    const int64_t mem_end = p->call_begin + (N > f->last_context_length ? N - f->last_context_length : 0);
    int64_t beg = p->fed, end;
    int nocache;
    if (beg < mem_end) {
        end = beg + f->window < mem_end ? beg + f->window : mem_end;
        nocache = !p->has_cache;
    } else {
        end = p->call_end;
        nocache = 0;
    }
    const int32_t q = (int32_t)(end - beg);
    if (brt_step_alloc_rows(st, q, err) != BRT_OK)
        return -1;
    st->index = p->next_index++;
    st->n_raw = q;
    st->expect_mem = p->mem;
    st->expect_raw = p->local;
    int32_t first = 0;
    if (nocache) {
        st->flags = BRT_STEP_NO_CACHE;
        p->mem += q;
    } else {
        if (p->local > 0 && p->local + q > f->window) {
            st->flags = BRT_STEP_FLUSH;
            p->mem += p->local;
            p->local = 0;
        }
        first = p->local;
        p->local += q;
        p->has_cache = 1;
    }
    for (int32_t j = 0; j < q; j++) {
        st->tokens[j] = tokens[beg + j];
        st->pos[j] = first + j;
        st->kind[j] = BRT_ROW_RAW;
    }
    p->fed = end;
    (void)chunk;
    return 1;
}

static int32_t fot_max_rows(const brt_model_config *cfg, int32_t chunk)
{
    return cfg->fot.window > cfg->fot.last_context_length ? cfg->fot.window : cfg->fot.last_context_length;
}

static brt_dtype mem_dtype(const brt_model_config *cfg, brt_dtype state_dtype)
{
    return cfg->fot.mem_bf16 ? BRT_DT_BF16 : state_dtype;
}

static void fot_state_init(const brt_model_config *cfg, int32_t layer, brt_kvpool *pool, brt_layer_state *ls)
{
    int mem = cfg->fot.is_mem_layer[layer];
    brt_layer_state_init(ls, pool, cfg->n_kv_heads * cfg->head_dim, mem_dtype(cfg, brt_kvpool_state_dtype(pool)), mem);
}

/* Memory layers: the local cache's unrotated keys and its values join memory (in its dtype). */
static brt_status flush_to_mem(brt_layer_ctx *c, brt_err *err)
{
    brt_layer_state *ls = c->ls;
    const int32_t R = ls->raw_k.n, cap = R / ls->raw_k.per_block + 2;
    BRT_TRY(brt_kv_runs_reserve(c->kv, 2 * cap, err));
    brt_run *kr = c->kv->runs, *vr = c->kv->runs + cap;
    const int32_t nk = brt_kvseq_runs(&ls->raw_kpre, c->kv->pool, 0, R, kr, cap);
    const int32_t nv = brt_kvseq_runs(&ls->raw_v, c->kv->pool, 0, R, vr, cap);
    BRT_TRY(brt_kv_append_runs(c->kv, &ls->mem_k, kr, nk, 0, 0, err));
    return brt_kv_append_runs(c->kv, &ls->mem_v, vr, nv, 0, 0, err);
}

static brt_status fot_prepare(brt_layer_ctx *c, brt_err *err)
{
    const brt_model_config *cfg = c->cfg;
    const brt_step *st = c->step;
    brt_layer_state *ls = c->ls;
    const int mem_layer = cfg->fot.is_mem_layer[c->layer];
    /* the planner counts memory for memory layers; other layers never hold any */
    if (ls->raw_k.n != st->expect_raw || (mem_layer && ls->mem_k.n != st->expect_mem))
        return brt_errf(err, BRT_ERR_INTERNAL,
                        "job %llu step %u layer %d: local cache %d / memory %d differ from the plan (%d / %d)",
                        (unsigned long long)st->job, st->index, c->layer, ls->raw_k.n, ls->mem_k.n,
                        st->expect_raw, st->expect_mem);
    if (st->flags & BRT_STEP_FLUSH) {
        if (mem_layer)
            BRT_TRY(flush_to_mem(c, err));
        brt_kvseq_clear(&ls->raw_k, c->kv->pool);
        brt_kvseq_clear(&ls->raw_kpre, c->kv->pool);
        brt_kvseq_clear(&ls->raw_v, c->kv->pool);
    }
    const int rotate = !(mem_layer && !cfg->fot.mem_positionals);
    BRT_TRY(brt_policy_rope_step(c, rotate, err));
    int32_t n = 0;
    if (mem_layer)
        n = brt_kv_add_spans(c->kv, &ls->mem_k, &ls->mem_v, c->spans, n, c->spans_cap);
    n = brt_kv_add_spans(c->kv, &ls->raw_k, &ls->raw_v, c->spans, n, c->spans_cap);
    c->spans[n++] = (brt_kv_span){c->k, c->v, st->n_rows};
    c->n_spans = n;
    /* one joint softmax: all memory, the local cache and the chunk causally */
    const int32_t before = (mem_layer ? ls->mem_k.n : 0) + ls->raw_k.n;
    for (int32_t r = 0; r < st->n_rows; r++)
        c->vis[r] = (brt_attn_vis){{0}, {before + r + 1}, 1};
    return BRT_OK;
}

static brt_status fot_commit(brt_layer_ctx *c, brt_err *err)
{
    const brt_model_config *cfg = c->cfg;
    const brt_step *st = c->step;
    brt_layer_state *ls = c->ls;
    const int mem_layer = cfg->fot.is_mem_layer[c->layer];
    const int32_t n = st->n_rows;
    if (st->flags & BRT_STEP_NO_CACHE) {
        if (mem_layer) {
            BRT_TRY(brt_kv_append(c->kv, &ls->mem_k, c->kpre, n, 0, 0, err));
            BRT_TRY(brt_kv_append(c->kv, &ls->mem_v, c->v, n, 0, 0, err));
        }
        return BRT_OK;
    }
    BRT_TRY(brt_kv_append(c->kv, &ls->raw_k, c->k, n, 0, 0, err));
    BRT_TRY(brt_kv_append(c->kv, &ls->raw_v, c->v, n, 0, 0, err));
    if (mem_layer)
        BRT_TRY(brt_kv_append(c->kv, &ls->raw_kpre, c->kpre, n, 0, 0, err));
    return BRT_OK;
}

static int64_t fot_layer_bytes(const brt_model_config *cfg, int32_t layer, int32_t bb, brt_dtype sd, int64_t sink,
                               int64_t mem, int64_t raw)
{
    const int32_t kvd = cfg->n_kv_heads * cfg->head_dim;
    if (!cfg->fot.is_mem_layer[layer])
        return 2 * brt_kvpool_blocks_for(bb, sd, kvd, raw) * bb;
    return (2 * brt_kvpool_blocks_for(bb, mem_dtype(cfg, sd), kvd, mem) + 3 * brt_kvpool_blocks_for(bb, sd, kvd, raw)) *
           bb;
}

const brt_policy_ops brt_policy_fot = {
    .kind = BRT_POLICY_FOT,
    .plan_next = fot_plan_next,
    .max_step_rows = fot_max_rows,
    .state_init = fot_state_init,
    .prepare = fot_prepare,
    .commit = fot_commit,
    .layer_bytes = fot_layer_bytes,
};
