/* The HTTP side of `beaconrt serve`, on libmicrohttpd's thread: routes, request bodies, answers,
 * streams. Requests that run a job are handed to the coordinator (http_source.c) and their
 * connection is suspended until there is something to send. */
#include "serve/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "api/response.h"
#include "base/log.h"
#include "serve/serve_impl.h"

/* What libmicrohttpd keeps per request between calls of the handler. */
typedef struct conn_ctx {
    brt_buf body;
    int too_big;
    srv_req *req;
} conn_ctx;

void brt_srv_wake(srv_req *r)
{
    if (r->conn && r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
}

int brt_srv_event(srv_req *r, const char *json)
{
    return brt_buf_append(&r->out, "data: ", 6) || brt_buf_append(&r->out, json, strlen(json)) ||
                   brt_buf_append(&r->out, "\n\n", 2)
               ? -1
               : 0;
}

void brt_srv_error(srv_req *r, int status, const char *message, const char *type, const char *param)
{
    json_t *e = brt_response_error(message, type, param, NULL);
    char *s = e ? brt_response_dumps(e) : NULL;
    json_decref(e);
    r->out.len = 0;
    if (!s || brt_buf_append(&r->out, s, strlen(s)) != 0) {
        r->out.len = 0;
        brt_buf_append(&r->out, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}", 59);
        status = 500;
    }
    free(s);
    r->status = status;
    r->finished = 1;
}

void brt_srv_unref(srv_req *r)
{
    if (--r->refs > 0)
        return;
    brt_request_free(&r->req);
    brt_stream_free(&r->stream);
    brt_buf_free(&r->out);
    free(r);
}

/* ---- answers ------------------------------------------------------------------------------ */

static enum MHD_Result answer(struct MHD_Connection *c, int status, const char *type, const char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    if (status == 429) /* the queue or the state pools are full now; they drain in about this long */
        MHD_add_response_header(resp, "Retry-After", "1");
    enum MHD_Result r = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result answer_error(struct MHD_Connection *c, int status, const char *message, const char *type,
                                    const char *param)
{
    json_t *e = brt_response_error(message, type, param, NULL);
    char *s = e ? brt_response_dumps(e) : NULL;
    json_decref(e);
    enum MHD_Result r = s ? answer(c, status, "application/json", s, strlen(s)) : MHD_NO;
    free(s);
    return r;
}

static enum MHD_Result answer_json(struct MHD_Connection *c, int status, json_t *v)
{
    char *s = v ? brt_response_dumps(v) : NULL;
    json_decref(v);
    enum MHD_Result r = s ? answer(c, status, "application/json", s, strlen(s)) : MHD_NO;
    free(s);
    return r;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    srv_req *r = cls;
    brt_server *s = r->srv;
    (void)pos;
    pthread_mutex_lock(&s->mu);
    ssize_t n;
    if (r->sent < r->out.len) {
        size_t k = r->out.len - r->sent < max ? r->out.len - r->sent : max;
        memcpy(buf, r->out.data + r->sent, k);
        r->sent += k;
        n = (ssize_t)k;
    } else if (r->finished)
        n = MHD_CONTENT_READER_END_OF_STREAM;
    else { /* nothing yet: park the connection until the coordinator has a token */
        r->suspended = 1;
        MHD_suspend_connection(r->conn);
        n = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* A request already handed to the coordinator, its connection resumed: answer what is ready. */
static enum MHD_Result resume_answer(brt_server *s, struct MHD_Connection *c, srv_req *r)
{
    pthread_mutex_lock(&s->mu);
    enum MHD_Result res = MHD_YES;
    if (r->client_gone && r->status == 0) { /* woken to close: the answer fails on the closed socket */
        pthread_mutex_unlock(&s->mu);
        return MHD_NO;
    }
    if (r->req.stream && r->accepted && r->status == 0) {
        r->status = 200;
        pthread_mutex_unlock(&s->mu);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_reader, r, NULL);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        res = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return res;
    }
    if (r->finished && r->status != 0 && (!r->req.stream || !r->accepted)) {
        const int status = r->status;
        r->sent = r->out.len;
        pthread_mutex_unlock(&s->mu);
        return answer(c, status, "application/json", r->out.data ? r->out.data : "", r->out.len);
    }
    r->suspended = 1; /* woken before its answer was ready: wait again */
    MHD_suspend_connection(c);
    pthread_mutex_unlock(&s->mu);
    return res;
}

static void new_id(char *out, size_t n, const char *prefix)
{
    static uint64_t counter;
    uint64_t x = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) *
                                                                    0xBF58476D1CE4E5B9ULL;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 29;
    snprintf(out, n, "%s%016llx%08x", prefix, (unsigned long long)x, (unsigned)(counter * 2654435761u));
}

static enum MHD_Result start_job(brt_server *s, struct MHD_Connection *c, conn_ctx *cc, brt_api_kind kind)
{
    if (cc->too_big) {
        char m[160];
        snprintf(m, sizeof m, "the request body is larger than the server's limit of %lld bytes (--max-body-mb)",
                 (long long)s->o.max_body_bytes);
        return answer_error(c, 413, m, "invalid_request_error", NULL);
    }
    json_error_t je;
    json_t *body = json_loadb(cc->body.data ? cc->body.data : "", cc->body.len, JSON_REJECT_DUPLICATES, &je);
    if (!body) {
        char m[300];
        snprintf(m, sizeof m, "the request body is not valid JSON (line %d, column %d): %s", je.line, je.column,
                 je.text);
        pthread_mutex_lock(&s->mu);
        s->m.refused_invalid++;
        pthread_mutex_unlock(&s->mu);
        return answer_error(c, 400, m, "invalid_request_error", NULL);
    }
    srv_req *r = calloc(1, sizeof *r);
    brt_err e;
    if (!r) {
        json_decref(body);
        return answer_error(c, 500, "out of memory", "server_error", NULL);
    }
    brt_status st = brt_request_parse_body(body, kind, &r->req, &e);
    json_decref(body);
    if (st != BRT_OK) {
        free(r);
        pthread_mutex_lock(&s->mu);
        s->m.refused_invalid++;
        pthread_mutex_unlock(&s->mu);
        return answer_error(c, 400, e.msg, "invalid_request_error", NULL);
    }
    r->srv = s;
    r->refs = 1; /* the connection's; the coordinator takes its own */
    r->conn = c;
    r->created = (int64_t)time(NULL);
    r->t_arrive = brt_now();
    new_id(r->id, sizeof r->id, kind == BRT_API_CHAT ? "chatcmpl-" : "cmpl-");
    cc->req = r;
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->n_open >= s->o.max_waiting) {
        const int stopping = s->stopping;
        if (stopping)
            s->m.refused_stopping++;
        else
            s->m.refused_queue_full++;
        pthread_mutex_unlock(&s->mu);
        cc->req = NULL;
        brt_request_free(&r->req);
        free(r);
        if (stopping)
            return answer_error(c, 503, "the server is shutting down", "server_error", NULL);
        char m[160];
        snprintf(m, sizeof m, "too many requests: %d are waiting or running (--max-waiting); retry later",
                 s->o.max_waiting);
        return answer_error(c, 429, m, "rate_limit_error", NULL);
    }
    s->n_open++;
    r->all_next = s->all;
    if (s->all)
        s->all->all_prev = r;
    s->all = r;
    if (s->inbox_tail)
        s->inbox_tail->next = r;
    else
        s->inbox = r;
    s->inbox_tail = r;
    s->n_inbox++;
    s->wake = 1;
    pthread_cond_signal(&s->cv);
    r->suspended = 1; /* until the coordinator accepts or refuses it */
    MHD_suspend_connection(c);
    pthread_mutex_unlock(&s->mu);
    return MHD_YES;
}

static json_t *models_json(brt_server *s)
{
    json_t *o = json_object(), *data = json_array(), *m = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    json_object_set_new(m, "id", json_string(s->am->name));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(s->started));
    json_object_set_new(m, "owned_by", json_string("beaconrt"));
    json_object_set_new(m, "max_model_len", json_integer(s->am->model->cfg.max_pos));
    json_array_append_new(data, m);
    return o;
}

static int authorized(brt_server *s, struct MHD_Connection *c)
{
    if (!s->o.api_key || !*s->o.api_key)
        return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, s->o.api_key);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    brt_server *s = cls;
    (void)version;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        if (!(cc = calloc(1, sizeof *cc)))
            return MHD_NO;
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cc->body.len + *upload_size > (size_t)s->o.max_body_bytes)
            cc->too_big = 1; /* read on, answer 413 at the end */
        else if (brt_buf_append(&cc->body, upload, *upload_size) != 0)
            cc->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (cc->req)
        return resume_answer(s, c, cc->req);
    const int get = !strcmp(method, MHD_HTTP_METHOD_GET), post = !strcmp(method, MHD_HTTP_METHOD_POST);
    if (!strcmp(url, "/health")) {
        pthread_mutex_lock(&s->mu);
        const int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        return stopping ? answer(c, 503, "application/json", "{\"status\":\"stopping\"}", 21)
                        : answer(c, 200, "application/json", "{\"status\":\"ok\"}", 15);
    }
    if (!authorized(s, c))
        return answer_error(c, 401, "a valid API key is needed (Authorization: Bearer KEY)", "invalid_request_error",
                            NULL);
    if (!strcmp(url, "/v1/models") && get)
        return answer_json(c, 200, models_json(s));
    if (!strcmp(url, "/metrics") && get) {
        brt_buf b = {0};
        pthread_mutex_lock(&s->mu);
        int bad = brt_metrics_render(&s->m, s->am->name, &b);
        pthread_mutex_unlock(&s->mu);
        enum MHD_Result r = bad ? answer_error(c, 500, "out of memory", "server_error", NULL)
                                : answer(c, 200, "text/plain; version=0.0.4", b.data, b.len);
        brt_buf_free(&b);
        return r;
    }
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) {
        if (!post)
            return answer_error(c, 405, "use POST", "invalid_request_error", NULL);
        return start_job(s, c, cc, !strcmp(url, "/v1/completions") ? BRT_API_COMPLETIONS : BRT_API_CHAT);
    }
    char m[400];
    snprintf(m, sizeof m, "no such endpoint: %s %.200s (this server has POST /v1/completions, POST "
                          "/v1/chat/completions, GET /v1/models, /health, /metrics)",
             method, url);
    return answer_error(c, 404, m, "invalid_request_error", NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    brt_server *s = cls;
    conn_ctx *cc = *con_cls;
    (void)c;
    (void)toe;
    if (!cc)
        return;
    if (cc->req) {
        srv_req *r = cc->req;
        pthread_mutex_lock(&s->mu);
        r->conn = NULL;
        r->suspended = 0;
        if (!r->finished || r->sent < r->out.len) { /* the client went away before its answer */
            r->client_gone = 1;
            s->wake = 1;
            pthread_cond_signal(&s->cv);
        }
        if (r->all_prev)
            r->all_prev->all_next = r->all_next;
        else if (s->all == r)
            s->all = r->all_next;
        if (r->all_next)
            r->all_next->all_prev = r->all_prev;
        r->all_prev = r->all_next = NULL;
        s->n_open--;
        brt_srv_unref(r);
        pthread_mutex_unlock(&s->mu);
    }
    brt_buf_free(&cc->body);
    free(cc);
    *con_cls = NULL;
}

/* libmicrohttpd's messages are about single connections (a client that went away mid-stream is
 * normal): debug level (BRT_LOG=debug). Failures to listen are reported by brt_server_start. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (brt_log_level() < BRT_LOG_DEBUG)
        return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = 0;
    brt_log_debug("http: %s", line);
}

brt_status brt_server_start(const brt_server_opts *o, brt_api_model *am, brt_node *node, brt_server **out, brt_err *err)
{
    *out = NULL;
    brt_server *s = calloc(1, sizeof *s);
    if (!s)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    s->o = *o;
    if (!s->o.host)
        s->o.host = "127.0.0.1";
    if (s->o.max_body_bytes <= 0)
        s->o.max_body_bytes = (int64_t)64 << 20;
    if (s->o.max_waiting <= 0)
        s->o.max_waiting = 1024;
    if (s->o.max_connections <= 0)
        s->o.max_connections = 4096;
    if (s->o.queue_timeout <= 0)
        s->o.queue_timeout = 60;
    s->am = am;
    s->node = node;
    s->started = (int64_t)time(NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    brt_metrics_init(&s->m);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(s->o.host, port, &hints, &ai);
    if (gai != 0) {
        brt_errf(err, BRT_ERR_INVALID, "--host %s: %s", s->o.host, gai_strerror(gai));
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return BRT_ERR_INVALID;
    }
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
                            NULL, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)s->o.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return brt_errf(err, BRT_ERR_IO, "cannot listen on %s:%d (in use, or not an address of this host?)",
                        o->host ? o->host : "127.0.0.1", o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    brt_http_source_init(s);
    *out = s;
    return BRT_OK;
}

brt_source *brt_server_source(brt_server *s) { return &s->base; }
int brt_server_port(const brt_server *s) { return s->port; }

void brt_server_stop(brt_server *s, double seconds)
{
    if (!s)
        return;
    const double end = brt_now() + seconds;
    for (;;) { /* let the last answers go out; then no connection may stay suspended */
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        int open = 0;
        for (srv_req *r = s->all; r; r = r->all_next) {
            if (!r->finished && r->req.stream && r->accepted) { /* a stream under way ends with an error event */
                brt_srv_event(r, "{\"error\":{\"message\":\"the server is shutting down\",\"type\":\"server_error\"}}");
                brt_buf_append(&r->out, "data: [DONE]\n\n", 14);
                r->finished = 1;
            } else if (!r->finished)
                brt_srv_error(r, 503, "the server is shutting down", "server_error", NULL);
            open += r->sent < r->out.len || r->suspended;
            brt_srv_wake(r);
        }
        pthread_mutex_unlock(&s->mu);
        if (!open || brt_now() > end)
            break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->d);
    free(s->live);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
