#define _GNU_SOURCE /* memmem */
#include "sched/sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/u64map.h"
#include "sched/sched_impl.h"

#define ADMIT_SCAN 64   /* queued jobs looked at per admission round */
#define GEN_INITIAL 256 /* generated tokens a job has room for before its buffers grow */

static void job_fail(brt_sched *s, brt_job *j, brt_status st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

brt_status brt_sched_create(const brt_sched_opts *o, brt_sched **out, brt_err *err)
{
    brt_sched *s = calloc(1, sizeof *s);
    if (!s)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    s->o = *o;
    if (s->o.max_jobs <= 0)
        s->o.max_jobs = 64;
    s->cfg = *o->cfg;
    s->o.cfg = &s->cfg;
    s->pol = brt_policy_ops_for(s->cfg.policy);
    s->pipes = calloc((size_t)o->n_pipelines, sizeof *s->pipes);
    if (!s->pipes) {
        free(s);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    for (int32_t p = 0; p < o->n_pipelines; p++)
        s->pipes[p].used = calloc((size_t)o->n_stages, sizeof(int64_t));
    brt_u64map_init(&s->by_id);
    brt_u64map_init(&s->inflight);
    s->next_job_id = 1;
    s->next_mb_id = 1;
    s->max_step_rows = s->pol->max_step_rows(&s->cfg, o->prefill_chunk);
    if (s->max_step_rows > o->max_rows) {
        brt_status st = brt_errf(err, BRT_ERR_INVALID,
                                 "a %s step can hold %d rows but micro-batches are limited to %d (raise --max-rows)",
                                 brt_policy_name(s->cfg.policy), s->max_step_rows, o->max_rows);
        brt_sched_destroy(s);
        return st;
    }
    if (o->cache_dev_bytes > 0 || o->cache_host_bytes > 0 || (o->cache_dir && *o->cache_dir)) {
        const int disk = o->cache_dir && *o->cache_dir;
        brt_cache_index_opts co = {.n_pipelines = o->n_pipelines,
                                   .n_stages = o->n_stages,
                                   .stage_layers = o->stage_layers,
                                   .dev_budget = o->cache_dev_bytes,
                                   .host_budget = o->cache_host_bytes,
                                   .disk_budget = disk ? (o->cache_disk_bytes > 0 ? o->cache_disk_bytes : (int64_t)64 << 30) : 0,
                                   .dir = disk ? o->cache_dir : NULL,
                                   .settings = o->cache_settings};
        brt_status st = brt_cache_index_create(&co, &s->cache, err);
        if (st != BRT_OK) {
            brt_sched_destroy(s);
            return st;
        }
        const int32_t kept = brt_cache_index_load_manifest(s->cache);
        if (kept)
            brt_log_info("state cache: %d states on disk in %s from earlier runs", kept, o->cache_dir);
    }
    *out = s;
    return BRT_OK;
}

static void job_free(brt_job *j)
{
    if (!j)
        return;
    free(j->name);
    free(j->tokens);
    for (int i = 0; i < j->n_stop; i++)
        free(j->stop[i]);
    free(j->stop);
    free(j->gen_logprob);
    free(j->gen_top);
    free(j->prompt_logprob);
    free(j->prompt_top);
    free(j->full);
    free(j->reserved);
    brt_buf_free(&j->gen_text);
    free(j);
}

void brt_sched_free_job(brt_sched *s, brt_job *job)
{
    if (job->slot >= 0 && job->slot < s->n_slots && s->jobs[job->slot] == job)
        s->jobs[job->slot] = NULL;
    brt_u64map_del(&s->by_id, job->id);
    job_free(job);
}

void brt_sched_destroy(brt_sched *s)
{
    if (!s)
        return;
    for (int64_t i = 0; i < s->n_slots; i++)
        job_free(s->jobs[i]);
    free(s->jobs);
    size_t it = 0;
    void *v;
    while (brt_u64map_next(&s->inflight, &it, NULL, &v)) {
        brt_microbatch *mb = v;
        for (int32_t i = 0; i < mb->n_steps; i++)
            brt_step_free_arrays(&mb->steps[i]);
        free(mb->steps);
        free(mb->release);
        free(mb->cache_ops);
        free(mb->reports);
        free(mb);
    }
    brt_u64map_free(&s->inflight);
    brt_cache_index_destroy(s->cache);
    brt_u64map_free(&s->by_id);
    for (int32_t p = 0; p < s->o.n_pipelines; p++) {
        free(s->pipes[p].used);
        free(s->pipes[p].release);
        free(s->pipes[p].ops);
    }
    free(s->pipes);
    free(s);
}

static void active_add(pipeline *p, brt_job *j)
{
    if (!p->active) {
        j->next_active = j->prev_active = j;
        p->active = j;
        return;
    }
    j->next_active = p->active;
    j->prev_active = p->active->prev_active;
    p->active->prev_active->next_active = j;
    p->active->prev_active = j;
}

static void active_remove(pipeline *p, brt_job *j)
{
    if (!j->next_active)
        return;
    if (j->next_active == j)
        p->active = NULL;
    else {
        j->prev_active->next_active = j->next_active;
        j->next_active->prev_active = j->prev_active;
        if (p->active == j)
            p->active = j->next_active;
    }
    j->next_active = j->prev_active = NULL;
}

static void queue_release(pipeline *p, uint64_t id)
{
    if (p->n_release == p->cap_release) {
        int32_t cap = p->cap_release ? p->cap_release * 2 : 16;
        uint64_t *nr = realloc(p->release, (size_t)cap * sizeof *nr);
        if (!nr)
            return; /* the state stays until the stage exits: a leak of memory, not of results */
        p->release = nr;
        p->cap_release = cap;
    }
    p->release[p->n_release++] = id;
}

/* A job ends: give its memory back, tell the stages, report it. */
static void job_finish(brt_sched *s, brt_job *j)
{
    if (j->t_done > 0) /* ended already */
        return;
    if (j->status != BRT_JOB_FAILED && j->status != BRT_JOB_CANCELLED)
        j->status = BRT_JOB_DONE;
    j->t_done = brt_now();
    if (j->pipeline >= 0) {
        pipeline *p = &s->pipes[j->pipeline];
        if (j->next_active) {
            p->n_active--;
            s->n_running--;
        }
        p->load -= j->work_left;
        j->work_left = 0;
        active_remove(p, j);
        for (int32_t st = 0; st < s->o.n_stages; st++)
            p->used[st] -= j->reserved ? j->reserved[st] : 0;
        if (j->reserved)
            memset(j->reserved, 0, (size_t)s->o.n_stages * sizeof(int64_t));
        if (j->plan.next_index > 0)
            queue_release(p, j->id);
    }
    s->n_finished++;
    if (j->prompt_len > 0 && j->tokens) { /* an ended job counts whole, however early it stopped */
        const int64_t all = j->prompt_len + (j->max_new > 0 ? j->max_new : 0);
        s->tokens_done += all - j->tokens_done;
        j->tokens_done = all;
    }
    if (j->source)
        j->source->on_done(j->source, j);
    else if (s->o.on_done)
        s->o.on_done(s->o.on_done_ctx, j);
    if (s->o.free_done && j->inflight == 0) /* else when its last step comes back */
        brt_sched_free_job(s, j);
}

static void job_fail(brt_sched *s, brt_job *j, brt_status st, const char *fmt, ...)
{
    if (j->status == BRT_JOB_FAILED || j->status == BRT_JOB_DONE || j->status == BRT_JOB_CANCELLED)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof j->error, fmt, ap);
    va_end(ap);
    j->err_status = st;
    j->status = BRT_JOB_FAILED;
    job_finish(s, j);
}

static brt_status job_reserve_bytes(brt_sched *s, brt_job *j, brt_err *err)
{
    brt_state_need need;
    BRT_TRY(brt_plan_state_need(&s->cfg, j->prompt_len, j->max_new, s->o.prefill_chunk, &need, err));
    for (int32_t st = 0; st < s->o.n_stages; st++)
        j->reserved[st] = brt_plan_job_bytes(&s->cfg, &need, s->o.stage_layers[st], s->o.stage_layers[st + 1],
                                             s->o.block_bytes, s->o.state_dtype);
    return BRT_OK;
}

/* Drop the slots of freed jobs when at least half are free, so a server that runs millions of
 * requests keeps an array the size of its live jobs (submission order is kept). */
static void compact_slots(brt_sched *s)
{
    int64_t live = 0, queued_at = -1;
    for (int64_t i = 0; i < s->n_slots; i++)
        live += s->jobs[i] != NULL;
    if (live * 2 > s->n_slots)
        return;
    int64_t w = 0;
    for (int64_t i = 0; i < s->n_slots; i++) {
        if (i == s->next_queued)
            queued_at = w;
        if (!s->jobs[i])
            continue;
        s->jobs[w] = s->jobs[i];
        s->jobs[w]->slot = w;
        w++;
    }
    s->next_queued = queued_at >= 0 ? queued_at : w;
    s->n_slots = w;
}

brt_status brt_sched_submit(brt_sched *s, const brt_job_spec *sp, brt_job **out, brt_err *err)
{
    /* the job record itself; everything sized by the request comes after validation, and a
     * request too large to hold fails alone, not the run */
    brt_job *j = calloc(1, sizeof *j);
    if (!j)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    j->id = s->next_job_id++;
    j->name = strdup(sp->name ? sp->name : "job");
    j->user = sp->user;
    j->source = sp->source;
    j->pipeline = -1;
    j->max_new = sp->max_new;
    j->temperature = sp->temperature;
    j->top_p = sp->top_p;
    j->seed = sp->seed;
    j->logprobs = sp->logprobs;
    j->echo = sp->echo;
    j->full_logits = sp->full_logits;
    j->ignore_eos = sp->ignore_eos;
    j->text_cut = -1;
    j->prompt_len = sp->prompt_len;
    for (int i = 0; i < BRT_JOB_STOP_IDS; i++)
        j->stop_ids[i] = i < sp->n_stop_ids ? sp->stop_ids[i] : -1;
    j->reserved = calloc((size_t)s->o.n_stages, sizeof *j->reserved);
    if (s->n_slots == s->cap_slots)
        compact_slots(s);
    if (s->n_slots == s->cap_slots) {
        int64_t cap = s->cap_slots ? s->cap_slots * 2 : 64;
        brt_job **nj = realloc(s->jobs, (size_t)cap * sizeof *nj);
        if (nj) {
            s->jobs = nj;
            s->cap_slots = cap;
        }
    }
    if (!j->name || !j->reserved || s->n_slots == s->cap_slots || brt_u64map_put(&s->by_id, j->id, j) != 0) {
        job_free(j);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    j->slot = s->n_slots;
    s->jobs[s->n_slots++] = j;
    s->n_jobs++;
    *out = j;
    /* validate: a bad job fails alone */
    if (sp->prompt_len <= 0) {
        job_fail(s, j, BRT_ERR_INVALID, "the prompt is empty");
        goto failed;
    }
    if (sp->prompt_len > BRT_MAX_JOB_TOKENS || sp->max_new > BRT_MAX_JOB_TOKENS ||
        sp->prompt_len + sp->max_new > BRT_MAX_JOB_TOKENS) {
        job_fail(s, j, BRT_ERR_RANGE, "%lld prompt + %d new tokens is above beaconrt's limit of %d tokens per job",
                 (long long)sp->prompt_len, sp->max_new, BRT_MAX_JOB_TOKENS);
        goto failed;
    }
    for (int64_t i = 0; i < sp->prompt_len; i++)
        if (sp->prompt[i] < 0 || sp->prompt[i] >= s->cfg.vocab_size) {
            job_fail(s, j, BRT_ERR_RANGE, "token id %d at position %lld is out of the vocabulary [0, %d)",
                     sp->prompt[i], (long long)i, s->cfg.vocab_size);
            goto failed;
        }
    if (sp->max_new < 0 || sp->logprobs > 20 || sp->temperature < 0 || !(sp->top_p > 0 && sp->top_p <= 1)) {
        job_fail(s, j, BRT_ERR_INVALID, "bad sampling parameters");
        goto failed;
    }
    if (sp->n_stop && !s->o.tok) {
        job_fail(s, j, BRT_ERR_INVALID, "stop strings need a tokenizer");
        goto failed;
    }
    /* state first: a job that can never fit is refused before its buffers are allocated */
    brt_plan_init(&j->plan, &s->cfg);
    brt_err e;
    if (job_reserve_bytes(s, j, &e) != BRT_OK) {
        job_fail(s, j, e.status, "%s", e.msg);
        goto failed;
    }
    for (int32_t st = 0; st < s->o.n_stages; st++)
        if (j->reserved[st] > s->o.stage_budget) {
            job_fail(s, j, BRT_ERR_CAPACITY,
                     "needs %.1f MiB of %s state on pipeline stage %d (layers %d-%d) for %lld prompt + %d new "
                     "tokens; the stage's budget is %.1f MiB",
                     j->reserved[st] / 1048576.0, brt_policy_name(s->cfg.policy), st, s->o.stage_layers[st],
                     s->o.stage_layers[st + 1] - 1, (long long)j->prompt_len, j->max_new,
                     s->o.stage_budget / 1048576.0);
            goto failed;
        }
    const int32_t k = j->logprobs > 0 ? j->logprobs : 0;
    /* generation buffers start small and grow (grow_gen): max_tokens is a bound, not a size */
    j->cap_gen = j->max_new > 0 ? (j->max_new < GEN_INITIAL ? j->max_new : GEN_INITIAL) : 1;
    const size_t gen = (size_t)j->cap_gen;
    j->cap_tokens = sp->prompt_len + gen + 1;
    j->tokens = malloc((size_t)j->cap_tokens * sizeof *j->tokens);
    j->gen_logprob = calloc(gen, sizeof(float));
    if (k)
        j->gen_top = calloc(gen * (size_t)k, sizeof(brt_tok_lp));
    if (j->echo && j->logprobs >= 0) {
        j->prompt_logprob = malloc((size_t)j->prompt_len * sizeof(float));
        if (k)
            j->prompt_top = calloc((size_t)j->prompt_len * (size_t)k, sizeof(brt_tok_lp));
        for (int64_t i = 0; j->prompt_logprob && i < j->prompt_len; i++)
            j->prompt_logprob[i] = NAN;
    }
    if (j->full_logits)
        j->full = malloc((size_t)j->prompt_len * (size_t)s->cfg.vocab_size * sizeof(float));
    if (sp->n_stop > 0) {
        j->stop = calloc((size_t)sp->n_stop, sizeof *j->stop);
        int copied = j->stop != NULL;
        if (copied) /* n_stop covers every slot, so the job's free releases what was copied */
            j->n_stop = sp->n_stop;
        for (int i = 0; i < j->n_stop; i++)
            copied &= (j->stop[i] = strdup(sp->stop[i])) != NULL;
        if (!copied) {
            job_fail(s, j, BRT_ERR_NOMEM, "no memory for the stop strings");
            goto failed;
        }
    }
    if (!j->tokens || !j->gen_logprob || (k && !j->gen_top) ||
        (j->echo && j->logprobs >= 0 && (!j->prompt_logprob || (k && !j->prompt_top))) || (j->full_logits && !j->full)) {
        job_fail(s, j, BRT_ERR_NOMEM, "no memory for the outputs of %lld prompt + %d new tokens",
                 (long long)j->prompt_len, j->max_new);
        goto failed;
    }
    memcpy(j->tokens, sp->prompt, (size_t)sp->prompt_len * sizeof *j->tokens);
    j->n_tokens = sp->prompt_len;
    s->tokens_total += sp->prompt_len + (sp->max_new > 0 ? sp->max_new : 0);
    return BRT_OK;
failed: /* reported through on_done; with free_done it is gone already */
    if (s->o.free_done)
        *out = NULL;
    return BRT_OK;
}

static int fits(brt_sched *s, pipeline *p, brt_job *j)
{
    for (int32_t st = 0; st < s->o.n_stages; st++)
        if (p->used[st] + j->reserved[st] > s->o.stage_budget)
            return 0;
    return 1;
}

/* Admission: each queued job (in submission order, a window of them) goes to the replica that will
 * finish it soonest among those with room for it: the least work left in tokens, not the fewest
 * jobs, so replicas stay evenly busy whatever the documents' lengths. */
static void admit(brt_sched *s)
{
    int scanned = 0;
    for (int64_t i = s->next_queued; i < s->n_slots && scanned < ADMIT_SCAN; i++) {
        brt_job *j = s->jobs[i];
        if (!j || j->status != BRT_JOB_QUEUED) {
            if (i == s->next_queued)
                s->next_queued++;
            continue;
        }
        scanned++;
        int32_t best = -1;
        for (int32_t pi = 0; pi < s->o.n_pipelines; pi++) {
            pipeline *p = &s->pipes[pi];
            if (p->n_active >= s->o.max_jobs || !fits(s, p, j))
                continue;
            if (best < 0 || p->load < s->pipes[best].load)
                best = pi;
        }
        if (best < 0)
            continue;
        pipeline *p = &s->pipes[best];
        for (int32_t st = 0; st < s->o.n_stages; st++)
            p->used[st] += j->reserved[st];
        j->status = BRT_JOB_RUNNING;
        j->pipeline = best;
        j->t_admit = brt_now();
        j->work_left = j->prompt_len + j->max_new;
        p->load += j->work_left;
        active_add(p, j);
        p->n_active++;
        s->n_running++;
        brt_sc_admitted(s, j);
        if (i == s->next_queued)
            s->next_queued++;
    }
}

/* Plan a job's next step into *st if it fits in `room` rows; 1 = planned. */
static int plan_job(brt_sched *s, brt_job *j, int32_t room, brt_step *st)
{
    brt_plan saved = j->plan;
    memset(st, 0, sizeof *st);
    brt_err e;
    int64_t fed0 = j->plan.fed;
    int r = s->pol->plan_next(&j->plan, &s->cfg, j->tokens, j->n_tokens, s->o.prefill_chunk, st, &e);
    if (r < 0) {
        j->plan = saved;
        job_fail(s, j, e.status, "%s", e.msg);
        return 0;
    }
    if (r == 0)
        return 0;
    if (st->n_rows > room) {
        brt_step_free_arrays(st);
        j->plan = saved;
        return 0;
    }
    st->job = j->id;
    /* what the last stage computes for this step */
    if (j->plan.fed == j->n_tokens && j->n_gen < j->max_new)
        st->logits |= BRT_LOGITS_SAMPLE;
    if (fed0 < j->prompt_len && j->prompt_logprob)
        st->logits |= BRT_LOGITS_SCORE;
    if (fed0 < j->prompt_len && j->full)
        st->logits |= BRT_LOGITS_FULL;
    st->top_k = j->logprobs > 0 ? j->logprobs : 0;
    st->temperature = j->temperature;
    st->top_p = j->top_p;
    st->seed = j->seed;
    st->draw = (uint32_t)j->n_gen;
    if (st->logits & BRT_LOGITS_SCORE) {
        int64_t idx = fed0;
        for (int32_t q = 0; q < st->n_rows; q++)
            if (st->kind[q] == BRT_ROW_RAW) {
                st->target[q] = idx + 1 < j->prompt_len ? j->tokens[idx + 1] : -1;
                idx++;
            }
    }
    s->tokens_planned += st->n_raw;
    if (j->pipeline >= 0) { /* the generated token of a decode step was counted when it came */
        const int64_t fresh = st->n_raw - (fed0 >= j->prompt_len ? st->n_raw : 0);
        s->pipes[j->pipeline].tokens += st->n_raw;
        s->pipes[j->pipeline].load -= fresh;
        j->work_left -= fresh;
    }
    if (j->t_first == 0)
        j->t_first = brt_now();
    return 1;
}

int brt_sched_next(brt_sched *s, int32_t pi, brt_microbatch **out)
{
    pipeline *p = &s->pipes[pi];
    *out = NULL;
    if (p->inflight >= s->o.max_inflight)
        return 0;
    admit(s);
    brt_microbatch *mb = calloc(1, sizeof *mb);
    if (!mb)
        return 0;
    int32_t cap = 16;
    mb->steps = calloc((size_t)cap, sizeof *mb->steps);
    if (!mb->steps) {
        free(mb);
        return 0;
    }
    /* two passes over the running jobs: decode steps first, then prefill windows */
    for (int pass = 0; pass < 2 && p->active; pass++) {
        brt_job *start = p->active, *j = start;
        do {
            brt_job *next = j->next_active;
            int decode = j->plan.fed >= j->prompt_len;
            if (decode == (pass == 0) && j->plan.fed < j->n_tokens && mb->n_rows < s->o.max_rows && !j->restoring &&
                !s->stopping) {
                int dup = 0;
                for (int32_t i = 0; i < mb->n_steps; i++)
                    dup |= mb->steps[i].job == j->id;
                if (!dup) {
                    if (mb->n_steps == cap) {
                        brt_step *ns = realloc(mb->steps, (size_t)cap * 2 * sizeof *ns);
                        if (!ns)
                            break;
                        mb->steps = ns;
                        cap *= 2;
                    }
                    brt_step *st = &mb->steps[mb->n_steps];
                    if (plan_job(s, j, s->o.max_rows - mb->n_rows, st)) {
                        mb->n_steps++;
                        mb->n_rows += st->n_rows;
                        j->inflight++;
                        brt_sc_planned(s, j, st);
                    }
                }
            }
            j = next;
        } while (p->active && j != p->active && j != start);
        if (p->active) /* rotate so that the next micro-batch starts with another job */
            p->active = p->active->next_active;
    }
    if (p->n_release) {
        mb->release = p->release;
        mb->n_release = p->n_release;
        p->release = NULL;
        p->n_release = p->cap_release = 0;
    }
    if (p->n_ops) { /* loads before the steps, saves after them: every stage in the same order */
        mb->cache_ops = p->ops;
        mb->n_cache_ops = p->n_ops;
        p->ops = NULL;
        p->n_ops = p->cap_ops = 0;
    }
    if (mb->n_steps == 0 && mb->n_release == 0 && mb->n_cache_ops == 0) {
        free(mb->steps);
        free(mb);
        return 0;
    }
    mb->id = s->next_mb_id++;
    mb->pipeline = pi;
    if (brt_u64map_put(&s->inflight, mb->id, mb) != 0) { /* its results cannot be matched: end the run */
        brt_err e;
        brt_errf(&e, BRT_ERR_NOMEM, "out of memory indexing micro-batch %llu", (unsigned long long)mb->id);
        brt_sched_halt(s, &e);
    }
    p->inflight++;
    *out = mb;
    return 1;
}

/* Did the new token complete a stop string? Sets the cut. The generated text grows token by
 * token (j->gen_text); only its tail can hold a new match, and memmem sees past NUL bytes. */
static int check_stop(brt_sched *s, brt_job *j)
{
    if (!j->n_stop)
        return 0;
    char piece[256];
    size_t n = brt_tokenizer_token_bytes(s->o.tok, j->tokens[j->n_tokens - 1], piece, sizeof piece);
    size_t before = j->gen_text.len, longest = 0;
    if (brt_buf_append(&j->gen_text, piece, n) != 0)
        return 0;
    for (int i = 0; i < j->n_stop; i++)
        if (strlen(j->stop[i]) > longest)
            longest = strlen(j->stop[i]);
    size_t from = before > longest ? before - longest : 0;
    int hit = 0;
    for (int i = 0; i < j->n_stop; i++) {
        size_t sl = strlen(j->stop[i]);
        if (!sl)
            continue;
        const char *f = memmem(j->gen_text.data + from, j->gen_text.len - from, j->stop[i], sl);
        if (f && (!hit || f - j->gen_text.data < j->text_cut)) {
            j->text_cut = f - j->gen_text.data;
            hit = 1;
        }
    }
    return hit;
}

/* Double a job's room for generated tokens (its token stream, logprobs and top alternatives). */
static int grow_gen(brt_job *j, int32_t k)
{
    int64_t cap = (int64_t)j->cap_gen * 2;
    if (cap > j->max_new)
        cap = j->max_new;
    int32_t *t = realloc(j->tokens, (size_t)(j->prompt_len + cap + 1) * sizeof *t);
    if (!t)
        return -1;
    j->tokens = t;
    j->cap_tokens = j->prompt_len + cap + 1;
    float *lp = realloc(j->gen_logprob, (size_t)cap * sizeof *lp);
    if (!lp)
        return -1;
    j->gen_logprob = lp;
    if (k && j->gen_top) {
        brt_tok_lp *top = realloc(j->gen_top, (size_t)cap * (size_t)k * sizeof *top);
        if (!top)
            return -1;
        memset(top + (size_t)j->cap_gen * (size_t)k, 0, (size_t)(cap - j->cap_gen) * (size_t)k * sizeof *top);
        j->gen_top = top;
    }
    j->cap_gen = (int32_t)cap;
    return 0;
}

brt_status brt_sched_results(brt_sched *s, uint64_t mb_id, brt_step_result *res, int32_t n, brt_err *err)
{
    brt_microbatch *mb = brt_u64map_del(&s->inflight, mb_id);
    if (!mb) {
        if (s->halt.status != BRT_OK) {
            *err = s->halt;
            return s->halt.status;
        }
        return brt_errf(err, BRT_ERR_INTERNAL, "results for unknown micro-batch %llu", (unsigned long long)mb_id);
    }
    if (n != mb->n_steps) {
        brt_errf(err, BRT_ERR_COMM, "micro-batch %llu: %d results for %d steps", (unsigned long long)mb_id, n,
                 mb->n_steps);
        brt_u64map_put(&s->inflight, mb_id, mb); /* still owned here; the run ends on this error */
        return BRT_ERR_COMM;
    }
    const int32_t pi = mb->pipeline;
    for (int32_t i = 0; i < n; i++) {
        brt_step *st = &mb->steps[i];
        brt_step_result *r = &res[i];
        brt_job *j = brt_u64map_get(&s->by_id, st->job);
        if (!j)
            continue;
        j->inflight--;
        if (j->status != BRT_JOB_RUNNING) {
            if (s->o.free_done && j->inflight == 0 && j->t_done > 0)
                brt_sched_free_job(s, j);
            continue;
        }
        if (r->job != st->job || r->index != st->index) {
            job_fail(s, j, BRT_ERR_INTERNAL, "result for the wrong step");
            continue;
        }
        if (r->failed) {
            job_fail(s, j, BRT_ERR_INTERNAL, "%s", r->error);
            continue;
        }
        const int32_t k = j->logprobs > 0 ? j->logprobs : 0;
        /* results come from another rank: their sizes must be the ones this step asked for */
        const int want_score = (st->logits & BRT_LOGITS_SCORE) != 0, want_full = (st->logits & BRT_LOGITS_FULL) != 0,
                  want_sample = (st->logits & BRT_LOGITS_SAMPLE) != 0;
        if ((st->logits && r->top_k != st->top_k) ||
            (want_score && (r->n_scored != st->n_raw || !r->target_logprob || (k && !r->scored_top))) ||
            (!want_score && r->n_scored) ||
            (want_full && (r->n_full != st->n_raw || r->vocab != s->cfg.vocab_size || !r->full)) ||
            (!want_full && r->n_full) || (want_sample && k && !r->sampled_top)) {
            job_fail(s, j, BRT_ERR_COMM, "malformed results for step %u (sizes differ from what it asked)", st->index);
            continue;
        }
        if (r->n_scored && j->prompt_logprob) {
            int64_t pos0 = j->scored;
            for (int32_t q = 0; q < r->n_scored; q++) {
                int64_t t = pos0 + q + 1; /* row q predicts token pos0 + q + 1 */
                if (t < j->prompt_len) {
                    j->prompt_logprob[t] = r->target_logprob[q];
                    if (k && j->prompt_top)
                        memcpy(j->prompt_top + t * k, r->scored_top + (int64_t)q * k, (size_t)k * sizeof(brt_tok_lp));
                }
            }
        }
        if (r->n_full && j->full) {
            int64_t rows = r->n_full;
            if (j->full_rows + rows > j->prompt_len)
                rows = j->prompt_len - j->full_rows;
            memcpy(j->full + j->full_rows * s->cfg.vocab_size, r->full, (size_t)rows * s->cfg.vocab_size * sizeof(float));
            j->full_rows += rows;
        }
        if (st->logits & (BRT_LOGITS_SCORE | BRT_LOGITS_FULL))
            j->scored += st->n_raw;
        j->tokens_done += st->n_raw;
        s->tokens_done += st->n_raw;
        if (st->logits & BRT_LOGITS_SAMPLE) {
            int32_t tok = r->sampled;
            if (tok < 0 || tok >= s->cfg.vocab_size) {
                job_fail(s, j, BRT_ERR_INTERNAL, "sampled token %d out of range", tok);
                continue;
            }
            if (j->n_gen == j->cap_gen && grow_gen(j, k) != 0) {
                job_fail(s, j, BRT_ERR_NOMEM, "no memory for %d generated tokens", j->n_gen + 1);
                continue;
            }
            j->gen_logprob[j->n_gen] = r->sampled_logprob;
            if (k && j->gen_top && r->sampled_top)
                memcpy(j->gen_top + (int64_t)j->n_gen * k, r->sampled_top, (size_t)k * sizeof(brt_tok_lp));
            j->tokens[j->n_tokens++] = tok;
            j->n_gen++;
            s->pipes[pi].load--;
            j->work_left--;
            if (brt_job_is_stop_token(s, j, tok))
                j->finish_reason = "stop";
            else if (check_stop(s, j))
                j->finish_reason = "stop";
            else if (j->n_gen >= j->max_new)
                j->finish_reason = "length";
            if (j->source && j->source->on_token) /* after the stop checks: a stop string is known cut */
                j->source->on_token(j->source, j);
        }
        /* done: nothing in flight and nothing left to plan or generate */
        int more_gen = !j->finish_reason && j->n_gen < j->max_new;
        if (j->inflight == 0 && !more_gen && j->plan.fed >= j->prompt_len) {
            if (!j->finish_reason)
                j->finish_reason = "length";
            job_finish(s, j);
        }
    }
    for (int32_t i = 0; i < mb->n_steps; i++)
        brt_step_free_arrays(&mb->steps[i]);
    free(mb->steps);
    free(mb->release);
    free(mb->cache_ops);
    free(mb->reports);
    free(mb);
    s->pipes[pi].inflight--;
    if (s->halt.status != BRT_OK) {
        *err = s->halt;
        return s->halt.status;
    }
    return BRT_OK;
}

brt_status brt_sched_cancel(brt_sched *s, uint64_t job_id, brt_err *err)
{
    brt_job *j = brt_u64map_get(&s->by_id, job_id);
    if (!j || (j->status != BRT_JOB_QUEUED && j->status != BRT_JOB_RUNNING))
        return brt_errf(err, BRT_ERR_NOT_FOUND, "job %llu has ended", (unsigned long long)job_id);
    snprintf(j->error, sizeof j->error, "cancelled");
    j->err_status = BRT_ERR_INVALID;
    j->status = BRT_JOB_CANCELLED;
    job_finish(s, j);
    return BRT_OK;
}

int64_t brt_sched_cancel_all(brt_sched *s)
{
    int64_t n = 0;
    for (int64_t i = 0; i < s->n_slots; i++) {
        brt_err e;
        if (s->jobs[i] && brt_sched_cancel(s, s->jobs[i]->id, &e) == BRT_OK)
            n++;
    }
    return n;
}

int64_t brt_sched_cancel_queued(brt_sched *s, const brt_source *src)
{
    int64_t n = 0;
    for (int64_t i = s->next_queued; i < s->n_slots; i++) {
        brt_err e;
        brt_job *j = s->jobs[i];
        if (j && j->status == BRT_JOB_QUEUED && j->source == src && brt_sched_cancel(s, j->id, &e) == BRT_OK)
            n++;
    }
    return n;
}

int brt_job_is_stop_token(const brt_sched *s, const brt_job *j, int32_t tok)
{
    if (j->ignore_eos)
        return 0;
    if (brt_config_is_eos(&s->cfg, tok))
        return 1;
    for (int i = 0; i < BRT_JOB_STOP_IDS; i++)
        if (j->stop_ids[i] >= 0 && tok == j->stop_ids[i])
            return 1;
    return 0;
}

void brt_sched_halt(brt_sched *s, const brt_err *why)
{
    if (s->halt.status == BRT_OK && why->status != BRT_OK)
        s->halt = *why;
}

int64_t brt_sched_jobs_total(const brt_sched *s) { return s->n_jobs; }
int64_t brt_sched_jobs_finished(const brt_sched *s) { return s->n_finished; }
int brt_sched_idle(const brt_sched *s) { return s->n_finished == s->n_jobs; }
int64_t brt_sched_jobs_running(const brt_sched *s) { return s->n_running; }
int64_t brt_sched_jobs_queued(const brt_sched *s) { return s->n_jobs - s->n_finished - s->n_running; }
int64_t brt_sched_pipeline_load(const brt_sched *s, int32_t pi) { return s->pipes[pi].load; }
int32_t brt_sched_pipeline_jobs(const brt_sched *s, int32_t pi) { return s->pipes[pi].n_active; }
int64_t brt_sched_pipeline_tokens(const brt_sched *s, int32_t pi) { return s->pipes[pi].tokens; }
int32_t brt_sched_inflight(const brt_sched *s, int32_t pi) { return s->pipes[pi].inflight; }
int64_t brt_sched_tokens_processed(const brt_sched *s) { return s->tokens_planned; }
int64_t brt_sched_tokens_total(const brt_sched *s) { return s->tokens_total; }
int64_t brt_sched_tokens_done(const brt_sched *s) { return s->tokens_done; }
