/* The coordinator's side of `beaconrt serve`: a job source that takes the requests the HTTP side
 * queued, turns them into jobs, streams their tokens back, answers when they end, and cancels the
 * jobs of clients that went away (their connection closed while it waited: a peek at its socket). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "api/response.h"
#include "base/log.h"
#include "serve/serve_impl.h"

#define PEEK_SECONDS 0.25 /* how often waiting connections are checked for a closed socket */

static int http_status(brt_status st)
{
    switch (st) {
    case BRT_ERR_INVALID:
    case BRT_ERR_RANGE:
    case BRT_ERR_UNSUPPORTED:
    case BRT_ERR_CAPACITY:
    case BRT_ERR_FORMAT: return 400;
    case BRT_ERR_NOMEM: return 503;
    default: return 500;
    }
}

static void live_add(brt_server *s, srv_req *r)
{
    if (s->n_live == s->cap_live) {
        int32_t cap = s->cap_live ? s->cap_live * 2 : 64;
        srv_req **p = realloc(s->live, (size_t)cap * sizeof *p);
        if (!p)
            return; /* only the disconnect check misses it */
        s->live = p;
        s->cap_live = cap;
    }
    s->live[s->n_live++] = r;
}

static void live_remove(brt_server *s, srv_req *r)
{
    for (int32_t i = 0; i < s->n_live; i++)
        if (s->live[i] == r) {
            s->live[i] = s->live[--s->n_live];
            return;
        }
}

/* A server-sent event from a JSON value (locked). */
static void event_json(srv_req *r, json_t *v)
{
    char *t = v ? brt_response_dumps(v) : NULL;
    json_decref(v);
    if (t)
        brt_srv_event(r, t);
    free(t);
}

static void start(brt_server *s, srv_req *r, brt_sched *sched)
{
    brt_job_spec spec;
    int32_t *ids = NULL;
    brt_err e;
    pthread_mutex_lock(&s->mu);
    r->refs++; /* the coordinator's, until the job ends */
    pthread_mutex_unlock(&s->mu);
    if (brt_api_job_spec(s->am, &r->req, r->id, &spec, &ids, &e) != BRT_OK) {
        pthread_mutex_lock(&s->mu);
        s->m.refused_invalid++; /* the request cannot run here (tokens, context, template): 400 */
        brt_srv_error(r, e.status == BRT_ERR_NOMEM ? 503 : 400, e.msg, "invalid_request_error", NULL);
        r->state = REQ_DONE;
        brt_srv_wake(r);
        brt_srv_unref(r);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    spec.source = &s->base;
    spec.user = r;
    if (r->req.stream)
        brt_stream_init(&r->stream, &r->req);
    live_add(s, r);
    r->t_last = r->t_arrive;
    brt_job *job = NULL;
    brt_status st = brt_sched_submit(sched, &spec, &job, &e);
    free(ids);
    if (st != BRT_OK) { /* the scheduler itself is out of memory: this request fails, the server goes on */
        live_remove(s, r);
        pthread_mutex_lock(&s->mu);
        brt_srv_error(r, 503, e.msg, "server_error", NULL);
        r->state = REQ_DONE;
        brt_srv_wake(r);
        brt_srv_unref(r);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (!job) /* refused at once (it can never fit, ...): on_done answered already */
        return;
    r->job = job;
    r->job_id = job->id;
    r->t_submit = brt_now();
    pthread_mutex_lock(&s->mu);
    r->state = REQ_RUNNING;
    pthread_mutex_unlock(&s->mu);
}

/* Requests whose job a pipeline admitted: a stream's headers go now (until then a refusal can still
 * be an HTTP status). Requests that found no room within the queue timeout are refused (429). */
static void admitted(brt_server *s, brt_sched *sched)
{
    const double now = brt_now();
    for (int32_t i = 0; i < s->n_live;) {
        srv_req *r = s->live[i];
        if (r->job && r->job->status == BRT_JOB_RUNNING && !r->accepted) {
            pthread_mutex_lock(&s->mu);
            r->accepted = 1;
            brt_srv_wake(r);
            pthread_mutex_unlock(&s->mu);
        } else if (r->job && r->job->status == BRT_JOB_QUEUED && now - r->t_submit > s->o.queue_timeout) {
            brt_err e;
            r->refused = 1;
            if (brt_sched_cancel(sched, r->job_id, &e) == BRT_OK)
                continue; /* on_done took it out of live */
        }
        i++;
    }
}

/* Clients that went away: cancel their jobs (on_done sees them cancelled). */
static void cancel_gone(brt_server *s, brt_sched *sched)
{
    const double now = brt_now();
    const int peek = now - s->last_peek > PEEK_SECONDS;
    if (peek)
        s->last_peek = now;
    for (int32_t i = 0; i < s->n_live;) {
        srv_req *r = s->live[i];
        pthread_mutex_lock(&s->mu);
        int gone = r->client_gone;
        if (!gone && peek && r->conn && r->suspended) {
            const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            char c;
            if (ci && recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0) { /* the peer closed it */
                gone = r->client_gone = 1;
                brt_srv_wake(r); /* libmicrohttpd closes it and lets go of the request */
            }
        }
        pthread_mutex_unlock(&s->mu);
        brt_err e;
        if (gone && r->job_id && brt_sched_cancel(sched, r->job_id, &e) == BRT_OK)
            continue; /* on_done took it out of live */
        i++;
    }
}

static brt_status hs_poll(brt_source *src, brt_sched *sched, brt_err *err)
{
    brt_server *s = src->impl;
    pthread_mutex_lock(&s->mu);
    srv_req *in = s->inbox;
    s->inbox = s->inbox_tail = NULL;
    s->n_inbox = 0;
    s->wake = 0;
    s->m.n_stages = 0;
    for (int i = 0; i < s->node->n_stats; i++)
        brt_metrics_stage(&s->m, &s->node->stats[i]);
    const brt_cache_counters *cc = brt_sched_cache_counters(sched);
    if (cc) {
        s->m.cache = 1;
        s->m.cache_counters = *cc;
    }
    pthread_mutex_unlock(&s->mu);
    while (in) {
        srv_req *r = in;
        in = in->next;
        r->next = NULL;
        start(s, r, sched);
    }
    admitted(s, sched);
    cancel_gone(s, sched);
    int64_t running = 0;
    for (int32_t i = 0; i < s->n_live; i++)
        running += s->live[i]->job && s->live[i]->job->status == BRT_JOB_RUNNING;
    pthread_mutex_lock(&s->mu);
    s->m.requests_running = running;
    s->m.requests_waiting = s->n_live - running + s->n_inbox;
    pthread_mutex_unlock(&s->mu);
    (void)err;
    return BRT_OK;
}

static void hs_on_token(brt_source *src, brt_job *job)
{
    brt_server *s = src->impl;
    srv_req *r = job->user;
    const double now = brt_now();
    pthread_mutex_lock(&s->mu);
    r->accepted = 1; /* running (admitted since the last poll) */
    if (job->n_gen == 1)
        brt_histogram_observe(&s->m.ttft, now - r->t_arrive);
    else
        brt_histogram_observe(&s->m.tpot, now - r->t_last);
    pthread_mutex_unlock(&s->mu);
    r->t_last = now;
    if (!r->req.stream || brt_job_is_stop_token(s->node->sched, job, job->tokens[job->n_tokens - 1]))
        return;
    brt_api_result piece;
    if (brt_stream_push(&r->stream, &s->node->model, job) != 0)
        return; /* out of memory: the final chunk carries what is left */
    if (job->finish_reason) /* the last token goes with on_done, the text cut at a stop string */
        return;
    if (brt_stream_take(&r->stream, &s->node->model, 0, -1, &piece) < 0)
        return;
    if (!piece.text && !piece.tokens)
        return;
    brt_err e;
    json_t *chunk = brt_response_chunk(r->id, s->am->name, r->created, &piece.c, r->chunks == 0, &e);
    brt_api_result_free(&piece);
    pthread_mutex_lock(&s->mu);
    event_json(r, chunk);
    r->chunks++;
    brt_srv_wake(r);
    pthread_mutex_unlock(&s->mu);
}

/* The end of a stream: what is left of the text (cut at a stop string), the finish reason, the
 * usage when asked, and [DONE] (locked). */
static void end_stream(brt_server *s, srv_req *r, const brt_job *job)
{
    brt_api_result piece;
    brt_err e;
    if (brt_stream_take(&r->stream, &s->node->model, 1, job->text_cut, &piece) < 0)
        memset(&piece, 0, sizeof piece);
    piece.c.chat = r->req.kind == BRT_API_CHAT;
    piece.c.finish_reason = job->finish_reason ? job->finish_reason : "length";
    if (!piece.c.text)
        piece.c.text = "";
    event_json(r, brt_response_chunk(r->id, s->am->name, r->created, &piece.c, r->chunks == 0, &e));
    r->chunks++;
    brt_api_result_free(&piece);
    if (r->req.include_usage) {
        brt_completion u = {.chat = r->req.kind == BRT_API_CHAT, .prompt_tokens = (int32_t)job->prompt_len,
                            .cached_tokens = (int32_t)job->cached_tokens,
                            .completion_tokens = job->n_gen};
        event_json(r, brt_response_usage_chunk(r->id, s->am->name, r->created, &u, &e));
    }
    brt_buf_append(&r->out, "data: [DONE]\n\n", 14);
}

static void hs_on_done(brt_source *src, brt_job *job)
{
    brt_server *s = src->impl;
    srv_req *r = job->user;
    live_remove(s, r);
    r->job = NULL;
    brt_api_result res;
    brt_err e;
    int made = job->status == BRT_JOB_DONE && !r->req.stream &&
               brt_api_result_make(s->am, &r->req, s->node->sched, job, &res, &e) == BRT_OK;
    json_t *body = made ? brt_response_body(r->id, s->am->name, r->created, &res.c, &e) : NULL;
    char *text = body ? brt_response_dumps(body) : NULL;
    json_decref(body);
    if (made)
        brt_api_result_free(&res);
    pthread_mutex_lock(&s->mu);
    brt_histogram_observe(&s->m.e2e, brt_now() - r->t_arrive);
    s->m.generated_tokens += job->n_gen; /* what was computed counts, whatever became of the request */
    if (job->n_gen > 0 || job->status == BRT_JOB_DONE)
        s->m.prompt_tokens += job->prompt_len;
    s->m.cached_tokens += job->cached_tokens;
    if (r->refused) { /* no room for its state within the queue timeout */
        char m[200];
        snprintf(m, sizeof m,
                 "no pipeline had room for this request within %.0fs (state pools full, or --max-jobs running; "
                 "--queue-timeout); retry later",
                 s->o.queue_timeout);
        s->m.refused_admission++;
        brt_srv_error(r, 429, m, "rate_limit_error", NULL);
    } else if (job->status != BRT_JOB_DONE) {
        const int cancelled = job->status == BRT_JOB_CANCELLED; /* the client went, or the drain ended */
        if (cancelled)
            s->m.requests_cancelled++;
        else
            s->m.requests_failed++;
        const char *why = cancelled ? "cancelled: the server is shutting down" : job->error;
        if (r->req.stream && r->accepted) {
            json_t *ev = brt_response_error(why, "server_error", NULL, NULL);
            event_json(r, ev);
            brt_buf_append(&r->out, "data: [DONE]\n\n", 14);
            r->finished = 1;
        } else if (cancelled)
            brt_srv_error(r, 503, why, "server_error", NULL);
        else
            brt_srv_error(r, http_status(job->err_status), job->error,
                          http_status(job->err_status) == 400 ? "invalid_request_error" : "server_error", NULL);
    } else {
        s->m.requests_ok++;
        r->accepted = 1;
        if (r->req.stream)
            end_stream(s, r, job);
        else if (text) {
            r->out.len = 0;
            brt_buf_append(&r->out, text, strlen(text));
            r->status = 200;
        } else
            brt_srv_error(r, 500, made ? "out of memory" : e.msg, "server_error", NULL);
        r->finished = 1;
    }
    r->finished = 1;
    r->state = REQ_DONE;
    brt_srv_wake(r);
    brt_srv_unref(r);
    pthread_mutex_unlock(&s->mu);
    free(text);
}

/* SIGTERM: new requests get 503; the ones queued here already still run. */
static void hs_stop(brt_source *src, brt_sched *sched)
{
    brt_server *s = src->impl;
    (void)sched;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
}

static int hs_closed(brt_source *src)
{
    brt_server *s = src->impl;
    pthread_mutex_lock(&s->mu);
    const int c = s->stopping && !s->inbox;
    pthread_mutex_unlock(&s->mu);
    return c;
}

static int64_t hs_pending(brt_source *src)
{
    brt_server *s = src->impl;
    pthread_mutex_lock(&s->mu);
    const int64_t n = s->n_inbox;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void hs_wait(brt_source *src, double seconds)
{
    brt_server *s = src->impl;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double end = ts.tv_sec + ts.tv_nsec * 1e-9 + seconds;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&s->mu);
    if (!s->wake && !s->inbox && !(s->node->stop_signal && !s->stopping)) /* a signal: drain at once */
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
}

void brt_http_source_init(brt_server *s)
{
    s->base = (brt_source){"http", hs_poll, hs_on_token, hs_on_done, hs_stop, hs_closed, hs_pending, hs_wait, s};
}
