/* Policy "full": plain Llama. Every raw key stays (post-RoPE, at its absolute position);
 * causal attention over everything so far. Prefill is cut into steps of `chunk` tokens, which
 * changes no number (each row sees exactly the keys before it either way). */
#include "engine/policy.h"

static int full_plan_next(brt_plan *p, const brt_model_config *cfg, const int32_t *tokens, int64_t avail,
                          int32_t chunk, brt_step *st, brt_err *err)
{
    if (p->fed >= avail)
        return 0;
    int64_t n = avail - p->fed < chunk ? avail - p->fed : chunk;
    if (brt_step_alloc_rows(st, (int32_t)n, err) != BRT_OK)
        return -1;
    st->index = p->next_index++;
    st->n_raw = (int32_t)n;
    st->expect_raw = p->raw;
    for (int32_t i = 0; i < n; i++) {
        st->tokens[i] = tokens[p->fed + i];
        st->pos[i] = (int32_t)(p->fed + i);
    }
    p->fed += n;
    p->raw += (int32_t)n;
    (void)cfg;
    return 1;
}

static int32_t full_max_rows(const brt_model_config *cfg, int32_t chunk) { return chunk; }

static void full_state_init(const brt_model_config *cfg, int32_t layer, brt_kvpool *pool, brt_layer_state *ls)
{
    brt_layer_state_init(ls, pool, cfg->n_kv_heads * cfg->head_dim, brt_kvpool_state_dtype(pool), 0);
}

static brt_status full_prepare(brt_layer_ctx *c, brt_err *err)
{
    const brt_step *st = c->step;
    brt_layer_state *ls = c->ls;
    if (ls->raw_k.n != st->expect_raw)
        return brt_errf(err, BRT_ERR_INTERNAL, "job %llu step %u: cache holds %d keys, the plan expects %d",
                        (unsigned long long)st->job, st->index, ls->raw_k.n, st->expect_raw);
    BRT_TRY(brt_policy_rope_step(c, 1, err));
    const int32_t R = ls->raw_k.n;
    int32_t n = brt_kv_add_spans(c->kv, &ls->raw_k, &ls->raw_v, c->spans, 0, c->spans_cap);
    c->spans[n++] = (brt_kv_span){c->k, c->v, st->n_rows};
    c->n_spans = n;
    for (int32_t r = 0; r < st->n_rows; r++)
        c->vis[r] = (brt_attn_vis){{0}, {R + r + 1}, 1};
    return BRT_OK;
}

static brt_status full_commit(brt_layer_ctx *c, brt_err *err)
{
    BRT_TRY(brt_kv_append(c->kv, &c->ls->raw_k, c->k, c->step->n_rows, 0, 0, err));
    return brt_kv_append(c->kv, &c->ls->raw_v, c->v, c->step->n_rows, 0, 0, err);
}

static int64_t full_layer_bytes(const brt_model_config *cfg, int32_t layer, int32_t bb, brt_dtype sd, int64_t sink,
                                int64_t mem, int64_t raw)
{
    const int32_t kvd = cfg->n_kv_heads * cfg->head_dim;
    return 2 * brt_kvpool_blocks_for(bb, sd, kvd, raw) * bb;
}

const brt_policy_ops brt_policy_full = {
    .kind = BRT_POLICY_FULL,
    .plan_next = full_plan_next,
    .max_step_rows = full_max_rows,
    .state_init = full_state_init,
    .prepare = full_prepare,
    .commit = full_commit,
    .layer_bytes = full_layer_bytes,
};
