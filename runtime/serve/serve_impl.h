/* What the server's two sides share (internal to runtime/serve): the HTTP side (server.c, on
 * libmicrohttpd's thread) and the job source (http_source.c, on the coordinator's thread). Every
 * field marked "locked" is read and written under brt_server.mu. */
#ifndef BRT_SERVE_IMPL_H
#define BRT_SERVE_IMPL_H

#include <microhttpd.h>
#include <pthread.h>

#include "api/stream.h"
#include "base/buf.h"
#include "serve/metrics.h"
#include "serve/server.h"

typedef enum { REQ_WAITING = 0, REQ_RUNNING, REQ_DONE } srv_state;

/* One HTTP request that runs a job. Freed when both its connection and its job let go (refs). */
typedef struct srv_req {
    brt_server *srv;
    int refs;                     /* locked: the connection's, the coordinator's */
    struct MHD_Connection *conn;  /* locked: NULL once libmicrohttpd is done with it */
    int suspended;                /* locked */
    int client_gone;              /* locked: the connection ended before the response did */
    srv_state state;              /* locked */
    int accepted;                 /* locked: the job was admitted to a pipeline (a stream's headers may go) */
    int refused;                  /* the coordinator's: cancelled because no room came in time (429) */
    int status;                   /* locked: the HTTP status of a non-stream answer or a refusal */
    brt_buf out;                  /* locked: the body, or the stream's events so far */
    size_t sent;                  /* locked: bytes of out handed to libmicrohttpd */
    int finished;                 /* locked: out is complete */
    /* set before the request is queued, then read-only */
    brt_request req;
    char id[64];
    int64_t created;
    double t_arrive;
    /* the coordinator's alone */
    uint64_t job_id;
    brt_job *job;                 /* while it runs */
    double t_first, t_last;
    double t_submit;              /* when the scheduler got its job (the queue timeout counts from here) */
    brt_stream stream;
    int chunks;
    struct srv_req *next;         /* locked while in the inbox */
    struct srv_req *all_prev, *all_next; /* locked: every request with a connection */
} srv_req;

struct brt_server {
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* signalled when a request arrives or a client goes */
    struct MHD_Daemon *d;
    brt_server_opts o;
    brt_api_model *am;
    brt_node *node;
    int port;
    int64_t started;              /* Unix time the server started ("created" in /v1/models) */
    /* locked */
    srv_req *inbox, *inbox_tail;  /* requests for the coordinator, in arrival order */
    srv_req *all;                 /* requests whose connection is open */
    int32_t n_inbox;
    int32_t n_open;               /* requests accepted and not finished */
    int wake;                     /* something for the coordinator (an arrival, a client gone) */
    int stopping;                 /* no new requests (503) */
    brt_metrics m;
    /* the coordinator's alone */
    srv_req **live;               /* requests with a job */
    int32_t n_live, cap_live;
    double last_peek;
    brt_source base;
};

/* Drop one reference (locked); frees the request at zero. */
void brt_srv_unref(srv_req *r);
/* Wake a suspended connection so libmicrohttpd sends what is ready (locked). */
void brt_srv_wake(srv_req *r);
/* Append a server-sent event "data: <json>\n\n" (locked). */
int brt_srv_event(srv_req *r, const char *json);
/* Fill a JSON error answer (locked). */
void brt_srv_error(srv_req *r, int status, const char *message, const char *type, const char *param);

/* The job source's table (http_source.c). */
void brt_http_source_init(brt_server *s);

#endif
