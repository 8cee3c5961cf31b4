#include "engine/policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

extern const brt_policy_ops brt_policy_full, brt_policy_beacon_v1, brt_policy_beacon_v2, brt_policy_fot;

const brt_policy_ops *brt_policy_ops_for(brt_policy_kind k)
{
    switch (k) {
    case BRT_POLICY_FULL: return &brt_policy_full;
    case BRT_POLICY_BEACON_V1: return &brt_policy_beacon_v1;
    case BRT_POLICY_BEACON_V2: return &brt_policy_beacon_v2;
    case BRT_POLICY_FOT: return &brt_policy_fot;
    }
    return NULL;
}

void brt_plan_init(brt_plan *p, const brt_model_config *cfg)
{
    memset(p, 0, sizeof *p);
    p->kind = cfg->policy;
    p->ratio_fixed = -1;
    p->prev_full = 1;
}

void brt_step_free_arrays(brt_step *st)
{
    free(st->tokens);
    free(st->pos);
    free(st->kind);
    free(st->target);
    st->tokens = st->pos = st->target = NULL;
    st->kind = NULL;
}

brt_status brt_step_alloc_rows(brt_step *st, int32_t n, brt_err *err)
{
    size_t m = n > 0 ? (size_t)n : 1;
    st->tokens = malloc(m * sizeof *st->tokens);
    st->pos = malloc(m * sizeof *st->pos);
    st->kind = calloc(m, sizeof *st->kind);
    st->target = malloc(m * sizeof *st->target);
    if (!st->tokens || !st->pos || !st->kind || !st->target) {
        brt_step_free_arrays(st);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory planning a step of %d rows", n);
    }
    for (int32_t i = 0; i < n; i++)
        st->target[i] = -1;
    st->n_rows = n;
    return BRT_OK;
}

brt_status brt_policy_rope_step(brt_layer_ctx *c, int rotate, brt_err *err)
{
    const brt_step *st = c->step;
    brt_backend *be = c->kv->be;
    const int32_t kvd = c->cfg->n_kv_heads * c->cfg->head_dim;
    brt_run dst = {c->kpre, st->n_rows}, src = {c->k, st->n_rows};
    BRT_TRY(be->copy_rows(be, &dst, 1, &src, 1, kvd, NULL, NULL, 0, err));
    if (rotate) {
        BRT_TRY(brt_rope_rows(c->kv, c->q, st->n_rows, c->cfg->n_heads, st->pos, err));
        BRT_TRY(brt_rope_rows(c->kv, c->k, st->n_rows, c->cfg->n_kv_heads, st->pos, err));
    }
    return BRT_OK;
}

/* The official choose-ratio: one configured ratio is used as is; otherwise the list is
 * filtered (r <= stride, r divides stride except for v1 full-coverage; 0 allowed) and picked by
 * the mix. Random mixes over several ratios are refused when the config is read. */
int32_t brt_beacon_choose_ratio(brt_plan *p, const brt_model_config *cfg, int64_t avail, int v2, brt_err *err)
{
    const brt_beacon_config *b = &cfg->beacon;
    if (b->n_ratios == 1)
        return b->ratios[0];
    int32_t f[BRT_MAX_RATIOS];
    int nf = 0;
    for (int i = 0; i < b->n_ratios; i++) {
        int32_t r = b->ratios[i];
        if (r > b->stride)
            continue;
        if (r > 0 && b->stride % r != 0 && (v2 || b->attn != BRT_BEACON_ATTN_FULL_COVERAGE))
            continue;
        f[nf++] = r;
    }
    if (nf == 0) {
        brt_errf(err, BRT_ERR_INTERNAL, "no usable beacon ratio for stride %d", b->stride);
        return -1;
    }
    switch (b->ratio_mix) {
    case BRT_RATIO_MIX_SEQUENCE:
        if (v2)
            return f[p->seq_pos++ % nf];
        return f[p->step_idx < nf - 1 ? p->step_idx : nf - 1];
    case BRT_RATIO_MIX_ADAPT: {
        if (p->ratio_fixed >= 0)
            return p->ratio_fixed;
        double P = cfg->max_pos, W = cfg->beacon.window;
        if (v2 && cfg->rope_scaling == BRT_ROPE_LINEAR)
            P *= cfg->rope_factor;
        double T = (double)avail + b->adapt_extra;
        int best = -1;
        double best_cap = 0;
        int32_t mx = f[0];
        for (int i = 0; i < nf; i++) {
            double cap = f[i] > 0 ? (P - W) * f[i] + W : P;
            if (f[i] > mx)
                mx = f[i];
            if (cap >= T && (best < 0 || cap < best_cap)) {
                best = i;
                best_cap = cap;
            }
        }
        p->ratio_fixed = best >= 0 ? f[best] : mx;
        return p->ratio_fixed;
    }
    default:
        brt_errf(err, BRT_ERR_INTERNAL, "random beacon ratio mix reached the planner");
        return -1;
    }
}

brt_status brt_plan_state_need(const brt_model_config *cfg, int64_t prompt_len, int64_t max_new, int32_t chunk,
                               brt_state_need *out, brt_err *err)
{
    memset(out, 0, sizeof *out);
    const brt_policy_ops *ops = brt_policy_ops_for(cfg->policy);
    brt_plan p;
    brt_plan_init(&p, cfg);
    /* the planner only reads token ids to copy them into steps: a dummy stream will do */
    int64_t total = prompt_len + (max_new > 1 ? max_new - 1 : 0);
    int32_t *dummy = calloc((size_t)(total > 0 ? total : 1), sizeof *dummy);
    if (!dummy)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    int64_t avail = prompt_len;
    brt_status st = BRT_OK;
    for (;;) {
        brt_step s;
        memset(&s, 0, sizeof s);
        int r = ops->plan_next(&p, cfg, dummy, avail, chunk, &s, err);
        if (r < 0) {
            st = err ? err->status : BRT_ERR_INTERNAL;
            break;
        }
        if (r == 0) {
            if (avail >= total)
                break;
            avail++; /* the next generated token arrives */
            continue;
        }
        out->steps++;
        out->rows += s.n_rows;
        /* memory only grows (its last size is its peak); the open window / local cache holds, at
         * most, its slots before a step plus the step's rows that enter it */
        /* beacon rows never enter the window, except v2's interleaved slots */
        int interleaved = cfg->policy == BRT_POLICY_BEACON_V2 && cfg->beacon.pos == BRT_BEACON_POS_INTERLEAVE;
        int64_t raw_t = (int64_t)s.expect_raw + (interleaved ? s.n_rows : s.n_raw);
        if (raw_t > out->raw)
            out->raw = raw_t;
        if (p.sink > out->sink)
            out->sink = p.sink;
        brt_step_free_arrays(&s);
    }
    out->mem = p.mem;
    free(dummy);
    return st;
}

int64_t brt_plan_job_bytes(const brt_model_config *cfg, const brt_state_need *need, int32_t a, int32_t b,
                           int32_t block_bytes, brt_dtype state_dtype)
{
    const brt_policy_ops *ops = brt_policy_ops_for(cfg->policy);
    int64_t total = 0;
    for (int32_t l = a; l < b; l++)
        total += ops->layer_bytes(cfg, l, block_bytes, state_dtype, need->sink, need->mem, need->raw);
    return total;
}
