/* Activation Beacon, v1 (Llama-2 code) and v2 (interleave and append), exact to the official
 * implementations (docs/beacon.md of the design folder; checked against the official source).
 *
 * Layout of one step's keys, the same on every stage:
 *     [sink | beacon memory | raw window cache | this step's rows]
 * Memory slot j sits at position sink+j, raw slot j at sink+mem+j (v1 has no sink). Keys are
 * stored post-RoPE; the raw window also keeps its pre-RoPE keys because its positions move when
 * memory grows (v1 with stride < window, v2's sink quirk), and slots that become memory are
 * rotated from pre-RoPE to their memory position, as the official code (which caches pre-RoPE
 * and re-rotates everything each step) effectively does. */
#include "engine/policy.h"

#include <stdlib.h>
#include <string.h>

/* ---- planner ------------------------------------------------------------------------- */

/* The current window [*s, *e) over the available tokens; 1 when it is full (W tokens). */
static int window(const brt_plan *p, const brt_beacon_config *b, int64_t avail, int64_t *s, int64_t *e)
{
    *s = p->start;
    *e = *s + b->window;
    if (*e <= avail)
        return 1;
    *e = avail;
    return 0;
}

static void beacon_step_head(brt_plan *p, brt_step *st)
{
    st->index = p->next_index++;
    st->expect_sink = p->sink;
    st->expect_mem = p->mem;
    st->expect_raw = p->raw;
}

static int v1_plan_next(brt_plan *p, const brt_model_config *cfg, const int32_t *tokens, int64_t avail,
                        int32_t chunk, brt_step *st, brt_err *err)
{
    const brt_beacon_config *b = &cfg->beacon;
    if (p->fed >= avail)
        return 0;
    int64_t s, e;
    const int full = window(p, b, avail, &s, &e);
    const int32_t n_new = (int32_t)(e - p->fed), w = (int32_t)(e - s), slot0 = (int32_t)(p->fed - s);
    int32_t r = 0, k = 0, keep = w;
    int64_t next = s;
    if (full) {
        r = brt_beacon_choose_ratio(p, cfg, avail, 0, err);
        if (r < 0)
            return -1;
        k = r > 0 ? b->stride / r : -1;
        next = s + b->stride;
        keep = (int32_t)(e - next);
    }
    if (brt_step_alloc_rows(st, n_new + (k > 0 ? k : 0), err) != BRT_OK)
        return -1;
    beacon_step_head(p, st);
    st->n_raw = n_new;
    st->ratio = r;
    st->k = k;
    st->keep = keep;
    st->span = k > 0 ? b->stride / k : 0;
    st->flags = (full ? BRT_STEP_FULL_WINDOW : 0) | (k < 0 ? BRT_STEP_RAW_TO_MEM : 0);
    const int32_t M = p->mem;
    for (int32_t j = 0; j < n_new; j++) {
        st->tokens[j] = tokens[p->fed + j];
        st->pos[j] = M + slot0 + j;
        st->kind[j] = BRT_ROW_RAW;
    }
    for (int32_t i = 0; i < k; i++) {
        int32_t row = n_new + i;
        st->tokens[row] = -1;
        st->kind[row] = BRT_ROW_BEACON;
        switch (b->attn) {
        case BRT_BEACON_ATTN_STEP_EXPANSION: st->pos[row] = M + (i + 1) * st->span; break;
        case BRT_BEACON_ATTN_SEGMENTATION: st->pos[row] = M + st->span; break;
        case BRT_BEACON_ATTN_FULL_COVERAGE: st->pos[row] = M + w; break;
        }
    }
    if (k == 0)
        p->raw += n_new;
    else if (k > 0) {
        p->mem += k;
        p->raw = keep;
    } else if (keep > 0) {
        p->mem += p->raw + n_new - keep;
        p->raw = keep;
    } else {
        p->mem += n_new; /* the official code drops the cached raw window here */
        p->raw = 0;
    }
    p->start = next;
    p->fed = e;
    p->step_idx++;
    (void)chunk;
    return 1;
}

static void v2_sink(brt_plan *p, const brt_model_config *cfg, brt_step *st)
{
    /* official quirk: while beacon memory is empty, every update overwrites the sink with the
     * first slots of the latest chunk (they also stay in the raw window) */
    if (p->mem == 0 && cfg->beacon.sink_size > 0) {
        st->sink_take = st->n_rows < cfg->beacon.sink_size ? st->n_rows : cfg->beacon.sink_size;
        p->sink = st->sink_take;
    }
}

static int v2_interleave_plan(brt_plan *p, const brt_model_config *cfg, const int32_t *tokens, int64_t avail,
                              brt_step *st, brt_err *err)
{
    const brt_beacon_config *b = &cfg->beacon;
    int64_t s, e;
    const int full = window(p, b, avail, &s, &e);
    const int32_t n = (int32_t)(e - p->fed);
    int32_t r;
    if (p->prev_full) {
        r = brt_beacon_choose_ratio(p, cfg, avail, 1, err);
        if (r < 0)
            return -1;
        p->r_cur = r;
    } else
        r = p->r_cur;
    const int32_t k = r > 0 ? (n + p->rem) / r : -1;
    const int32_t slots = n + (k > 0 ? k : 0);
    if (brt_step_alloc_rows(st, slots, err) != BRT_OK)
        return -1;
    beacon_step_head(p, st);
    st->n_raw = n;
    st->ratio = r;
    st->k = k;
    st->span = r;
    st->flags = (full ? BRT_STEP_FULL_WINDOW : 0) | (full && k < 0 ? BRT_STEP_RAW_TO_MEM : 0);
    const int32_t base = p->sink + p->mem + p->raw;
    int32_t j = 0, nb = 0;
    for (int32_t q = 0; q < slots; q++) {
        int beacon = r > 0 && q % (r + 1) == r - p->rem;
        st->kind[q] = beacon ? BRT_ROW_BEACON : BRT_ROW_RAW;
        st->tokens[q] = beacon ? -1 : tokens[p->fed + j++];
        st->pos[q] = base + q;
        nb += beacon;
    }
    if (r > 0)
        p->rem = (n + p->rem) % r;
    v2_sink(p, cfg, st);
    if (!full) {
        p->raw += slots;
        p->raw_beacons += nb;
    } else {
        p->mem += (st->flags & BRT_STEP_RAW_TO_MEM) ? p->raw + slots : p->raw_beacons + nb;
        p->raw = 0;
        p->raw_beacons = 0;
    }
    p->prev_full = full;
    p->start = full ? s + b->window : s;
    p->fed = e;
    return 1;
}

static int v2_append_plan(brt_plan *p, const brt_model_config *cfg, const int32_t *tokens, int64_t avail,
                          brt_step *st, brt_err *err)
{
    const brt_beacon_config *b = &cfg->beacon;
    int64_t s, e;
    const int full = window(p, b, avail, &s, &e);
    const int32_t n = (int32_t)(e - p->fed), R = p->raw;
    int32_t r = 0, k = 0;
    if (full) {
        r = brt_beacon_choose_ratio(p, cfg, avail, 1, err);
        if (r < 0)
            return -1;
        k = r > 0 ? b->stride / r : -1;
    }
    if (brt_step_alloc_rows(st, n + (k > 0 ? k : 0), err) != BRT_OK)
        return -1;
    beacon_step_head(p, st);
    st->n_raw = n;
    st->ratio = r;
    st->k = k;
    st->keep = 0;
    st->span = r;
    st->flags = (full ? BRT_STEP_FULL_WINDOW : 0) | (k < 0 ? BRT_STEP_RAW_TO_MEM : 0);
    const int32_t base = p->sink + p->mem; /* window raw slot j sits at base + j */
    for (int32_t j = 0; j < n; j++) {
        st->tokens[j] = tokens[p->fed + j];
        st->pos[j] = base + R + j;
        st->kind[j] = BRT_ROW_RAW;
    }
    for (int32_t i = 0; i < k; i++) {
        int32_t row = n + i, pos = 0;
        switch (b->attn) {
        case BRT_BEACON_ATTN_STEP_EXPANSION:
            pos = base + (i + 1) * r - 1 + (b->attend_prev ? i + 1 : 1);
            break;
        case BRT_BEACON_ATTN_SEGMENTATION: /* the official formula counts the raw cache too */
            pos = r + base + R + (b->attend_prev ? i : 0);
            break;
        case BRT_BEACON_ATTN_FULL_COVERAGE: pos = base + R + n + i; break;
        }
        st->tokens[row] = -1;
        st->kind[row] = BRT_ROW_BEACON;
        st->pos[row] = pos;
    }
    v2_sink(p, cfg, st);
    if (k == 0)
        p->raw += n;
    else {
        p->mem += k > 0 ? k : R + n;
        p->raw = 0;
    }
    p->start = full ? s + b->window : s;
    p->fed = e;
    return 1;
}

static int v2_plan_next(brt_plan *p, const brt_model_config *cfg, const int32_t *tokens, int64_t avail,
                        int32_t chunk, brt_step *st, brt_err *err)
{
    if (p->fed >= avail)
        return 0;
    (void)chunk;
    if (cfg->beacon.pos == BRT_BEACON_POS_INTERLEAVE)
        return v2_interleave_plan(p, cfg, tokens, avail, st, err);
    return v2_append_plan(p, cfg, tokens, avail, st, err);
}

static int32_t beacon_max_rows(const brt_model_config *cfg, int32_t chunk)
{
    const brt_beacon_config *b = &cfg->beacon;
    int32_t minr = 0;
    for (int i = 0; i < b->n_ratios; i++)
        if (b->ratios[i] > 0 && (minr == 0 || b->ratios[i] < minr))
            minr = b->ratios[i];
    return b->window + (minr > 0 ? b->window / minr + 1 : 0);
}

/* ---- state keeper ------------------------------------------------------------------------ */

static void beacon_state_init(const brt_model_config *cfg, int32_t layer, brt_kvpool *pool, brt_layer_state *ls)
{
    brt_layer_state_init(ls, pool, cfg->n_kv_heads * cfg->head_dim, brt_kvpool_state_dtype(pool), 1);
}

static brt_status check_sizes(brt_layer_ctx *c, brt_err *err)
{
    const brt_step *st = c->step;
    const brt_layer_state *ls = c->ls;
    if (ls->sink_k.n != st->expect_sink || ls->mem_k.n != st->expect_mem || ls->raw_k.n != st->expect_raw)
        return brt_errf(err, BRT_ERR_INTERNAL,
                        "job %llu step %u layer %d: state (sink %d, memory %d, window %d) differs from the plan "
                        "(%d, %d, %d)",
                        (unsigned long long)st->job, st->index, c->layer, ls->sink_k.n, ls->mem_k.n, ls->raw_k.n,
                        st->expect_sink, st->expect_mem, st->expect_raw);
    return BRT_OK;
}

static void add_iv(brt_attn_vis *v, int32_t lo, int32_t hi)
{
    if (hi > lo && v->n < BRT_ATTN_MAX_INTERVALS) {
        v->lo[v->n] = lo;
        v->hi[v->n] = hi;
        v->n++;
    }
}

static brt_status beacon_prepare(brt_layer_ctx *c, brt_err *err)
{
    const brt_model_config *cfg = c->cfg;
    const brt_beacon_config *b = &cfg->beacon;
    const brt_step *st = c->step;
    brt_layer_state *ls = c->ls;
    BRT_TRY(check_sizes(c, err));
    const int32_t base = ls->sink_k.n + ls->mem_k.n, R = ls->raw_k.n;
    BRT_TRY(brt_kv_rebase_raw(c->kv, ls, base, err));
    BRT_TRY(brt_policy_rope_step(c, 1, err));
    int32_t n = brt_kv_add_spans(c->kv, &ls->sink_k, &ls->sink_v, c->spans, 0, c->spans_cap);
    n = brt_kv_add_spans(c->kv, &ls->mem_k, &ls->mem_v, c->spans, n, c->spans_cap);
    n = brt_kv_add_spans(c->kv, &ls->raw_k, &ls->raw_v, c->spans, n, c->spans_cap);
    c->spans[n++] = (brt_kv_span){c->k, c->v, st->n_rows};
    c->n_spans = n;
    const int v2 = cfg->policy == BRT_POLICY_BEACON_V2;
    if (v2 && b->pos == BRT_BEACON_POS_INTERLEAVE) {
        for (int32_t q = 0; q < st->n_rows; q++) /* plain causal over every slot */
            c->vis[q] = (brt_attn_vis){{0}, {base + R + q + 1}, 1};
        return BRT_OK;
    }
    const int32_t nr = st->n_raw, w = R + nr, bcol = base + w, span = st->span;
    for (int32_t j = 0; j < nr; j++)
        c->vis[j] = (brt_attn_vis){{0}, {base + R + j + 1}, 1};
    for (int32_t i = 0; i < st->n_rows - nr; i++) {
        brt_attn_vis *v = &c->vis[nr + i];
        v->n = 0;
        if (v2 && b->attn == BRT_BEACON_ATTN_FULL_COVERAGE) {
            add_iv(v, 0, bcol + i + 1); /* v2 full-coverage: plain causal */
            continue;
        }
        if (v2 || b->attend_prev)
            add_iv(v, 0, base); /* memory: v1 per attend_previous, v2 always */
        int32_t hi;
        switch (b->attn) {
        case BRT_BEACON_ATTN_STEP_EXPANSION:
            hi = (i + 1) * span < w ? (i + 1) * span : w;
            add_iv(v, base, base + hi);
            break;
        case BRT_BEACON_ATTN_SEGMENTATION:
            hi = (i + 1) * span < w ? (i + 1) * span : w;
            add_iv(v, base + i * span, base + hi);
            break;
        case BRT_BEACON_ATTN_FULL_COVERAGE: add_iv(v, base, base + w); break;
        }
        if (v2 && b->attend_prev)
            add_iv(v, bcol, bcol + i + 1); /* v2 append: causal among this window's beacons */
        else
            add_iv(v, bcol + i, bcol + i + 1); /* itself only */
    }
    return BRT_OK;
}

/* Rows on their way to memory: pre-RoPE keys and values, as runs of raw window slots or of this
 * step's rows, in order. */
typedef struct gather {
    brt_run *k, *v;
    int32_t n, cap;
} gather;

static brt_status gather_init(gather *g, brt_layer_ctx *c, int32_t cap, brt_err *err)
{
    g->n = 0;
    g->cap = cap + 2;
    BRT_TRY(brt_kv_runs_reserve(c->kv, 2 * g->cap, err));
    g->k = c->kv->runs;
    g->v = c->kv->runs + g->cap;
    return BRT_OK;
}

/* raw window slots [i, i + n) */
static void gather_raw(gather *g, brt_layer_ctx *c, int32_t i, int32_t n)
{
    const int32_t nk = brt_kvseq_runs(&c->ls->raw_kpre, c->kv->pool, i, n, g->k + g->n, g->cap - g->n);
    brt_kvseq_runs(&c->ls->raw_v, c->kv->pool, i, n, g->v + g->n, g->cap - g->n);
    g->n += nk;
}

/* this step's rows [r, r + n) */
static void gather_rows(gather *g, brt_layer_ctx *c, int32_t r, int32_t n)
{
    g->k[g->n] = (brt_run){brt_mat_row(c->kpre, r), n};
    g->v[g->n] = (brt_run){brt_mat_row(c->v, r), n};
    g->n++;
}

/* Append the gathered rows to memory at their memory positions, rotating their pre-RoPE keys. */
static brt_status mem_append(brt_layer_ctx *c, const gather *g, brt_err *err)
{
    brt_layer_state *ls = c->ls;
    const int32_t first = ls->sink_k.n + ls->mem_k.n;
    BRT_TRY(brt_kv_append_runs(c->kv, &ls->mem_k, g->k, g->n, 1, first, err));
    return brt_kv_append_runs(c->kv, &ls->mem_v, g->v, g->n, 0, 0, err);
}

/* Runs for n slots of the raw window starting anywhere: at most this many. */
static int32_t raw_runs_max(const brt_layer_ctx *c, int32_t n) { return n / c->ls->raw_k.per_block + 2; }

static brt_status raw_append_rows(brt_layer_ctx *c, int32_t r0, int32_t n, brt_err *err)
{
    brt_layer_state *ls = c->ls;
    BRT_TRY(brt_kv_append(c->kv, &ls->raw_k, brt_mat_row(c->k, r0), n, 0, 0, err));
    BRT_TRY(brt_kv_append(c->kv, &ls->raw_kpre, brt_mat_row(c->kpre, r0), n, 0, 0, err));
    return brt_kv_append(c->kv, &ls->raw_v, brt_mat_row(c->v, r0), n, 0, 0, err);
}

static void raw_clear(brt_layer_ctx *c)
{
    brt_layer_state *ls = c->ls;
    brt_kvseq_clear(&ls->raw_k, c->kv->pool);
    brt_kvseq_clear(&ls->raw_kpre, c->kv->pool);
    brt_kvseq_clear(&ls->raw_v, c->kv->pool);
}

static brt_status raw_drop_front(brt_layer_ctx *c, int32_t n, brt_err *err)
{
    brt_layer_state *ls = c->ls;
    BRT_TRY(brt_kvseq_drop_front(&ls->raw_k, c->kv->pool, n, err));
    BRT_TRY(brt_kvseq_drop_front(&ls->raw_kpre, c->kv->pool, n, err));
    return brt_kvseq_drop_front(&ls->raw_v, c->kv->pool, n, err);
}

/* Move the first n slots of (raw window ++ this step's raw rows) to memory, keep the rest. */
static brt_status move_front_to_mem(brt_layer_ctx *c, int32_t n, brt_err *err)
{
    BRT_TRY(raw_append_rows(c, 0, c->step->n_raw, err));
    gather g;
    BRT_TRY(gather_init(&g, c, raw_runs_max(c, n), err));
    gather_raw(&g, c, 0, n);
    BRT_TRY(mem_append(c, &g, err));
    return raw_drop_front(c, n, err);
}

static brt_status beacon_commit(brt_layer_ctx *c, brt_err *err)
{
    const brt_model_config *cfg = c->cfg;
    const brt_step *st = c->step;
    brt_layer_state *ls = c->ls;
    const int v2 = cfg->policy == BRT_POLICY_BEACON_V2;
    const int32_t nr = st->n_raw, n = st->n_rows;
    const int full = (st->flags & BRT_STEP_FULL_WINDOW) != 0;
    if (st->sink_take > 0) {
        brt_kvseq_clear(&ls->sink_k, c->kv->pool);
        brt_kvseq_clear(&ls->sink_v, c->kv->pool);
        BRT_TRY(brt_kv_append(c->kv, &ls->sink_k, c->kpre, st->sink_take, 1, 0, err));
        BRT_TRY(brt_kv_append(c->kv, &ls->sink_v, c->v, st->sink_take, 0, 0, err));
    }
    if (v2 && cfg->beacon.pos == BRT_BEACON_POS_INTERLEAVE) {
        if (!full)
            BRT_TRY(raw_append_rows(c, 0, n, err));
        else {
            /* the window's beacon slots (all slots for ratio 0) become memory */
            const int all = (st->flags & BRT_STEP_RAW_TO_MEM) != 0;
            const int32_t R = ls->raw_k.n;
            gather g;
            BRT_TRY(gather_init(&g, c, all ? raw_runs_max(c, R) + 1 : R + n, err));
            if (all) {
                gather_raw(&g, c, 0, R);
                gather_rows(&g, c, 0, n);
            } else {
                for (int32_t i = 0; i < R; i++)
                    if (i < c->job->raw_kind_n && c->job->raw_kind[i] == BRT_ROW_BEACON)
                        gather_raw(&g, c, i, 1);
                for (int32_t q = 0; q < n; q++)
                    if (st->kind[q] == BRT_ROW_BEACON)
                        gather_rows(&g, c, q, 1);
            }
            BRT_TRY(mem_append(c, &g, err));
            raw_clear(c);
        }
    } else if (full && st->k > 0) {
        gather g;
        BRT_TRY(gather_init(&g, c, 1, err));
        gather_rows(&g, c, nr, st->k);
        BRT_TRY(mem_append(c, &g, err));
        if (st->keep == 0)
            raw_clear(c);
        else {
            BRT_TRY(raw_append_rows(c, 0, nr, err));
            BRT_TRY(raw_drop_front(c, ls->raw_k.n - st->keep, err));
        }
    } else if (full) { /* ratio 0: raw activations are kept as they are */
        if (v2)
            BRT_TRY(move_front_to_mem(c, ls->raw_k.n + nr, err));
        else if (st->keep > 0)
            BRT_TRY(move_front_to_mem(c, ls->raw_k.n + nr - st->keep, err));
        else {
            /* v1 with stride == window: only this step's rows enter memory; the official code
             * drops the cached raw window */
            raw_clear(c);
            gather g;
            BRT_TRY(gather_init(&g, c, 1, err));
            gather_rows(&g, c, 0, nr);
            BRT_TRY(mem_append(c, &g, err));
        }
    } else
        BRT_TRY(raw_append_rows(c, 0, nr, err));
    /* the window's slots now sit after the (possibly new) sink and memory */
    return brt_kv_rebase_raw(c->kv, ls, ls->sink_k.n + ls->mem_k.n, err);
}

/* v2 interleave: the raw window's slot kinds (shared by all layers) follow the step */
static brt_status beacon_end_step(brt_job_state *js, const brt_step *st, brt_err *err)
{
    if (st->flags & BRT_STEP_FULL_WINDOW) {
        js->raw_kind_n = 0;
        return BRT_OK;
    }
    if (js->raw_kind_n + st->n_rows > js->raw_kind_cap) {
        int32_t cap = (js->raw_kind_n + st->n_rows) * 2;
        uint8_t *nk = realloc(js->raw_kind, (size_t)cap);
        if (!nk)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        js->raw_kind = nk;
        js->raw_kind_cap = cap;
    }
    memcpy(js->raw_kind + js->raw_kind_n, st->kind, (size_t)st->n_rows);
    js->raw_kind_n += st->n_rows;
    return BRT_OK;
}

static int64_t beacon_layer_bytes(const brt_model_config *cfg, int32_t layer, int32_t bb, brt_dtype sd, int64_t sink,
                                  int64_t mem, int64_t raw)
{
    const int32_t kvd = cfg->n_kv_heads * cfg->head_dim;
    return (2 * brt_kvpool_blocks_for(bb, sd, kvd, sink) + 2 * brt_kvpool_blocks_for(bb, sd, kvd, mem) +
            3 * brt_kvpool_blocks_for(bb, sd, kvd, raw)) *
           bb;
}

const brt_policy_ops brt_policy_beacon_v1 = {
    .kind = BRT_POLICY_BEACON_V1,
    .plan_next = v1_plan_next,
    .max_step_rows = beacon_max_rows,
    .state_init = beacon_state_init,
    .prepare = beacon_prepare,
    .commit = beacon_commit,
    .layer_bytes = beacon_layer_bytes,
};

const brt_policy_ops brt_policy_beacon_v2 = {
    .kind = BRT_POLICY_BEACON_V2,
    .plan_next = v2_plan_next,
    .max_step_rows = beacon_max_rows,
    .state_init = beacon_state_init,
    .prepare = beacon_prepare,
    .commit = beacon_commit,
    .end_step = beacon_end_step,
    .layer_bytes = beacon_layer_bytes,
};
