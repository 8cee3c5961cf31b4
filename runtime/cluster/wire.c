#include "cluster/wire.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brt.pb-c.h"
#include "engine/policy.h"

/* Stage figures to and from the wire (the caller frees *out's array). */
static Brt__StageStat **stats_out(const brt_stage_stat *st, int32_t n, Brt__StageStat *store)
{
    Brt__StageStat **p = calloc((size_t)(n ? n : 1), sizeof *p);
    for (int32_t i = 0; p && i < n; i++) {
        brt__stage_stat__init(&store[i]);
        store[i].rank = st[i].rank;
        store[i].pipeline = st[i].pipeline;
        store[i].stage = st[i].stage;
        store[i].busy_seconds = st[i].busy_s;
        store[i].wall_seconds = st[i].wall_s;
        store[i].kv_used = st[i].kv_used;
        store[i].kv_budget = st[i].kv_budget;
        p[i] = &store[i];
    }
    return p;
}

static int32_t stats_in(Brt__StageStat *const *w, size_t n, brt_stage_stat *out)
{
    int32_t k = 0;
    for (size_t i = 0; i < n && k < BRT_MB_STATS; i++)
        out[k++] = (brt_stage_stat){w[i]->rank, w[i]->pipeline, w[i]->stage, w[i]->busy_seconds, w[i]->wall_seconds,
                                    w[i]->kv_used, w[i]->kv_budget};
    return k;
}

/* State-cache ops and reports to and from the wire. */
static Brt__CacheOp **ops_out(const brt_cache_op *op, int32_t n, Brt__CacheOp *store)
{
    Brt__CacheOp **p = calloc((size_t)(n ? n : 1), sizeof *p);
    for (int32_t i = 0; p && i < n; i++) {
        brt__cache_op__init(&store[i]);
        store[i].kind = op[i].kind;
        store[i].job = op[i].job;
        store[i].tier = op[i].tier;
        store[i].key.data = (uint8_t *)op[i].key;
        store[i].key.len = sizeof op[i].key;
        p[i] = &store[i];
    }
    return p;
}

static Brt__CacheReport **reports_out(const brt_cache_report *r, int32_t n, Brt__CacheReport *store)
{
    Brt__CacheReport **p = calloc((size_t)(n ? n : 1), sizeof *p);
    for (int32_t i = 0; p && i < n; i++) {
        brt__cache_report__init(&store[i]);
        store[i].kind = r[i].kind;
        store[i].tier = r[i].tier;
        store[i].key.data = (uint8_t *)r[i].key;
        store[i].key.len = sizeof r[i].key;
        store[i].job = r[i].job;
        store[i].stage = r[i].stage;
        store[i].ok = r[i].ok != 0;
        store[i].bytes = r[i].bytes;
        store[i].error = (char *)r[i].error;
        p[i] = &store[i];
    }
    return p;
}

static brt_status reports_in(Brt__CacheReport *const *w, size_t n, int32_t src, brt_cache_report **out, int32_t *n_out,
                             brt_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (!n)
        return BRT_OK;
    brt_cache_report *r = calloc(n, sizeof *r);
    if (!r)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (w[i]->key.len != sizeof r[i].key || w[i]->kind < BRT_CACHE_SAVE || w[i]->kind > BRT_CACHE_KIND_LAST) {
            free(r);
            return brt_errf(err, BRT_ERR_COMM, "rank %d sent a malformed state-cache report", src);
        }
        r[i].kind = w[i]->kind;
        r[i].tier = w[i]->tier;
        memcpy(r[i].key, w[i]->key.data, sizeof r[i].key);
        r[i].job = w[i]->job;
        r[i].stage = w[i]->stage;
        r[i].ok = w[i]->ok;
        r[i].bytes = w[i]->bytes;
        snprintf(r[i].error, sizeof r[i].error, "%s", w[i]->error ? w[i]->error : "");
    }
    *out = r;
    *n_out = (int32_t)n;
    return BRT_OK;
}

int brt_mb_add_report(brt_microbatch *mb, const brt_cache_report *r)
{
    if (mb->n_reports == mb->cap_reports) {
        int32_t cap = mb->cap_reports ? mb->cap_reports * 2 : 8;
        brt_cache_report *p = realloc(mb->reports, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        mb->reports = p;
        mb->cap_reports = cap;
    }
    mb->reports[mb->n_reports++] = *r;
    return 0;
}

brt_status brt_wire_pack_mb(const brt_microbatch *mb, int32_t hidden_dim, void **buf, size_t *len, brt_err *err)
{
    Brt__StageStat store[BRT_MB_STATS];
    Brt__MicroBatch m = BRT__MICRO_BATCH__INIT;
    m.version = BRT_WIRE_VERSION;
    m.id = mb->id;
    m.pipeline = mb->pipeline;
    m.n_rows = mb->n_rows;
    m.hidden_dim = hidden_dim;
    m.device_payload = mb->device_payload != 0;
    m.n_release = (size_t)mb->n_release;
    m.release = mb->release;
    Brt__Step *steps = calloc((size_t)(mb->n_steps ? mb->n_steps : 1), sizeof *steps);
    Brt__Step **sp = calloc((size_t)(mb->n_steps ? mb->n_steps : 1), sizeof *sp);
    if (!steps || !sp) {
        free(steps);
        free(sp);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < mb->n_steps; i++) {
        const brt_step *s = &mb->steps[i];
        Brt__Step *w = &steps[i];
        brt__step__init(w);
        w->job = s->job;
        w->index = s->index;
        w->n_rows = s->n_rows;
        w->n_raw = s->n_raw;
        w->ratio = s->ratio;
        w->k = s->k;
        w->keep = s->keep;
        w->span = s->span;
        w->sink_take = s->sink_take;
        w->flags = s->flags;
        w->expect_sink = s->expect_sink;
        w->expect_mem = s->expect_mem;
        w->expect_raw = s->expect_raw;
        w->logits = s->logits;
        w->top_k = s->top_k;
        w->temperature = s->temperature;
        w->top_p = s->top_p;
        w->seed = s->seed;
        w->draw = s->draw;
        w->n_tokens = w->n_pos = w->n_target = (size_t)s->n_rows;
        w->tokens = s->tokens;
        w->pos = s->pos;
        w->target = s->target;
        w->kind.len = (size_t)s->n_rows;
        w->kind.data = s->kind;
        w->error = (char *)s->error;
        sp[i] = w;
    }
    m.n_steps = (size_t)mb->n_steps;
    m.steps = sp;
    m.stats = stats_out(mb->stats, mb->n_stats, store);
    m.n_stats = m.stats ? (size_t)mb->n_stats : 0;
    Brt__CacheOp *op_store = calloc((size_t)(mb->n_cache_ops ? mb->n_cache_ops : 1), sizeof *op_store);
    Brt__CacheReport *rep_store = calloc((size_t)(mb->n_reports ? mb->n_reports : 1), sizeof *rep_store);
    m.cache_ops = op_store ? ops_out(mb->cache_ops, mb->n_cache_ops, op_store) : NULL;
    m.n_cache_ops = m.cache_ops ? (size_t)mb->n_cache_ops : 0;
    m.reports = rep_store ? reports_out(mb->reports, mb->n_reports, rep_store) : NULL;
    m.n_reports = m.reports ? (size_t)mb->n_reports : 0;
    *buf = NULL;
    if (m.stats && m.cache_ops && m.reports) {
        *len = brt__micro_batch__get_packed_size(&m);
        *buf = malloc(*len ? *len : 1);
        if (*buf)
            brt__micro_batch__pack(&m, *buf);
    }
    free(m.stats);
    free(m.cache_ops);
    free(m.reports);
    free(op_store);
    free(rep_store);
    free(steps);
    free(sp);
    return *buf ? BRT_OK : brt_errf(err, BRT_ERR_NOMEM, "out of memory");
}

brt_status brt_wire_send_pb(brt_transport *tr, int32_t dst, int32_t tag, const ProtobufCMessage *m, void *payload,
                            size_t payload_len, brt_err *err)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    void *buf = malloc(len ? len : 1);
    if (!buf) {
        free(payload);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    protobuf_c_message_pack(m, buf);
    return tr->send(tr, dst, tag, buf, len, payload, payload_len, err);
}

void brt_wire_free_mb(brt_microbatch *mb)
{
    if (!mb)
        return;
    for (int32_t i = 0; i < mb->n_steps; i++)
        brt_step_free_arrays(&mb->steps[i]);
    free(mb->steps);
    free(mb->release);
    free(mb->cache_ops);
    free(mb->reports);
    free(mb);
}

brt_status brt_wire_unpack_mb(const void *buf, size_t len, int32_t src, brt_microbatch **out, int32_t *hidden_dim,
                              brt_err *err)
{
    *out = NULL;
    Brt__MicroBatch *m = brt__micro_batch__unpack(NULL, len, buf);
    if (!m)
        return brt_errf(err, BRT_ERR_COMM, "rank %d sent a micro-batch header that does not parse (%zu bytes)", src, len);
    brt_status st = BRT_OK;
    brt_microbatch *mb = calloc(1, sizeof *mb);
    if (!mb) {
        st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (m->version != BRT_WIRE_VERSION) {
        st = brt_errf(err, BRT_ERR_COMM, "rank %d speaks wire version %u, this rank %d (mixed builds in one job?)", src,
                      m->version, BRT_WIRE_VERSION);
        goto done;
    }
    mb->id = m->id;
    mb->pipeline = m->pipeline;
    mb->n_rows = m->n_rows;
    *hidden_dim = m->hidden_dim;
    mb->device_payload = m->device_payload;
    mb->n_stats = stats_in(m->stats, m->n_stats, mb->stats);
    mb->steps = calloc(m->n_steps ? m->n_steps : 1, sizeof *mb->steps);
    mb->release = malloc((m->n_release ? m->n_release : 1) * sizeof *mb->release);
    if (!mb->steps || !mb->release) {
        st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        goto done;
    }
    mb->n_release = (int32_t)m->n_release;
    if (m->n_release)
        memcpy(mb->release, m->release, m->n_release * sizeof *mb->release);
    if (m->n_cache_ops) {
        if (!(mb->cache_ops = calloc(m->n_cache_ops, sizeof *mb->cache_ops))) {
            st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < m->n_cache_ops; i++) {
            const Brt__CacheOp *w = m->cache_ops[i];
            if (w->key.len != sizeof mb->cache_ops[i].key || w->kind < BRT_CACHE_SAVE || w->kind > BRT_CACHE_KIND_LAST) {
                st = brt_errf(err, BRT_ERR_COMM, "rank %d sent a malformed state-cache op", src);
                goto done;
            }
            mb->cache_ops[i] = (brt_cache_op){w->kind, w->tier, w->job, {0}};
            memcpy(mb->cache_ops[i].key, w->key.data, sizeof mb->cache_ops[i].key);
        }
        mb->n_cache_ops = (int32_t)m->n_cache_ops;
    }
    if ((st = reports_in(m->reports, m->n_reports, src, &mb->reports, &mb->n_reports, err)) != BRT_OK)
        goto done;
    mb->cap_reports = mb->n_reports;
    int32_t rows = 0;
    for (size_t i = 0; i < m->n_steps; i++) {
        const Brt__Step *w = m->steps[i];
        brt_step *s = &mb->steps[i];
        if (w->n_rows < 0 || w->n_tokens != (size_t)w->n_rows || w->n_pos != (size_t)w->n_rows ||
            w->n_target != (size_t)w->n_rows || w->kind.len != (size_t)w->n_rows) {
            st = brt_errf(err, BRT_ERR_COMM, "rank %d sent step %zu of micro-batch %llu with inconsistent row arrays", src,
                          i, (unsigned long long)m->id);
            goto done;
        }
        if (brt_step_alloc_rows(s, w->n_rows, err) != BRT_OK) {
            st = BRT_ERR_NOMEM;
            goto done;
        }
        mb->n_steps = (int32_t)i + 1;
        s->job = w->job;
        s->index = w->index;
        s->n_raw = w->n_raw;
        s->ratio = w->ratio;
        s->k = w->k;
        s->keep = w->keep;
        s->span = w->span;
        s->sink_take = w->sink_take;
        s->flags = w->flags;
        s->expect_sink = w->expect_sink;
        s->expect_mem = w->expect_mem;
        s->expect_raw = w->expect_raw;
        s->logits = w->logits;
        s->top_k = w->top_k;
        s->temperature = w->temperature;
        s->top_p = w->top_p;
        s->seed = w->seed;
        s->draw = w->draw;
        if (w->n_rows > 0) { /* a step of no rows has NULL arrays, which memcpy may not be given */
            memcpy(s->tokens, w->tokens, (size_t)w->n_rows * sizeof *s->tokens);
            memcpy(s->pos, w->pos, (size_t)w->n_rows * sizeof *s->pos);
            memcpy(s->target, w->target, (size_t)w->n_rows * sizeof *s->target);
            memcpy(s->kind, w->kind.data, (size_t)w->n_rows);
        }
        snprintf(s->error, sizeof s->error, "%s", w->error ? w->error : "");
        rows += w->n_rows;
        /* the stage indexes buffers with these: check them like any input */
        int32_t raw = 0;
        for (int32_t r = 0; r < w->n_rows; r++) {
            if (s->kind[r] > BRT_ROW_BEACON) {
                st = brt_errf(err, BRT_ERR_COMM, "rank %d sent a row of unknown kind %u", src, s->kind[r]);
                goto done;
            }
            raw += s->kind[r] == BRT_ROW_RAW;
        }
        if (s->n_raw != raw || s->k < -1 || s->k > w->n_rows - raw || s->keep < 0 || s->sink_take < 0 ||
            s->sink_take > w->n_rows || s->top_k < 0 || s->top_k > 20) {
            st = brt_errf(err, BRT_ERR_COMM, "rank %d sent job %llu step %u with inconsistent counts", src,
                          (unsigned long long)s->job, s->index);
            goto done;
        }
        for (size_t p = 0; p < i; p++)
            if (mb->steps[p].job == s->job) {
                st = brt_errf(err, BRT_ERR_COMM, "rank %d sent two steps of job %llu in one micro-batch", src,
                              (unsigned long long)s->job);
                goto done;
            }
    }
    if (rows != mb->n_rows) {
        st = brt_errf(err, BRT_ERR_COMM, "rank %d sent micro-batch %llu of %d rows whose steps hold %d", src,
                      (unsigned long long)m->id, mb->n_rows, rows);
        goto done;
    }
done:
    brt__micro_batch__free_unpacked(m, NULL);
    if (st != BRT_OK) {
        brt_wire_free_mb(mb);
        return st;
    }
    *out = mb;
    return BRT_OK;
}

static void split_top(const brt_tok_lp *t, size_t n, int32_t **tok, float **lp)
{
    *tok = malloc((n ? n : 1) * sizeof **tok);
    *lp = malloc((n ? n : 1) * sizeof **lp);
    for (size_t i = 0; *tok && *lp && i < n; i++) {
        (*tok)[i] = t[i].token;
        (*lp)[i] = t[i].logprob;
    }
}

brt_status brt_wire_pack_results(uint64_t mb_id, int32_t rank, const brt_step_result *res, int32_t n,
                                 const brt_stage_stat *stats, int32_t n_stats, const brt_cache_report *reports,
                                 int32_t n_reports, void **hdr, size_t *hdr_len, void **payload, size_t *payload_len,
                                 brt_err *err)
{
    Brt__Results m = BRT__RESULTS__INIT;
    m.version = BRT_WIRE_VERSION;
    m.mb_id = mb_id;
    m.rank = rank;
    Brt__StageStat store[BRT_MB_STATS];
    if (n_stats > BRT_MB_STATS)
        n_stats = BRT_MB_STATS;
    m.stats = stats_out(stats, n_stats, store);
    m.n_stats = m.stats ? (size_t)n_stats : 0;
    Brt__StepResult *rs = calloc((size_t)(n ? n : 1), sizeof *rs);
    Brt__StepResult **rp = calloc((size_t)(n ? n : 1), sizeof *rp);
    void **tmp = calloc((size_t)(n ? n : 1) * 4, sizeof *tmp);
    size_t full = 0;
    for (int32_t i = 0; i < n; i++)
        full += (size_t)res[i].n_full * (size_t)res[i].vocab * sizeof(float);
    *payload = full ? malloc(full) : NULL;
    *payload_len = full;
    if (!rs || !rp || !tmp || (full && !*payload)) {
        free(rs);
        free(rp);
        free(tmp);
        free(*payload);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    size_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        const brt_step_result *r = &res[i];
        Brt__StepResult *w = &rs[i];
        brt__step_result__init(w);
        w->job = r->job;
        w->index = r->index;
        w->failed = r->failed != 0;
        w->error = (char *)r->error;
        w->sampled = r->sampled;
        w->sampled_logprob = r->sampled_logprob;
        w->top_k = r->top_k;
        if (r->sampled_top) {
            split_top(r->sampled_top, (size_t)r->top_k, &w->sampled_top_tokens, &w->sampled_top_logprobs);
            w->n_sampled_top_tokens = w->n_sampled_top_logprobs = (size_t)r->top_k;
            tmp[4 * i] = w->sampled_top_tokens;
            tmp[4 * i + 1] = w->sampled_top_logprobs;
        }
        w->n_scored = r->n_scored;
        if (r->n_scored) {
            w->n_target_logprob = (size_t)r->n_scored;
            w->target_logprob = r->target_logprob;
            if (r->scored_top) {
                size_t m2 = (size_t)r->n_scored * (size_t)r->top_k;
                split_top(r->scored_top, m2, &w->scored_top_tokens, &w->scored_top_logprobs);
                w->n_scored_top_tokens = w->n_scored_top_logprobs = m2;
                tmp[4 * i + 2] = w->scored_top_tokens;
                tmp[4 * i + 3] = w->scored_top_logprobs;
            }
        }
        w->n_full = r->n_full;
        w->vocab = r->vocab;
        size_t b = (size_t)r->n_full * (size_t)r->vocab * sizeof(float);
        if (b) { /* rows of a zero vocabulary: nothing to copy, and *payload may be NULL */
            memcpy((char *)*payload + off, r->full, b);
            off += b;
        }
        rp[i] = w;
    }
    m.n_results = (size_t)n;
    m.results = rp;
    Brt__CacheReport *rep_store = calloc((size_t)(n_reports ? n_reports : 1), sizeof *rep_store);
    m.reports = rep_store ? reports_out(reports, n_reports, rep_store) : NULL;
    m.n_reports = m.reports ? (size_t)n_reports : 0;
    *hdr = NULL;
    if (m.reports) {
        *hdr_len = brt__results__get_packed_size(&m);
        *hdr = malloc(*hdr_len ? *hdr_len : 1);
        if (*hdr)
            brt__results__pack(&m, *hdr);
    }
    free(m.reports);
    free(rep_store);
    for (int32_t i = 0; i < 4 * n; i++)
        free(tmp[i]);
    free(tmp);
    free(rs);
    free(rp);
    free(m.stats);
    if (!*hdr) {
        free(*payload);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    return BRT_OK;
}

brt_status brt_wire_unpack_results(const void *hdr, size_t hdr_len, const void *payload, size_t payload_len,
                                   int32_t src, uint64_t *mb_id, brt_step_result **out, int32_t *n,
                                   brt_stage_stat *stats, int32_t *n_stats, brt_cache_report **reports,
                                   int32_t *n_reports, brt_err *err)
{
    *out = NULL;
    *n = 0;
    *n_stats = 0;
    *reports = NULL;
    *n_reports = 0;
    Brt__Results *m = brt__results__unpack(NULL, hdr_len, hdr);
    if (!m)
        return brt_errf(err, BRT_ERR_COMM, "rank %d sent results that do not parse (%zu bytes)", src, hdr_len);
    if (m->version != BRT_WIRE_VERSION) {
        const uint32_t version = m->version; /* the message names it after m is freed */
        brt__results__free_unpacked(m, NULL);
        return brt_errf(err, BRT_ERR_COMM, "rank %d speaks wire version %u, this rank %d", src, version,
                        BRT_WIRE_VERSION);
    }
    brt_status st = BRT_OK;
    *n_stats = stats_in(m->stats, m->n_stats, stats);
    brt_step_result *res = calloc(m->n_results ? m->n_results : 1, sizeof *res);
    if (!res) {
        brt__results__free_unpacked(m, NULL);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < m->n_results; i++) {
        const Brt__StepResult *w = m->results[i];
        brt_step_result *r = &res[i];
        r->job = w->job;
        r->index = w->index;
        r->failed = w->failed;
        snprintf(r->error, sizeof r->error, "%s", w->error ? w->error : "");
        r->sampled = w->sampled;
        r->sampled_logprob = w->sampled_logprob;
        r->top_k = w->top_k;
        if (w->top_k < 0 || w->top_k > 20 || w->n_scored < 0 || w->n_full < 0 || w->vocab < 0 ||
            (w->n_sampled_top_tokens && w->n_sampled_top_tokens != (size_t)w->top_k) ||
            w->n_sampled_top_logprobs != w->n_sampled_top_tokens ||
            (w->n_scored && w->n_target_logprob != (size_t)w->n_scored) ||
            w->n_scored_top_tokens != w->n_scored_top_logprobs ||
            (w->n_scored_top_tokens && w->n_scored_top_tokens != (size_t)w->n_scored * (size_t)w->top_k)) {
            st = brt_errf(err, BRT_ERR_COMM, "rank %d sent an inconsistent result for job %llu", src,
                          (unsigned long long)w->job);
            break;
        }
        if (w->n_sampled_top_tokens) {
            r->sampled_top = malloc(w->n_sampled_top_tokens * sizeof *r->sampled_top);
            for (size_t k = 0; r->sampled_top && k < w->n_sampled_top_tokens; k++)
                r->sampled_top[k] = (brt_tok_lp){w->sampled_top_tokens[k], w->sampled_top_logprobs[k]};
        }
        r->n_scored = w->n_scored;
        if (w->n_scored) {
            r->target_logprob = malloc((size_t)w->n_scored * sizeof(float));
            if (r->target_logprob)
                memcpy(r->target_logprob, w->target_logprob, (size_t)w->n_scored * sizeof(float));
        }
        if (w->n_scored_top_tokens) {
            r->scored_top = malloc(w->n_scored_top_tokens * sizeof *r->scored_top);
            for (size_t k = 0; r->scored_top && k < w->n_scored_top_tokens; k++)
                r->scored_top[k] = (brt_tok_lp){w->scored_top_tokens[k], w->scored_top_logprobs[k]};
        }
        r->n_full = w->n_full;
        r->vocab = w->vocab;
        if (w->n_full) {
            size_t b = (size_t)w->n_full * (size_t)w->vocab * sizeof(float);
            if (off + b > payload_len) {
                st = brt_errf(err, BRT_ERR_COMM, "rank %d sent %zu bytes of logits, the results need more", src,
                              payload_len);
                break;
            }
            r->full = malloc(b);
            if (r->full && b) /* b = 0 (a zero vocabulary): payload may be NULL */
                memcpy(r->full, (const char *)payload + off, b);
            off += b;
        }
    }
    *mb_id = m->mb_id;
    *n = (int32_t)m->n_results;
    if (st == BRT_OK)
        st = reports_in(m->reports, m->n_reports, src, reports, n_reports, err);
    brt__results__free_unpacked(m, NULL);
    if (st != BRT_OK) {
        for (int32_t i = 0; i < *n; i++)
            brt_step_result_free(&res[i]);
        free(res);
        *n = 0;
        return st;
    }
    *out = res;
    return BRT_OK;
}
