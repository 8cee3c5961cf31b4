/* The stage forward pass, llama2.c-style: every buffer allocated once (sized by the largest
 * micro-batch) in the backend's memory, one plain loop over layers, the policy consulted only
 * around attention. This is the only forward pass: every backend runs it through the op table. */
#include "engine/stage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "engine/stage_impl.h"

#define LOGIT_BYTES (32 << 20) /* the logits buffer's size within which its rows are chosen */
#define ALIGN 256      /* bytes: activation buffers start on this boundary */

/* The activation buffers, as offsets into one backend buffer. */
typedef struct act_layout {
    int64_t hidden, xn, q, k, kpre, v, att, tmp, gate, up, gin, gout, logits, inv_freq, total;
} act_layout;

static int64_t place(int64_t *at, int64_t floats)
{
    int64_t o = *at;
    *at += (floats * 4 + ALIGN - 1) / ALIGN * ALIGN;
    return o;
}

/* Rows of logits per lm_head GEMM: up to LOGIT_ROWS within LOGIT_BYTES, never under 64 (a
 * 152K vocabulary) nor over max_rows (the rows are packed into xn). Fewer rows per GEMM stream
 * the whole of lm_head once per few rows: at 64 rows a window's prompt log-probabilities on the
 * mid model ran at 70% of the FMA peak. */
static int32_t logit_rows_of(const brt_model_config *c, int32_t max_rows)
{
    const int64_t row_bytes = (int64_t)(c->vocab_size > 0 ? c->vocab_size : 1) * (int64_t)sizeof(float);
    int64_t n = LOGIT_BYTES / row_bytes;
    n = n < 64 ? 64 : n > LOGIT_ROWS ? LOGIT_ROWS : n;
    return (int32_t)(n < max_rows ? n : max_rows > 0 ? max_rows : 1);
}

static act_layout layout(const brt_model_config *c, int32_t max_rows, int last)
{
    const int64_t R = max_rows, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t wide = c->intermediate > c->hidden ? c->intermediate : c->hidden;
    if (qd > wide)
        wide = qd;
    act_layout L;
    int64_t at = 0;
    L.hidden = place(&at, R * c->hidden);
    L.xn = place(&at, R * c->hidden);
    L.q = place(&at, R * qd);
    L.k = place(&at, R * kvd);
    L.kpre = place(&at, R * kvd);
    L.v = place(&at, R * kvd);
    L.att = place(&at, R * qd);
    L.tmp = place(&at, R * c->hidden);
    L.gate = place(&at, R * c->intermediate);
    L.up = place(&at, R * c->intermediate);
    L.gin = place(&at, R * wide);
    L.gout = place(&at, R * wide);
    L.logits = place(&at, last ? (int64_t)logit_rows_of(c, max_rows) * c->vocab_size : 0);
    L.inv_freq = place(&at, c->head_dim / 2);
    L.total = at;
    return L;
}

int64_t brt_stage_activation_bytes(const brt_model_config *cfg, int32_t max_rows, int last)
{
    return layout(cfg, max_rows, last).total;
}


static void *xcalloc(size_t n, size_t sz, int *fail)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        *fail = 1;
    return p;
}

brt_status brt_stage_create(const brt_stage_opts *o, brt_stage **out, brt_err *err)
{
    *out = NULL;
    brt_stage *s = calloc(1, sizeof *s);
    if (!s)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    s->o = *o;
    s->cfg = *o->cfg;
    s->o.cfg = &s->cfg;
    s->be = o->be;
    const brt_model_config *c = &s->cfg;
    s->pol = brt_policy_ops_for(c->policy);
    s->dim = c->hidden;
    s->qd = c->n_heads * c->head_dim;
    s->kvd = c->n_kv_heads * c->head_dim;
    s->inter = c->intermediate;
    s->vocab = c->vocab_size;
    s->n_local = o->layer_end - o->layer_begin;
    brt_u64map_init(&s->jobs);
    brt_status st = brt_weights_bind(o->files, c, o->layer_begin, o->layer_end, o->first, o->last, &s->w, err);
    if (st != BRT_OK) {
        free(s);
        return st;
    }
    if (c->head_dim > 2048 || c->hidden > (1 << 18) || c->intermediate > (1 << 18)) {
        brt_stage_destroy(s);
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "model dimensions beyond the kernels' limits");
    }
    if ((st = brt_weights_upload(&s->w, s->be, o->files, err)) != BRT_OK ||
        (st = brt_kvpool_create(s->be, o->kv_budget, o->block_bytes, &s->pool, err)) != BRT_OK) {
        brt_stage_destroy(s);
        return st;
    }
    const act_layout L = layout(c, o->max_rows, o->last);
    s->logit_rows = logit_rows_of(c, o->max_rows);
    if ((st = s->be->buffer_alloc(s->be, (size_t)L.total, BRT_MEM_DEVICE, &s->act, err)) != BRT_OK) {
        brt_stage_destroy(s);
        return brt_err_prefix(err, "activations for %d rows per micro-batch: ", o->max_rows);
    }
    int64_t wide = s->inter > s->dim ? s->inter : s->dim;
    if (s->qd > wide)
        wide = s->qd;
    s->hidden = brt_mat_make(s->act, L.hidden, s->dim, BRT_DT_F32);
    s->xn = brt_mat_make(s->act, L.xn, s->dim, BRT_DT_F32);
    s->q = brt_mat_make(s->act, L.q, s->qd, BRT_DT_F32);
    s->k = brt_mat_make(s->act, L.k, s->kvd, BRT_DT_F32);
    s->kpre = brt_mat_make(s->act, L.kpre, s->kvd, BRT_DT_F32);
    s->v = brt_mat_make(s->act, L.v, s->kvd, BRT_DT_F32);
    s->att = brt_mat_make(s->act, L.att, s->qd, BRT_DT_F32);
    s->tmp = brt_mat_make(s->act, L.tmp, s->dim, BRT_DT_F32);
    s->gate = brt_mat_make(s->act, L.gate, s->inter, BRT_DT_F32);
    s->up = brt_mat_make(s->act, L.up, s->inter, BRT_DT_F32);
    s->gin = brt_mat_make(s->act, L.gin, wide, BRT_DT_F32);
    s->gout = brt_mat_make(s->act, L.gout, wide, BRT_DT_F32);
    s->logits = brt_mat_make(s->act, L.logits, s->vocab, BRT_DT_F32);
    const size_t R = (size_t)o->max_rows;
    int fail = 0;
    s->vis = xcalloc(R, sizeof *s->vis, &fail);
    s->row_kind = xcalloc(R, 1, &fail);
    s->ids = xcalloc(R, sizeof *s->ids, &fail);
    s->runs = xcalloc(2 * R + 2, sizeof *s->runs, &fail);
    float *inv_freq = xcalloc((size_t)c->head_dim / 2, 4, &fail);
    if (fail) {
        free(inv_freq);
        brt_stage_destroy(s);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for stage buffers (%d rows per micro-batch)", o->max_rows);
    }
    brt_config_rope_inv_freq(c, inv_freq); /* with llama3 scaling; linear divides positions (pos_div) */
    brt_mat inv = brt_mat_make(s->act, L.inv_freq, c->head_dim / 2, BRT_DT_F32);
    st = s->be->set_rows(s->be, inv, inv_freq, 1, c->head_dim / 2, err);
    free(inv_freq);
    if (st != BRT_OK) {
        brt_stage_destroy(s);
        return st;
    }
    s->kv = (brt_kv_ctx){s->be, s->pool,
                         (brt_rope){inv, c->head_dim, c->rope_scaling == BRT_ROPE_LINEAR ? (float)c->rope_factor : 1.0f},
                         c->n_kv_heads, c->head_dim, NULL, 0};
    *out = s;
    return BRT_OK;
}

void brt_stage_job_free(brt_stage *s, brt_job_state *js)
{
    if (!js)
        return;
    for (int32_t l = 0; l < js->n_layers; l++)
        brt_layer_state_clear(&js->layers[l], s->pool);
    free(js->layers);
    free(js->raw_kind);
    free(js);
}

void brt_stage_release(brt_stage *s, uint64_t job) { brt_stage_job_free(s, brt_u64map_del(&s->jobs, job)); }

void brt_stage_destroy(brt_stage *s)
{
    if (!s)
        return;
    size_t it = 0;
    void *v;
    while (brt_u64map_next(&s->jobs, &it, NULL, &v))
        brt_stage_job_free(s, v);
    brt_u64map_free(&s->jobs);
    brt_kvpool_destroy(s->pool);
    brt_kvpool_destroy(s->keep_pool); /* kept states were freed by their owner (brt_stage_kept_free) */
    if (s->act)
        s->be->buffer_free(s->be, s->act);
    brt_kv_ctx_free(&s->kv);
    brt_weights_free(&s->w);
    void *bufs[] = {s->vis, s->row_kind, s->ids, s->runs, s->spans, s->segs, s->ctxs, s->js};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(s);
}

const brt_weights *brt_stage_weights(const brt_stage *s) { return &s->w; }
int64_t brt_stage_kv_used(const brt_stage *s) { return brt_kvpool_used_bytes(s->pool); }
void brt_stage_set_kv_budget(brt_stage *s, int64_t bytes) { brt_kvpool_set_budget(s->pool, bytes); }
int64_t brt_stage_kv_peak(const brt_stage *s) { return brt_kvpool_peak_bytes(s->pool); }
int32_t brt_stage_jobs(const brt_stage *s) { return (int32_t)s->jobs.n; }
void brt_stage_stats(const brt_stage *s, double *busy, int64_t *n)
{
    *busy = s->busy;
    *n = s->n_mb;
}

brt_stage_work brt_stage_work_done(const brt_stage *s) { return s->work; }

double brt_stage_work_flops(const brt_model_config *c, const brt_stage_work *w)
{
    const double D = c->hidden, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    const double per_row = D * qd + 2 * D * kvd + qd * D + 3 * D * c->intermediate;
    return 2 * per_row * (double)w->layer_rows + 4.0 * c->head_dim * c->n_heads * (double)w->attn_pairs +
           2 * D * c->vocab_size * (double)w->logit_rows;
}

brt_mat brt_stage_hidden(brt_stage *s) { return s->hidden; }

brt_status brt_stage_put_hidden(brt_stage *s, const float *host, int32_t rows, brt_err *err)
{
    if (rows > s->o.max_rows)
        return brt_errf(err, BRT_ERR_INTERNAL, "%d rows of hidden states for a stage of %d", rows, s->o.max_rows);
    return rows > 0 ? s->be->set_rows(s->be, s->hidden, host, rows, s->dim, err) : BRT_OK;
}

brt_status brt_stage_take_hidden(brt_stage *s, float *host, int32_t rows, brt_err *err)
{
    return rows > 0 ? s->be->get_rows(s->be, s->hidden, host, rows, s->dim, err) : BRT_OK;
}

brt_job_state *brt_stage_job_new(brt_stage *s, uint64_t id)
{
    brt_job_state *js = calloc(1, sizeof *js);
    if (!js)
        return NULL;
    js->job = id;
    js->n_layers = s->n_local;
    js->layers = calloc((size_t)(s->n_local ? s->n_local : 1), sizeof *js->layers);
    if (!js->layers || brt_u64map_put(&s->jobs, id, js) != 0) {
        free(js->layers);
        free(js);
        return NULL;
    }
    for (int32_t l = 0; l < s->n_local; l++)
        s->pol->state_init(&s->cfg, s->o.layer_begin + l, s->pool, &js->layers[l]);
    return js;
}

static void fail_step(brt_stage *s, brt_step *st, brt_job_state **js, const char *fmt, const char *msg)
{
    if (!(st->flags & BRT_STEP_FAILED)) {
        st->flags |= BRT_STEP_FAILED;
        char full[BRT_ERR_MSG_MAX];
        snprintf(full, sizeof full, fmt, msg);
        snprintf(st->error, sizeof st->error, "%.199s", full);
    }
    if (*js) {
        brt_stage_release(s, st->job);
        *js = NULL;
    }
}

/* Runs of the micro-batch's rows of one kind, in order (at most rows). */
static int32_t kind_runs(const brt_stage *s, int32_t rows, int kind, brt_mat m, brt_run *out)
{
    int32_t n = 0;
    for (int32_t r = 0; r < rows;) {
        if (s->row_kind[r] != kind) {
            r++;
            continue;
        }
        int32_t e = r;
        while (e < rows && s->row_kind[e] == kind)
            e++;
        out[n++] = (brt_run){brt_mat_row(m, r), e - r};
        r = e;
    }
    return n;
}

/* out = x W^T (+ b); beacon rows use the beacon projection when it is a different tensor: their
 * rows are gathered, projected and scattered back (every row's numbers are the same either way) */
static brt_status proj(brt_stage *s, int32_t rows, int has_beacon, brt_mat x, const brt_weight *w,
                       const brt_weight *b, const brt_weight *bw, const brt_weight *bb, brt_mat out, brt_err *err)
{
    brt_backend *be = s->be;
    if (!has_beacon || (bw->data == w->data && bb->data == b->data))
        return be->gemm(be, x, rows, w, b, out, err);
    const int64_t in = w->cols, on = w->rows;
    const brt_mat gin = brt_mat_make(s->gin.buf, s->gin.off, in, BRT_DT_F32);
    const brt_mat gout = brt_mat_make(s->gout.buf, s->gout.off, on, BRT_DT_F32);
    for (int kind = 0; kind < 2; kind++) {
        brt_run *src = s->runs;
        const int32_t nr = kind_runs(s, rows, kind, x, src);
        int32_t n = 0;
        for (int32_t i = 0; i < nr; i++)
            n += src[i].n;
        if (!n)
            continue;
        brt_run packed = {gin, n};
        BRT_TRY(be->copy_rows(be, &packed, 1, src, nr, in, NULL, NULL, 0, err));
        BRT_TRY(be->gemm(be, gin, n, kind ? bw : w, kind ? bb : b, gout, err));
        kind_runs(s, rows, kind, out, src);
        packed.m = gout;
        BRT_TRY(be->copy_rows(be, src, nr, &packed, 1, on, NULL, NULL, 0, err));
    }
    return BRT_OK;
}

static brt_status grow(void **p, int64_t *cap, int64_t need, size_t sz)
{
    if (need <= *cap)
        return BRT_OK;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *np = realloc(*p, (size_t)c * sz);
    if (!np)
        return BRT_ERR_NOMEM;
    *p = np;
    *cap = c;
    return BRT_OK;
}

/* The first stage: every row's embedding in one op (token rows, beacon rows, zeros for failed
 * steps). */
static brt_status embed(brt_stage *s, brt_microbatch *mb, brt_job_state **js, brt_err *err)
{
    int32_t off = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        for (int32_t r = 0; r < st->n_rows && !(st->flags & BRT_STEP_FAILED); r++)
            if (st->kind[r] == BRT_ROW_RAW && (st->tokens[r] < 0 || st->tokens[r] >= s->vocab)) {
                char m[96];
                snprintf(m, sizeof m, "token id %d is out of range [0, %d)", st->tokens[r], s->vocab);
                fail_step(s, st, &js[i], "%s", m);
            }
        const int failed = (st->flags & BRT_STEP_FAILED) != 0;
        for (int32_t r = 0; r < st->n_rows; r++)
            s->ids[off + r] = failed ? BRT_EMBED_ZERO : st->kind[r] == BRT_ROW_BEACON ? BRT_EMBED_ALT : st->tokens[r];
        off += st->n_rows;
    }
    return s->be->embed(s->be, &s->w.embed, &s->w.beacon_embed, s->ids, mb->n_rows, s->hidden, err);
}

/* The last stage's outputs. Every row that needs logits (the last raw row of a step that samples,
 * every raw row of a step that scores or returns logits), whatever step it belongs to, goes through
 * the final norm and lm_head logit_rows at a time: a micro-batch of decode steps reads lm_head
 * once, not once per job. */
typedef struct logit_row {
    int32_t step, row, raw_idx; /* row within the step, index among its raw rows */
    int32_t mb_row;             /* row within the micro-batch */
} logit_row;

static void prepare_result(brt_stage *s, const brt_step *st, brt_step_result *r)
{
    const int need_all = (st->logits & (BRT_LOGITS_SCORE | BRT_LOGITS_FULL)) != 0;
    const int32_t k = st->top_k < 0 ? 0 : st->top_k > BRT_TOP_K_MAX ? BRT_TOP_K_MAX : st->top_k;
    r->top_k = k;
    if (need_all) {
        r->n_scored = (st->logits & BRT_LOGITS_SCORE) ? st->n_raw : 0;
        r->n_full = (st->logits & BRT_LOGITS_FULL) ? st->n_raw : 0;
        r->vocab = s->vocab;
        if (r->n_scored)
            r->target_logprob = calloc((size_t)r->n_scored, sizeof(float));
        if (r->n_scored && k)
            r->scored_top = calloc((size_t)r->n_scored * (size_t)k, sizeof(brt_tok_lp));
        if (r->n_full)
            r->full = malloc((size_t)r->n_full * (size_t)s->vocab * sizeof(float));
    }
    if ((st->logits & BRT_LOGITS_SAMPLE) && k)
        r->sampled_top = calloc((size_t)k, sizeof(brt_tok_lp));
    if ((r->n_scored && (!r->target_logprob || (k && !r->scored_top))) || (r->n_full && !r->full) ||
        ((st->logits & BRT_LOGITS_SAMPLE) && k && !r->sampled_top)) {
        brt_step_result_free(r);
        r->n_scored = r->n_full = 0;
        r->failed = 1;
        snprintf(r->error, sizeof r->error, "out of memory for the results of %d rows", st->n_raw);
    }
}

/* final norm + lm_head over the gathered rows, then each row's outputs */
static brt_status flush_logits(brt_stage *s, brt_microbatch *mb, brt_step_result *res, const logit_row *batch,
                               int32_t n, const int32_t *last_raw, brt_err *err)
{
    brt_backend *be = s->be;
    for (int32_t j = 0; j < n; j++)
        s->runs[j] = (brt_run){brt_mat_row(s->hidden, batch[j].mb_row), 1};
    brt_run packed = {s->xn, n};
    BRT_TRY(be->copy_rows(be, &packed, 1, s->runs, n, s->dim, NULL, NULL, 0, err));
    BRT_TRY(be->rmsnorm(be, s->xn, &s->w.final_norm, s->cfg.rms_eps, s->xn, n, s->dim, err));
    BRT_TRY(be->logits(be, s->xn, n, &s->w.lm_head, s->logits, err));
    s->work.logit_rows += n;
    for (int32_t j = 0; j < n; j++) {
        const brt_step *st = &mb->steps[batch[j].step];
        const brt_step_result *r = &res[batch[j].step];
        const int sample = (st->logits & BRT_LOGITS_SAMPLE) && batch[j].row == last_raw[batch[j].step];
        s->req[j] = (brt_logit_req){r->n_scored ? st->target[batch[j].row] : -1,
                                    (r->n_scored || sample) ? r->top_k : 0,
                                    sample,
                                    st->temperature,
                                    st->top_p,
                                    st->seed,
                                    st->draw};
    }
    BRT_TRY(be->logit_rows(be, s->logits, n, s->vocab, s->req, s->lout, err));
    for (int32_t j = 0; j < n; j++) {
        const logit_row *lr = &batch[j];
        brt_step_result *r = &res[lr->step];
        const brt_logit_out *o = &s->lout[j];
        const int32_t k = r->top_k;
        if (r->full)
            BRT_TRY(be->get_rows(be, brt_mat_row(s->logits, j), r->full + (int64_t)lr->raw_idx * s->vocab, 1,
                                 s->vocab, err));
        if (r->n_scored) {
            r->target_logprob[lr->raw_idx] = o->target_logprob;
            if (k)
                memcpy(r->scored_top + (int64_t)lr->raw_idx * k, o->top, (size_t)k * sizeof(brt_tok_lp));
        }
        if (s->req[j].sample) {
            r->sampled = o->sampled;
            r->sampled_logprob = o->sampled_logprob;
            if (k)
                memcpy(r->sampled_top, o->top, (size_t)k * sizeof(brt_tok_lp));
        }
    }
    return BRT_OK;
}

static brt_status results(brt_stage *s, brt_microbatch *mb, brt_step_result *res, brt_err *err)
{
    logit_row batch[LOGIT_ROWS];
    int32_t n = 0, off = 0;
    int32_t *last_raw = malloc((size_t)(mb->n_steps ? mb->n_steps : 1) * sizeof *last_raw);
    if (!last_raw)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        brt_step_result *r = &res[i];
        memset(r, 0, sizeof *r);
        r->job = st->job;
        r->index = st->index;
        r->sampled = -1;
        last_raw[i] = -1;
        for (int32_t q = 0; q < st->n_rows; q++)
            if (st->kind[q] == BRT_ROW_RAW)
                last_raw[i] = q;
        if (st->flags & BRT_STEP_FAILED) {
            r->failed = 1;
            snprintf(r->error, sizeof r->error, "%s", st->error);
        } else if (st->logits)
            prepare_result(s, st, r);
    }
    /* every row that needs logits, in micro-batch order */
    brt_status stt = BRT_OK;
    for (int32_t i = 0; i < mb->n_steps && stt == BRT_OK; i++) {
        const brt_step *st = &mb->steps[i];
        if (st->logits && !(st->flags & BRT_STEP_FAILED) && !res[i].failed) {
            const int need_all = (st->logits & (BRT_LOGITS_SCORE | BRT_LOGITS_FULL)) != 0;
            for (int32_t q = 0, ri = 0; q <= last_raw[i] && stt == BRT_OK; q++) {
                if (st->kind[q] != BRT_ROW_RAW)
                    continue;
                if (need_all || q == last_raw[i])
                    batch[n++] = (logit_row){i, q, ri, off + q};
                ri++;
                if (n == s->logit_rows) {
                    stt = flush_logits(s, mb, res, batch, n, last_raw, err);
                    n = 0;
                }
            }
        }
        off += st->n_rows;
    }
    if (n && stt == BRT_OK)
        stt = flush_logits(s, mb, res, batch, n, last_raw, err);
    free(last_raw);
    return stt;
}

/* Find each step's job state (a new one on its first step); the rows' kinds. */
static brt_status find_jobs(brt_stage *s, brt_microbatch *mb, int *any_beacon, brt_err *err)
{
    if (mb->n_steps > s->steps_cap) {
        int32_t cap = mb->n_steps * 2;
        void *a = realloc(s->segs, (size_t)cap * sizeof *s->segs), *b = realloc(s->ctxs, (size_t)cap * sizeof *s->ctxs),
             *d = realloc(s->js, (size_t)cap * sizeof *s->js);
        if (a)
            s->segs = a;
        if (b)
            s->ctxs = b;
        if (d)
            s->js = d;
        if (!a || !b || !d)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        s->steps_cap = cap;
    }
    int32_t off = 0;
    *any_beacon = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        brt_job_state *js = NULL;
        if (st->flags & BRT_STEP_FAILED)
            brt_stage_release(s, st->job);
        else if (st->index == 0) {
            brt_stage_release(s, st->job); /* a reused id starts afresh */
            js = brt_stage_job_new(s, st->job);
            if (!js)
                fail_step(s, st, &js, "%s", "out of memory for job state");
        } else {
            js = brt_u64map_get(&s->jobs, st->job);
            if (!js || js->next_index != st->index) {
                char m[128];
                snprintf(m, sizeof m, "internal: step %u arrived but the stage expected %u", st->index,
                         js ? js->next_index : 0);
                fail_step(s, st, &js, "%s", m);
            }
        }
        s->js[i] = js;
        for (int32_t r = 0; r < st->n_rows; r++) {
            s->row_kind[off + r] = (st->flags & BRT_STEP_FAILED) ? BRT_ROW_RAW : st->kind[r];
            *any_beacon |= s->row_kind[off + r] == BRT_ROW_BEACON;
        }
        off += st->n_rows;
    }
    return BRT_OK;
}

/* Keys of [0, n_keys) a row sees: the size of the union of its intervals */
static int64_t visible_keys(const brt_attn_vis *v, int32_t n_keys)
{
    int32_t lo[BRT_ATTN_MAX_INTERVALS], hi[BRT_ATTN_MAX_INTERVALS];
    int n = 0;
    for (int i = 0; i < v->n && i < BRT_ATTN_MAX_INTERVALS; i++) {
        int32_t a = v->lo[i] > 0 ? v->lo[i] : 0, b = v->hi[i] < n_keys ? v->hi[i] : n_keys;
        if (a >= b)
            continue;
        int j = n++; /* kept in order of lo */
        for (; j > 0 && lo[j - 1] > a; j--) {
            lo[j] = lo[j - 1];
            hi[j] = hi[j - 1];
        }
        lo[j] = a;
        hi[j] = b;
    }
    int64_t count = 0;
    int32_t end = INT32_MIN;
    for (int i = 0; i < n; i++) {
        int32_t a = lo[i] > end ? lo[i] : end;
        if (hi[i] > a)
            count += hi[i] - a;
        end = hi[i] > end ? hi[i] : end;
    }
    return count;
}

/* Attention of layer l: each step's policy describes its keys (prepare), one attention op over
 * every step, then each policy updates its state (commit). A step whose policy fails is failed
 * alone. */
static brt_status attention(brt_stage *s, brt_microbatch *mb, int32_t l, brt_err *err)
{
    brt_backend *be = s->be;
    const brt_model_config *c = &s->cfg;
    /* room for every step's key spans (memory may grow by a flush inside prepare) */
    int64_t need = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_job_state *js = s->js[i];
        if (!js)
            continue;
        const brt_layer_state *ls = &js->layers[l - s->o.layer_begin];
        need += ls->sink_k.n_blocks + ls->mem_k.n_blocks + 2 * ls->raw_k.n_blocks + ls->raw_k.n + 4;
    }
    if (grow((void **)&s->spans, &s->spans_cap, need, sizeof *s->spans) != BRT_OK)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    int32_t nseg = 0, off = 0;
    int64_t used = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        const int32_t o = off;
        off += st->n_rows;
        brt_layer_ctx *cx = &s->ctxs[i];
        cx->step = NULL;
        if (!s->js[i])
            continue;
        brt_job_state *js = s->js[i];
        *cx = (brt_layer_ctx){c,
                              &s->kv,
                              l,
                              st,
                              js,
                              &js->layers[l - s->o.layer_begin],
                              brt_mat_row(s->q, o),
                              brt_mat_row(s->k, o),
                              brt_mat_row(s->kpre, o),
                              brt_mat_row(s->v, o),
                              s->spans + used,
                              (int32_t)(s->spans_cap - used),
                              0,
                              s->vis + o};
        brt_err e;
        if (s->pol->prepare(cx, &e) != BRT_OK) {
            fail_step(s, st, &s->js[i], "%s", e.msg);
            cx->step = NULL;
            continue;
        }
        int32_t nk = 0;
        for (int32_t j = 0; j < cx->n_spans; j++)
            nk += cx->spans[j].n;
        used += cx->n_spans;
        s->segs[nseg++] = (brt_attn_seg){brt_mat_row(s->q, o), brt_mat_row(s->att, o), st->n_rows, cx->spans,
                                         cx->n_spans, nk, cx->vis};
    }
    brt_attn_args args = {s->segs, nseg, c->n_heads, c->n_kv_heads, c->head_dim, sqrtf((float)c->head_dim)};
    BRT_TRY(be->attention(be, &args, err));
    for (int32_t g = 0; g < nseg; g++)
        for (int32_t r = 0; r < s->segs[g].rows; r++)
            s->work.attn_pairs += visible_keys(&s->segs[g].vis[r], s->segs[g].n_keys);
    off = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        brt_layer_ctx *cx = &s->ctxs[i];
        if (cx->step && s->js[i]) {
            brt_err e;
            if (s->pol->commit(cx, &e) != BRT_OK)
                fail_step(s, st, &s->js[i], "%s", e.msg);
        }
        if (st->flags & BRT_STEP_FAILED)
            BRT_TRY(be->zero_rows(be, brt_mat_row(s->att, off), st->n_rows, s->qd, err));
        off += st->n_rows;
    }
    return BRT_OK;
}

brt_status brt_stage_forward(brt_stage *s, brt_microbatch *mb, brt_step_result *res, brt_err *err)
{
    double t0 = brt_now();
    brt_backend *be = s->be;
    const brt_model_config *c = &s->cfg;
    const int32_t rows = mb->n_rows, dim = s->dim;
    if (rows > s->o.max_rows)
        return brt_errf(err, BRT_ERR_INTERNAL, "micro-batch of %d rows exceeds the stage's %d", rows, s->o.max_rows);
    for (int32_t i = 0; i < mb->n_release; i++)
        brt_stage_release(s, mb->release[i]);
    int any_beacon = 0;
    BRT_TRY(find_jobs(s, mb, &any_beacon, err));
    if (s->o.first)
        BRT_TRY(embed(s, mb, s->js, err));

    const brt_weight none = {0};
    for (int32_t l = s->o.layer_begin; l < s->o.layer_end; l++) {
        const brt_layer_weights *L = &s->w.layers[l - s->o.layer_begin];
        BRT_TRY(be->rmsnorm(be, s->hidden, &L->attn_norm, c->rms_eps, s->xn, rows, dim, err));
        BRT_TRY(proj(s, rows, any_beacon, s->xn, &L->wq, &L->bq, &L->beacon_wq, &L->beacon_bq, s->q, err));
        BRT_TRY(proj(s, rows, any_beacon, s->xn, &L->wk, &L->bk, &L->beacon_wk, &L->beacon_bk, s->k, err));
        BRT_TRY(proj(s, rows, any_beacon, s->xn, &L->wv, &L->bv, &L->beacon_wv, &L->beacon_bv, s->v, err));
        BRT_TRY(attention(s, mb, l, err));
        BRT_TRY(proj(s, rows, any_beacon, s->att, &L->wo, &L->bo, &L->beacon_wo, &L->beacon_bo, s->tmp, err));
        BRT_TRY(be->add(be, s->hidden, s->tmp, rows, dim, err));
        BRT_TRY(be->rmsnorm(be, s->hidden, &L->ffn_norm, c->rms_eps, s->xn, rows, dim, err));
        BRT_TRY(be->gemm(be, s->xn, rows, &L->w_gate, NULL, s->gate, err));
        BRT_TRY(proj(s, rows, any_beacon, s->xn, &L->w_up, &none, &L->beacon_up, &none, s->up, err));
        BRT_TRY(be->silu_mul(be, s->gate, s->up, rows, s->inter, err));
        BRT_TRY(proj(s, rows, any_beacon, s->gate, &L->w_down, &none, &L->beacon_down, &none, s->tmp, err));
        BRT_TRY(be->add(be, s->hidden, s->tmp, rows, dim, err));
        s->work.layer_rows += rows;
    }
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        if (!s->js[i])
            continue;
        brt_err e;
        if (s->pol->end_step && s->pol->end_step(s->js[i], st, &e) != BRT_OK)
            fail_step(s, st, &s->js[i], "%s", e.msg);
        else
            s->js[i]->next_index = st->index + 1;
    }
    if (s->o.last)
        BRT_TRY(results(s, mb, res, err));
    BRT_TRY(be->synchronize(be, err)); /* the stage's busy time is the device's */
    s->busy += brt_now() - t0;
    s->n_mb++;
    return BRT_OK;
}

void brt_step_result_free(brt_step_result *r)
{
    free(r->sampled_top);
    free(r->target_logprob);
    free(r->scored_top);
    free(r->full);
    r->sampled_top = NULL;
    r->target_logprob = NULL;
    r->scored_top = NULL;
    r->full = NULL;
}
