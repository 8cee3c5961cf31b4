/* `beaconrt serve`: an OpenAI-compatible HTTP API on world rank 0 (libmicrohttpd), feeding the same
 * scheduler and pipelines as batch files. POST /v1/completions and /v1/chat/completions (with
 * server-sent-event streaming), GET /v1/models, /health and /metrics.
 *
 * Threads: libmicrohttpd's own thread parses requests and writes responses; it never touches the
 * scheduler or MPI. Requests go to the coordinator through the server's queue; the coordinator
 * (the HTTP job source, polled by the node's loop) tokenizes, submits, and fills each request's
 * response as tokens come, waking its connection. A connection waiting for its answer is
 * suspended (no thread per client); a client that goes away cancels its job, which frees its
 * state on every stage. */
#ifndef BRT_SERVE_SERVER_H
#define BRT_SERVE_SERVER_H

#include <stdint.h>

#include "api/job.h"
#include "cluster/node.h"
#include "sched/source.h"

typedef struct brt_server brt_server;

typedef struct brt_server_opts {
    const char *host;           /* address to listen on (default 127.0.0.1: loopback only) */
    int port;                   /* default 8000 */
    const char *api_key;        /* when set, requests need "Authorization: Bearer KEY" */
    int64_t max_body_bytes;     /* larger bodies get 413 (default 64 MiB) */
    int32_t max_waiting;        /* requests waiting to run beyond this get 429 (default 1024) */
    int32_t max_connections;    /* default 4096 */
    double queue_timeout;       /* a request whose state finds no room for this long gets 429 (default 60 s) */
} brt_server_opts;

/* Start listening. The server's job source must be added to the node (brt_server_source). */
brt_status brt_server_start(const brt_server_opts *o, brt_api_model *am, brt_node *node, brt_server **out,
                            brt_err *err);
brt_source *brt_server_source(brt_server *s);
/* The port it listens on (when the options asked for 0: any free port). */
int brt_server_port(const brt_server *s);
/* After the node's run: wait (at most `seconds`) until every response has gone out, then stop. */
void brt_server_stop(brt_server *s, double seconds);

#endif
