/* The stage forward pass, llama2.c-style: every buffer allocated once (sized by the largest
 * micro-batch), one plain loop over layers, the policy consulted only around attention. */
#include "engine/stage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/u64map.h"
#include "engine/kvpool.h"
#include "engine/policy.h"
#include "engine/sampler.h"

#define LOGIT_ROWS 64  /* rows of logits computed at a time on the last stage */
#define ROPE_ROWS 256  /* rows rotated at a time when state is re-rotated */

struct brt_stage {
    brt_stage_opts o;
    brt_model_config cfg;
    const brt_policy_ops *pol;
    brt_weights w;
    brt_kvpool *pool;
    brt_u64map jobs;
    int32_t dim, qd, kvd, inter, n_local, vocab;
    float *inv_freq;       /* [head_dim/2] */
    brt_rope_ctx rope;
    /* per-row scratch, [max_rows, width] */
    float *xn, *q, *k, *kpre, *v, *att, *tmp, *gate, *up, *gin, *gout;
    brt_attn_vis *vis;     /* [max_rows] */
    uint8_t *row_kind;     /* [max_rows] */
    int32_t *row_ids;      /* [max_rows] */
    brt_kv_span *spans;
    int64_t spans_cap;
    brt_attn_seg *segs;
    brt_layer_ctx *ctxs;
    brt_job_state **js;
    int32_t steps_cap;
    float *logits;         /* [LOGIT_ROWS, vocab] */
    float *sample_work;    /* [2 * vocab] */
    double busy;
    int64_t n_mb;
};

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
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "model dimensions beyond the CPU kernels' limits");
    }
    st = brt_kvpool_create(o->kv_budget, o->block_bytes, &s->pool, err);
    if (st != BRT_OK) {
        brt_stage_destroy(s);
        return st;
    }
    const size_t R = (size_t)o->max_rows;
    const size_t wide = (size_t)(s->inter > s->dim ? s->inter : s->dim) > (size_t)s->qd
                            ? (size_t)(s->inter > s->dim ? s->inter : s->dim)
                            : (size_t)s->qd;
    int fail = 0;
    s->xn = xcalloc(R * (size_t)s->dim, 4, &fail);
    s->q = xcalloc(R * (size_t)s->qd, 4, &fail);
    s->k = xcalloc(R * (size_t)s->kvd, 4, &fail);
    s->kpre = xcalloc(R * (size_t)s->kvd, 4, &fail);
    s->v = xcalloc(R * (size_t)s->kvd, 4, &fail);
    s->att = xcalloc(R * (size_t)s->qd, 4, &fail);
    s->tmp = xcalloc(R * (size_t)s->dim, 4, &fail);
    s->gate = xcalloc(R * (size_t)s->inter, 4, &fail);
    s->up = xcalloc(R * (size_t)s->inter, 4, &fail);
    s->gin = xcalloc(R * wide, 4, &fail);
    s->gout = xcalloc(R * wide, 4, &fail);
    s->vis = xcalloc(R, sizeof *s->vis, &fail);
    s->row_kind = xcalloc(R, 1, &fail);
    s->row_ids = xcalloc(R, sizeof *s->row_ids, &fail);
    s->inv_freq = xcalloc((size_t)c->head_dim / 2, 4, &fail);
    s->rope.tmp = xcalloc((size_t)ROPE_ROWS * (size_t)s->kvd, 4, &fail);
    s->rope.tmp_pos = xcalloc(ROPE_ROWS, 4, &fail);
    if (o->last) {
        s->logits = xcalloc((size_t)LOGIT_ROWS * (size_t)s->vocab, 4, &fail);
        s->sample_work = xcalloc(2 * (size_t)s->vocab, 4, &fail);
    }
    if (fail) {
        brt_stage_destroy(s);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for stage buffers (%d rows per micro-batch)", o->max_rows);
    }
    /* HF: inv_freq = 1 / theta^(arange(0, d, 2) / d), in float32 */
    for (int32_t i = 0; i < c->head_dim / 2; i++)
        s->inv_freq[i] = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)c->head_dim);
    s->rope = (brt_rope_ctx){o->be, s->inv_freq, c->rope_scaling == BRT_ROPE_LINEAR ? (float)c->rope_factor : 1.0f,
                             c->n_kv_heads, c->head_dim, s->rope.tmp, s->rope.tmp_pos, ROPE_ROWS};
    *out = s;
    return BRT_OK;
}

static void job_free(brt_stage *s, brt_job_state *js)
{
    if (!js)
        return;
    for (int32_t l = 0; l < js->n_layers; l++)
        brt_layer_state_clear(&js->layers[l], s->pool);
    free(js->layers);
    free(js->raw_kind);
    free(js);
}

void brt_stage_release(brt_stage *s, uint64_t job) { job_free(s, brt_u64map_del(&s->jobs, job)); }

void brt_stage_destroy(brt_stage *s)
{
    if (!s)
        return;
    size_t it = 0;
    void *v;
    while (brt_u64map_next(&s->jobs, &it, NULL, &v))
        job_free(s, v);
    brt_u64map_free(&s->jobs);
    brt_kvpool_destroy(s->pool);
    brt_weights_free(&s->w);
    void *bufs[] = {s->xn, s->q, s->k, s->kpre, s->v, s->att, s->tmp, s->gate, s->up, s->gin, s->gout, s->vis,
                    s->row_kind, s->row_ids, s->inv_freq, s->rope.tmp, s->rope.tmp_pos, s->logits,
                    s->sample_work, s->spans, s->segs, s->ctxs, s->js};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(s);
}

const brt_weights *brt_stage_weights(const brt_stage *s) { return &s->w; }
int64_t brt_stage_kv_used(const brt_stage *s) { return brt_kvpool_used_bytes(s->pool); }
int64_t brt_stage_kv_peak(const brt_stage *s) { return brt_kvpool_peak_bytes(s->pool); }
int32_t brt_stage_jobs(const brt_stage *s) { return (int32_t)s->jobs.n; }
void brt_stage_stats(const brt_stage *s, double *busy, int64_t *n)
{
    *busy = s->busy;
    *n = s->n_mb;
}

static brt_job_state *job_new(brt_stage *s, uint64_t id)
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

/* out = x W^T (+ b); beacon rows use the beacon projection when it is a different tensor */
static void proj(brt_stage *s, int32_t rows, int has_beacon, const float *x, int64_t ldx, const brt_weight *w,
                 const brt_weight *b, const brt_weight *bw, const brt_weight *bb, float *out, int64_t ldo)
{
    brt_backend *be = s->o.be;
    if (!has_beacon || (bw->data == w->data && bb->data == b->data)) {
        be->gemm(be, x, ldx, rows, w, b, out, ldo);
        return;
    }
    const int64_t in = w->cols, on = w->rows;
    for (int kind = 0; kind < 2; kind++) {
        int32_t n = 0;
        for (int32_t r = 0; r < rows; r++)
            if (s->row_kind[r] == kind)
                memcpy(s->gin + (int64_t)n++ * in, x + (int64_t)r * ldx, (size_t)in * sizeof(float));
        if (!n)
            continue;
        be->gemm(be, s->gin, in, n, kind ? bw : w, kind ? bb : b, s->gout, on);
        n = 0;
        for (int32_t r = 0; r < rows; r++)
            if (s->row_kind[r] == kind)
                memcpy(out + (int64_t)r * ldo, s->gout + (int64_t)n++ * on, (size_t)on * sizeof(float));
    }
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

static void embed(brt_stage *s, brt_microbatch *mb, brt_job_state **js, float *hidden)
{
    brt_backend *be = s->o.be;
    int32_t off = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        for (int32_t r = 0; r < st->n_rows && !(st->flags & BRT_STEP_FAILED); r++)
            if (st->kind[r] == BRT_ROW_RAW && (st->tokens[r] < 0 || st->tokens[r] >= s->vocab)) {
                char m[96];
                snprintf(m, sizeof m, "token id %d is out of range [0, %d)", st->tokens[r], s->vocab);
                fail_step(s, st, &js[i], "%s", m);
            }
        int failed = (st->flags & BRT_STEP_FAILED) != 0;
        for (int32_t r = 0; r < st->n_rows; r++) {
            float *row = hidden + (int64_t)(off + r) * s->dim;
            if (failed)
                memset(row, 0, (size_t)s->dim * sizeof(float));
            else if (st->kind[r] == BRT_ROW_BEACON)
                be->embed(be, &s->w.beacon_embed, &(int32_t){0}, 1, row, s->dim);
            else
                be->embed(be, &s->w.embed, &st->tokens[r], 1, row, s->dim);
        }
        off += st->n_rows;
    }
}

/* The last stage's outputs. Every row that needs logits (the last raw row of a step that samples,
 * every raw row of a step that scores or returns logits), whatever step it belongs to, goes through
 * the final norm and lm_head LOGIT_ROWS at a time: a micro-batch of decode steps reads lm_head
 * once, not once per job. */
typedef struct logit_row {
    int32_t step, row, raw_idx; /* row within the step, index among its raw rows */
    int32_t mb_row;             /* row within the micro-batch */
} logit_row;

static void prepare_result(brt_stage *s, const brt_step *st, brt_step_result *r)
{
    const int need_all = (st->logits & (BRT_LOGITS_SCORE | BRT_LOGITS_FULL)) != 0;
    const int32_t k = st->top_k < 0 ? 0 : st->top_k > 20 ? 20 : st->top_k;
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

static void row_result(brt_stage *s, const brt_step *st, brt_step_result *r, const logit_row *lr, int is_last_raw,
                       const float *lg)
{
    const int32_t k = r->top_k;
    if (r->full)
        memcpy(r->full + (int64_t)lr->raw_idx * s->vocab, lg, (size_t)s->vocab * sizeof(float));
    double lse = 0;
    if (r->n_scored || (st->logits & BRT_LOGITS_SAMPLE))
        lse = brt_logsumexp(lg, s->vocab);
    if (r->n_scored) {
        int32_t t = st->target[lr->row];
        r->target_logprob[lr->raw_idx] = t >= 0 && t < s->vocab ? (float)(lg[t] - lse) : NAN;
        if (k)
            brt_top_logprobs(lg, s->vocab, lse, k, r->scored_top + (int64_t)lr->raw_idx * k);
    }
    if ((st->logits & BRT_LOGITS_SAMPLE) && is_last_raw) {
        r->sampled = brt_sample(lg, s->vocab, st->temperature, st->top_p, st->seed, st->draw, s->sample_work);
        r->sampled_logprob = (float)(lg[r->sampled] - lse);
        if (k)
            brt_top_logprobs(lg, s->vocab, lse, k, r->sampled_top);
    }
}

/* final norm + lm_head over the gathered rows, then each row's outputs */
static void flush_logits(brt_stage *s, brt_microbatch *mb, brt_step_result *res, const float *hidden,
                         const logit_row *batch, int32_t n, const int32_t *last_raw)
{
    brt_backend *be = s->o.be;
    for (int32_t j = 0; j < n; j++)
        memcpy(s->xn + (int64_t)j * s->dim, hidden + (int64_t)batch[j].mb_row * s->dim, (size_t)s->dim * sizeof(float));
    be->rmsnorm(be, s->xn, s->dim, s->w.final_norm, s->cfg.rms_eps, s->xn, s->dim, n, s->dim);
    be->logits(be, s->xn, s->dim, n, &s->w.lm_head, s->logits, s->vocab);
    for (int32_t j = 0; j < n; j++)
        row_result(s, &mb->steps[batch[j].step], &res[batch[j].step], &batch[j], batch[j].row == last_raw[batch[j].step],
                   s->logits + (int64_t)j * s->vocab);
}

static void results(brt_stage *s, brt_microbatch *mb, const float *hidden, brt_step_result *res)
{
    logit_row batch[LOGIT_ROWS];
    int32_t n = 0, off = 0;
    int32_t *last_raw = malloc((size_t)(mb->n_steps ? mb->n_steps : 1) * sizeof *last_raw);
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
    for (int32_t i = 0; i < mb->n_steps; i++) {
        const brt_step *st = &mb->steps[i];
        if (st->logits && !(st->flags & BRT_STEP_FAILED) && !res[i].failed) {
            const int need_all = (st->logits & (BRT_LOGITS_SCORE | BRT_LOGITS_FULL)) != 0;
            for (int32_t q = 0, ri = 0; q <= last_raw[i]; q++) {
                if (st->kind[q] != BRT_ROW_RAW)
                    continue;
                if (need_all || q == last_raw[i])
                    batch[n++] = (logit_row){i, q, ri, off + q};
                ri++;
                if (n == LOGIT_ROWS) {
                    flush_logits(s, mb, res, hidden, batch, n, last_raw);
                    n = 0;
                }
            }
        }
        off += st->n_rows;
    }
    if (n)
        flush_logits(s, mb, res, hidden, batch, n, last_raw);
    free(last_raw);
}

brt_status brt_stage_forward(brt_stage *s, brt_microbatch *mb, float *hidden, brt_step_result *res, brt_err *err)
{
    double t0 = brt_now();
    brt_backend *be = s->o.be;
    const brt_model_config *c = &s->cfg;
    const int32_t rows = mb->n_rows, dim = s->dim, qd = s->qd, kvd = s->kvd;
    if (rows > s->o.max_rows)
        return brt_errf(err, BRT_ERR_INTERNAL, "micro-batch of %d rows exceeds the stage's %d", rows, s->o.max_rows);
    for (int32_t i = 0; i < mb->n_release; i++)
        brt_stage_release(s, mb->release[i]);
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
    /* find each step's job state; rows' kinds */
    int32_t off = 0, any_beacon = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        brt_step *st = &mb->steps[i];
        brt_job_state *js = NULL;
        if (st->flags & BRT_STEP_FAILED)
            brt_stage_release(s, st->job);
        else if (st->index == 0) {
            brt_stage_release(s, st->job); /* a reused id starts afresh */
            js = job_new(s, st->job);
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
            any_beacon |= s->row_kind[off + r] == BRT_ROW_BEACON;
        }
        off += st->n_rows;
    }
    if (s->o.first)
        embed(s, mb, s->js, hidden);

    for (int32_t l = s->o.layer_begin; l < s->o.layer_end; l++) {
        const brt_layer_weights *L = &s->w.layers[l - s->o.layer_begin];
        be->rmsnorm(be, hidden, dim, L->attn_norm, c->rms_eps, s->xn, dim, rows, dim);
        proj(s, rows, any_beacon, s->xn, dim, &L->wq, &L->bq, &L->beacon_wq, &L->beacon_bq, s->q, qd);
        proj(s, rows, any_beacon, s->xn, dim, &L->wk, &L->bk, &L->beacon_wk, &L->beacon_bk, s->k, kvd);
        proj(s, rows, any_beacon, s->xn, dim, &L->wv, &L->bv, &L->beacon_wv, &L->beacon_bv, s->v, kvd);
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
        int32_t nseg = 0;
        int64_t used = 0;
        off = 0;
        for (int32_t i = 0; i < mb->n_steps; i++) {
            brt_step *st = &mb->steps[i];
            const int32_t o = off;
            off += st->n_rows;
            brt_layer_ctx *cx = &s->ctxs[i];
            cx->step = NULL;
            if (!s->js[i])
                continue;
            brt_job_state *js = s->js[i];
            *cx = (brt_layer_ctx){c, s->pool, &s->rope, l, st, js, &js->layers[l - s->o.layer_begin],
                                  s->q + (int64_t)o * qd, s->k + (int64_t)o * kvd, s->kpre + (int64_t)o * kvd,
                                  s->v + (int64_t)o * kvd, qd, kvd, s->spans + used, (int32_t)(s->spans_cap - used),
                                  0, s->vis + o};
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
            s->segs[nseg++] = (brt_attn_seg){s->q + (int64_t)o * qd, s->att + (int64_t)o * qd, st->n_rows, qd, qd,
                                             cx->spans, cx->n_spans, nk, cx->vis};
        }
        brt_attn_args args = {s->segs, nseg, c->n_heads, c->n_kv_heads, c->head_dim, sqrtf((float)c->head_dim)};
        be->attention(be, &args);
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
                memset(s->att + (int64_t)off * qd, 0, (size_t)st->n_rows * qd * sizeof(float));
            off += st->n_rows;
        }
        proj(s, rows, any_beacon, s->att, qd, &L->wo, &L->bo, &L->beacon_wo, &L->beacon_bo, s->tmp, dim);
        be->add(be, hidden, dim, s->tmp, dim, rows, dim);
        be->rmsnorm(be, hidden, dim, L->ffn_norm, c->rms_eps, s->xn, dim, rows, dim);
        be->gemm(be, s->xn, dim, rows, &L->w_gate, NULL, s->gate, s->inter);
        const brt_weight none = {0};
        proj(s, rows, any_beacon, s->xn, dim, &L->w_up, &none, &L->beacon_up, &none, s->up, s->inter);
        be->silu_mul(be, s->gate, s->inter, s->up, s->inter, rows, s->inter);
        proj(s, rows, any_beacon, s->gate, s->inter, &L->w_down, &none, &L->beacon_down, &none, s->tmp, dim);
        be->add(be, hidden, dim, s->tmp, dim, rows, dim);
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
        results(s, mb, hidden, res);
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
