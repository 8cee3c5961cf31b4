/* Shared by the policy unit tests (included, not a test itself): configs built in code from the
 * golden beacon-tiny base fields, and a one-job "stage" that runs a policy's planner and its
 * state keeper (state_init / prepare / commit / end_step) on real layer states, with random
 * q/k/v in place of projections and no attention (prepare and commit do not need its output). */
#ifndef BRT_TEST_POLICY_HARNESS_H
#define BRT_TEST_POLICY_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kvpool.h"
#include "engine/kvstate.h"
#include "engine/policy.h"
#include "kernels.h"
#include "model/config.h"

#define H_MAX_LAYERS 8
#define H_SPANS_CAP 8192
#define H_ROPE_ROWS 5 /* small on purpose: the rotation helpers work in pieces */

/* ---- configs ------------------------------------------------------------------------------ */

/* beacon-tiny's config.json without its long-context fields: a plain Llama config. */
static inline json_t *h_base_json(void)
{
    json_error_t je;
    json_t *o = json_load_file(BRT_SOURCE_DIR "/tests/data/golden/beacon-tiny/config.json", 0, &je);
    if (!o)
        fail_msg("cannot read beacon-tiny/config.json: %s", je.text);
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(o, tmp, key, val)
    {
        if (!strncmp(key, "beacon_", 7) || !strncmp(key, "retrieval_", 10))
            json_object_del(o, key);
    }
    return o;
}

/* base + extra (a JSON object text) -> config; the parse must succeed. */
static inline void h_cfg(const char *extra, brt_model_config *out)
{
    json_t *o = h_base_json();
    json_error_t je;
    json_t *x = json_loads(extra, 0, &je);
    if (!x)
        fail_msg("bad test JSON %s: %s", extra, je.text);
    json_object_update(o, x);
    brt_err err;
    memset(&err, 0, sizeof err);
    brt_status st = brt_config_from_json(o, NULL, "test config", out, &err);
    if (st != BRT_OK)
        fail_msg("config %s refused: %s", extra, err.msg);
    json_decref(x);
    json_decref(o);
}

/* A golden set's own config.json. */
static inline void h_cfg_golden(const char *set, brt_model_config *out)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/data/golden/%s", BRT_SOURCE_DIR, set);
    brt_err err;
    memset(&err, 0, sizeof err);
    if (brt_config_load(dir, NULL, out, &err) != BRT_OK)
        fail_msg("%s: %s", set, err.msg);
}

/* ---- the one-job stage ---------------------------------------------------------------------- */

typedef struct harness harness;
/* called after prepare (state before the step, spans and vis filled), before commit */
typedef void (*h_check_fn)(harness *h, brt_layer_ctx *c, void *ud);

struct harness {
    brt_model_config cfg;
    const brt_policy_ops *ops;
    brt_backend *be;
    brt_kvpool *pool;
    float inv_freq[512];
    brt_buffer *inv_buf;   /* inv_freq in the backend's memory */
    brt_kv_ctx kv;
    brt_job_state js;
    brt_layer_state ls[H_MAX_LAYERS];
    int32_t n_layers;
    brt_plan plan;
    float *q, *k, *v;      /* host: the step's random rows */
    brt_buffer *act;       /* the step's rows in the backend: q, k, kpre, v */
    brt_mat mq, mk, mkpre, mv;
    int32_t rows_cap;
    brt_kv_span spans[H_SPANS_CAP];
    brt_attn_vis *vis;
    uint64_t rng;
    /* the token stream (ids = index + 3, any valid id will do) */
    int32_t *tokens;
    int64_t tokens_cap;
};

static inline float h_rand(harness *h)
{
    h->rng = h->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((h->rng >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static inline void h_init(harness *h, const brt_model_config *cfg, int64_t max_tokens)
{
    memset(h, 0, sizeof *h);
    h->cfg = *cfg;
    h->ops = brt_policy_ops_for(cfg->policy);
    assert_non_null(h->ops);
    brt_err err;
    assert_int_equal(brt_cpu_backend_create(1, NULL, &h->be, &err), BRT_OK);
    /* small blocks: a region spans many blocks, so spans and intervals cross block edges */
    const int32_t kvd = cfg->n_kv_heads * cfg->head_dim;
    int32_t bb = ((kvd * 4 * 3) + 63) / 64 * 64;
    assert_int_equal(brt_kvpool_create(h->be, (int64_t)1 << 30, bb, &h->pool, &err), BRT_OK);
    assert_true(cfg->head_dim / 2 <= 512 && kvd <= 4096);
    for (int32_t i = 0; i < cfg->head_dim / 2; i++)
        h->inv_freq[i] = 1.0f / powf((float)cfg->rope_theta, (float)(2 * i) / (float)cfg->head_dim);
    assert_int_equal(h->be->buffer_alloc(h->be, sizeof h->inv_freq, BRT_MEM_DEVICE, &h->inv_buf, &err), BRT_OK);
    brt_mat inv = brt_buffer_mat(h->inv_buf, cfg->head_dim / 2, BRT_DT_F32);
    assert_int_equal(h->be->set_rows(h->be, inv, h->inv_freq, 1, cfg->head_dim / 2, &err), BRT_OK);
    h->kv = (brt_kv_ctx){h->be, h->pool,
                         (brt_rope){inv, cfg->head_dim,
                                    cfg->rope_scaling == BRT_ROPE_LINEAR ? (float)cfg->rope_factor : 1.0f},
                         cfg->n_kv_heads, cfg->head_dim, NULL, 0};
    h->n_layers = cfg->n_layers < H_MAX_LAYERS ? cfg->n_layers : H_MAX_LAYERS;
    h->js.job = 1;
    h->js.n_layers = h->n_layers;
    h->js.layers = h->ls;
    for (int32_t l = 0; l < h->n_layers; l++)
        h->ops->state_init(&h->cfg, l, h->pool, &h->ls[l]);
    brt_plan_init(&h->plan, &h->cfg);
    h->rng = 12345;
    h->tokens_cap = max_tokens > 0 ? max_tokens : 1;
    h->tokens = malloc((size_t)h->tokens_cap * sizeof *h->tokens);
    assert_non_null(h->tokens);
    for (int64_t i = 0; i < h->tokens_cap; i++)
        h->tokens[i] = (int32_t)(3 + i % (cfg->vocab_size - 3));
}

static inline void h_free(harness *h)
{
    for (int32_t l = 0; l < h->n_layers; l++)
        brt_layer_state_clear(&h->ls[l], h->pool);
    free(h->js.raw_kind);
    brt_kvpool_destroy(h->pool);
    brt_kv_ctx_free(&h->kv);
    h->be->buffer_free(h->be, h->inv_buf);
    if (h->act)
        h->be->buffer_free(h->be, h->act);
    h->be->destroy(h->be);
    free(h->q);
    free(h->k);
    free(h->v);
    free(h->vis);
    free(h->tokens);
}

/* Plan the next step over [0, avail); 0 = nothing to plan. */
static inline int h_plan(harness *h, int64_t avail, brt_step *st)
{
    memset(st, 0, sizeof *st);
    st->job = 1;
    brt_err err;
    memset(&err, 0, sizeof err);
    assert_true(avail <= h->tokens_cap);
    int r = h->ops->plan_next(&h->plan, &h->cfg, h->tokens, avail, 512, st, &err);
    if (r < 0)
        fail_msg("plan_next failed: %s", err.msg);
    return r;
}

static inline void h_rows(harness *h, int32_t n)
{
    if (n <= h->rows_cap)
        return;
    const int32_t qd = h->cfg.n_heads * h->cfg.head_dim, kvd = h->cfg.n_kv_heads * h->cfg.head_dim;
    h->rows_cap = n * 2;
    const int64_t R = h->rows_cap;
    h->q = realloc(h->q, (size_t)R * qd * sizeof(float));
    h->k = realloc(h->k, (size_t)R * kvd * sizeof(float));
    h->v = realloc(h->v, (size_t)R * kvd * sizeof(float));
    h->vis = realloc(h->vis, (size_t)R * sizeof *h->vis);
    assert_true(h->q && h->k && h->v && h->vis);
    if (h->act)
        h->be->buffer_free(h->be, h->act);
    brt_err err;
    assert_int_equal(h->be->buffer_alloc(h->be, (size_t)(R * (qd + 3 * kvd)) * 4, BRT_MEM_DEVICE, &h->act, &err), BRT_OK);
    h->mq = brt_mat_make(h->act, 0, qd, BRT_DT_F32);
    h->mk = brt_mat_make(h->act, R * qd * 4, kvd, BRT_DT_F32);
    h->mkpre = brt_mat_make(h->act, R * (qd + kvd) * 4, kvd, BRT_DT_F32);
    h->mv = brt_mat_make(h->act, R * (qd + 2 * kvd) * 4, kvd, BRT_DT_F32);
}

/* Run the step through every layer's prepare and commit (check_layer < 0: call check on every
 * layer), then end_step. */
static inline void h_apply(harness *h, brt_step *st, int32_t check_layer, h_check_fn check, void *ud)
{
    const int32_t qd = h->cfg.n_heads * h->cfg.head_dim, kvd = h->cfg.n_kv_heads * h->cfg.head_dim;
    h_rows(h, st->n_rows);
    for (int32_t l = 0; l < h->n_layers; l++) {
        for (int64_t i = 0; i < (int64_t)st->n_rows * qd; i++)
            h->q[i] = h_rand(h);
        for (int64_t i = 0; i < (int64_t)st->n_rows * kvd; i++) {
            h->k[i] = h_rand(h);
            h->v[i] = h_rand(h);
        }
        brt_err err;
        memset(&err, 0, sizeof err);
        assert_int_equal(h->be->set_rows(h->be, h->mq, h->q, st->n_rows, qd, &err), BRT_OK);
        assert_int_equal(h->be->set_rows(h->be, h->mk, h->k, st->n_rows, kvd, &err), BRT_OK);
        assert_int_equal(h->be->set_rows(h->be, h->mv, h->v, st->n_rows, kvd, &err), BRT_OK);
        brt_layer_ctx c = {&h->cfg, &h->kv, l, st, &h->js, &h->ls[l], h->mq, h->mk, h->mkpre, h->mv,
                           h->spans, H_SPANS_CAP, 0, h->vis};
        if (h->ops->prepare(&c, &err) != BRT_OK)
            fail_msg("prepare (step %u layer %d): %s", st->index, l, err.msg);
        if (check && (check_layer < 0 || check_layer == l))
            check(h, &c, ud);
        if (h->ops->commit(&c, &err) != BRT_OK)
            fail_msg("commit (step %u layer %d): %s", st->index, l, err.msg);
    }
    brt_err err;
    if (h->ops->end_step && h->ops->end_step(&h->js, st, &err) != BRT_OK)
        fail_msg("end_step: %s", err.msg);
    h->js.next_index = st->index + 1;
}

/* Plan and apply every step over [0, avail). Returns the number of steps. */
static inline int h_run_to(harness *h, int64_t avail)
{
    int n = 0;
    brt_step st;
    while (h_plan(h, avail, &st) == 1) {
        h_apply(h, &st, -1, NULL, NULL);
        brt_step_free_arrays(&st);
        n++;
    }
    return n;
}

/* Row r of a view, as f32, into dst (the step's rows: f32 views). */
static inline void h_row(const harness *h, brt_mat m, int32_t r, float *dst, int32_t n)
{
    brt_err err;
    assert_int_equal(h->be->get_rows(h->be, brt_mat_row(m, r), dst, 1, n, &err), BRT_OK);
}

/* Slot i of a sequence, as f32. */
static inline void h_slot(const harness *h, const brt_kvseq *s, int32_t i, float *dst)
{
    brt_err err;
    if (brt_kvseq_read_f32(s, h->pool, i, dst, &err) != BRT_OK)
        fail_msg("reading slot %d: %s", i, err.msg);
}

/* ---- reference RoPE (rotate-half, angle = pos * inv_freq), independent of the kernels --- */

static inline void h_rope_ref(const harness *h, const float *in, float *out, int32_t heads, double pos)
{
    const int32_t d = h->cfg.head_dim, half = d / 2;
    const double p = pos / (h->cfg.rope_scaling == BRT_ROPE_LINEAR ? h->cfg.rope_factor : 1.0);
    for (int32_t hh = 0; hh < heads; hh++) {
        const float *x = in + (int64_t)hh * d;
        float *y = out + (int64_t)hh * d;
        for (int32_t j = 0; j < half; j++) {
            double a = p * (double)h->inv_freq[j], c = cos(a), s = sin(a);
            y[j] = (float)(x[j] * c - x[j + half] * s);
            y[j + half] = (float)(x[j + half] * c + x[j] * s);
        }
    }
}

static inline double h_maxdiff(const float *a, const float *b, int32_t n)
{
    double m = 0;
    for (int32_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = d;
    }
    return m;
}

/* ---- visibility ------------------------------------------------------------------------- */

/* Total keys of the step = sum of span lengths. */
static inline int32_t h_n_keys(const brt_layer_ctx *c)
{
    int32_t n = 0;
    for (int32_t i = 0; i < c->n_spans; i++)
        n += c->spans[i].n;
    return n;
}

/* Expand row r's intervals into vis01[n_keys]; fails on an interval outside the keys. */
static inline void h_expand(const brt_layer_ctx *c, int32_t r, int32_t n_keys, uint8_t *vis01)
{
    memset(vis01, 0, (size_t)n_keys);
    const brt_attn_vis *v = &c->vis[r];
    assert_true(v->n >= 0 && v->n <= BRT_ATTN_MAX_INTERVALS);
    for (int32_t i = 0; i < v->n; i++) {
        if (v->lo[i] < 0 || v->hi[i] > n_keys || v->lo[i] > v->hi[i])
            fail_msg("row %d interval %d [%d, %d) outside the %d keys", r, i, v->lo[i], v->hi[i], n_keys);
        for (int32_t j = v->lo[i]; j < v->hi[i]; j++)
            vis01[j] = 1;
    }
}

/* Compare a row's visible set with the expected one; report the first difference. */
static inline void h_expect_row(const brt_layer_ctx *c, int32_t r, const uint8_t *want, int32_t n_keys, const char *what)
{
    uint8_t *got = malloc((size_t)n_keys + 1);
    assert_non_null(got);
    h_expand(c, r, n_keys, got);
    for (int32_t j = 0; j < n_keys; j++)
        if (got[j] != want[j]) {
            char buf[256] = "";
            int off = 0;
            for (int32_t i = 0; i < c->vis[r].n && off < 200; i++)
                off += snprintf(buf + off, sizeof buf - (size_t)off, " [%d,%d)", c->vis[r].lo[i], c->vis[r].hi[i]);
            free(got);
            fail_msg("%s: step %u row %d (%s): key %d is %s but should be %s (of %d keys; intervals:%s)", what,
                     c->step->index, r, c->step->kind[r] == BRT_ROW_BEACON ? "beacon" : "raw", j,
                     want[j] ? "hidden" : "visible", want[j] ? "visible" : "hidden", n_keys, buf);
        }
    free(got);
}

#endif
