/* A job's start-up, collective over every rank: the handshake (same model config, layer split,
 * knobs and device on every rank, or a message naming the rank that differs; rank 0 learns every
 * stage's KV budget), then the device links: rank 0 decides for each pipeline whether its stages
 * move hidden states GPU to GPU (NCCL: every stage on a GPU of its own) and hands each rank the
 * link's id; the stages join it with a deadline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/hash.h"
#include "base/log.h"
#include "brt.pb-c.h"
#include "cluster/node.h"
#include "cluster/wire.h"

static uint64_t config_hash(const brt_node *n)
{
    uint64_t h = brt_fnv1a(BRT_FNV_INIT, &n->model.cfg, sizeof n->model.cfg); /* zeroed before parsing */
    h = brt_fnv1a(h, n->grid.layers, sizeof(int32_t) * (size_t)(n->grid.pp + 1));
    /* the device and its state dtype too: admission counts every stage's bytes alike */
    int32_t knobs[6] = {n->max_rows, n->prefill_chunk, n->block_bytes, n->grid.dp, (int32_t)n->be->state_dtype,
                        (int32_t)brt_fnv1a(BRT_FNV_INIT, n->be->device, strlen(n->be->device))};
    return brt_fnv1a(h, knobs, sizeof knobs);
}

/* What rank 0 keeps of each rank's hello: where it runs. */
typedef struct peer {
    char host[64];
    int32_t gpu, cuda;
} peer;

static brt_status recv_hello(brt_node *n, double timeout, Brt__Hello **out, int32_t *src, brt_err *err)
{
    brt_msg m;
    int got;
    *out = NULL;
    BRT_TRY(n->tr->recv(n->tr, &m, timeout, &got, err));
    if (!got)
        return brt_errf(err, BRT_ERR_TIMEOUT, "rank %d: no start-up handshake %s in %.0fs", n->grid.rank,
                        n->grid.rank ? "from rank 0" : "from every rank", timeout);
    *src = m.src;
    Brt__Hello *hm = m.tag == BRT_TAG_HELLO ? brt__hello__unpack(NULL, m.hdr_len, m.hdr) : NULL;
    free(m.buf);
    if (!hm)
        return brt_errf(err, BRT_ERR_COMM, "rank %d answered the start-up handshake with an unexpected message (tag %d)",
                        m.src, m.tag);
    *out = hm;
    return BRT_OK;
}

/* Rank 0: which pipelines get a device link. Each needs every stage on CUDA, on a GPU of its own
 * (NCCL refuses two members on one GPU), more than one stage, and NCCL (BRT_NCCL=0 turns it off). */
static brt_status send_links(brt_node *n, const peer *peers, brt_err *err)
{
    const brt_grid *g = &n->grid;
    const char *env = getenv("BRT_NCCL");
    const int off = env && (!strcmp(env, "0") || !strcmp(env, "off"));
    char **names = calloc((size_t)g->pp, sizeof *names);
    if (!names)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    brt_status st = BRT_OK;
    for (int32_t d = 0; d < g->dp && st == BRT_OK; d++) {
        char why[200] = "";
        for (int32_t s = 0; s < g->pp && !why[0]; s++) {
            const peer *p = &peers[brt_grid_rank_of(g, d, s)];
            if (!p->cuda)
                snprintf(why, sizeof why, "its stages compute on CPUs");
            for (int32_t t = 0; t < s && !why[0]; t++) {
                const peer *q = &peers[brt_grid_rank_of(g, d, t)];
                if (!strcmp(p->host, q->host) && p->gpu == q->gpu)
                    snprintf(why, sizeof why, "stages %d and %d share GPU %d of %s", t, s, p->gpu, p->host);
            }
        }
        if (!why[0] && g->pp == 1)
            snprintf(why, sizeof why, "one stage");
        if (!why[0] && off)
            snprintf(why, sizeof why, "BRT_NCCL=0");
        uint8_t id[BRT_LINK_ID_MAX];
        size_t id_len = 0;
        brt_err e;
        if (!why[0] && n->be->link_id(n->be, id, &id_len, &e) != BRT_OK)
            snprintf(why, sizeof why, "%.190s", e.msg);
        if (why[0] && peers[brt_grid_rank_of(g, d, 0)].cuda && g->pp > 1)
            brt_log_warn("pipeline %d moves hidden states through MPI and host memory: %s", d, why);
        for (int32_t s = 0; s < g->pp; s++) {
            const int32_t r = brt_grid_rank_of(g, d, s);
            free(names[s]);
            names[s] = malloc(96);
            if (!names[s]) {
                st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
                break;
            }
            snprintf(names[s], 96, "rank %d (%s, GPU %d)", r, peers[r].host, peers[r].gpu);
        }
        for (int32_t s = 0; s < g->pp && st == BRT_OK; s++) {
            Brt__Link l = BRT__LINK__INIT;
            l.version = BRT_WIRE_VERSION;
            l.id.data = why[0] ? NULL : id;
            l.id.len = why[0] ? 0 : id_len;
            l.n_members = (size_t)g->pp;
            l.members = names;
            l.index = s;
            l.why_not = why;
            st = brt_wire_send_pb(n->tr, brt_grid_rank_of(g, d, s), BRT_TAG_LINK, &l.base, NULL, 0, err);
        }
    }
    for (int32_t s = 0; s < g->pp; s++)
        free(names[s]);
    free(names);
    return st;
}

/* Every rank: the Link message for its pipeline; join the link when there is one. */
static brt_status join_link(brt_node *n, double timeout, brt_err *err)
{
    brt_msg m;
    int got;
    BRT_TRY(n->tr->recv(n->tr, &m, timeout, &got, err));
    if (!got)
        return brt_errf(err, BRT_ERR_TIMEOUT, "rank %d: no device-link message from rank 0 in %.0fs", n->grid.rank,
                        timeout);
    Brt__Link *l = m.tag == BRT_TAG_LINK ? brt__link__unpack(NULL, m.hdr_len, m.hdr) : NULL;
    const int32_t src = m.src, tag = m.tag;
    free(m.buf);
    if (!l || l->version != BRT_WIRE_VERSION)
        return brt_errf(err, BRT_ERR_COMM, "rank %d: expected the device-link message from rank 0, got tag %d from rank %d",
                        n->grid.rank, tag, src);
    brt_status st = BRT_OK;
    if (l->id.len > 0) {
        if (!n->be->link_join)
            st = brt_errf(err, BRT_ERR_INTERNAL, "rank %d: a device link on a backend without one", n->grid.rank);
        else
            st = n->be->link_join(n->be, l->id.data, l->id.len, (int)l->n_members, l->index,
                                  (const char *const *)l->members, timeout, err);
        if (st == BRT_OK) {
            n->link = 1;
            brt_log_debug("stage %d of pipeline %d: hidden states over NCCL", n->grid.my_pp, n->grid.my_dp);
        }
    }
    brt__link__free_unpacked(l, NULL);
    return st;
}

brt_status brt_node_startup(brt_node *n, int32_t gpu, brt_err *err)
{
    const uint64_t h = config_hash(n);
    const double timeout = n->o.timeout > 0 ? n->o.timeout : 600;
    const brt_grid *g = &n->grid;
    Brt__Hello me = BRT__HELLO__INIT;
    me.version = BRT_WIRE_VERSION;
    me.world = g->world;
    me.pp = g->pp;
    me.dp = g->dp;
    me.config_hash = h;
    me.rank = g->rank;
    me.host = n->tr->host;
    me.kv_budget = n->kv_budget;
    me.pid = (int32_t)getpid();
    me.device = (char *)n->be->device;
    me.gpu = gpu;
    n->kv_budget_min = n->kv_budget;
    if (g->rank != 0) {
        Brt__Hello *hm;
        int32_t src;
        BRT_TRY(recv_hello(n, timeout, &hm, &src, err));
        brt_status st = BRT_OK;
        if (hm->version != BRT_WIRE_VERSION || hm->config_hash != h)
            st = brt_errf(err, BRT_ERR_COMM,
                          "rank %d: rank 0 runs a different model config, layer split, flags or device (all ranks must "
                          "get the same model and options)",
                          g->rank);
        brt__hello__free_unpacked(hm, NULL);
        BRT_TRY(st);
        BRT_TRY(brt_wire_send_pb(n->tr, 0, BRT_TAG_HELLO, &me.base, NULL, 0, err));
        return join_link(n, timeout, err);
    }
    peer *peers = calloc((size_t)g->world, sizeof *peers);
    if (!peers)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    snprintf(peers[0].host, sizeof peers[0].host, "%s", n->tr->host);
    peers[0].gpu = gpu;
    peers[0].cuda = !strcmp(n->be->device, "cuda");
    brt_status st = BRT_OK;
    for (int32_t r = 1; r < g->world && st == BRT_OK; r++)
        st = brt_wire_send_pb(n->tr, r, BRT_TAG_HELLO, &me.base, NULL, 0, err);
    for (int32_t got_n = 1; got_n < g->world && st == BRT_OK; got_n++) {
        Brt__Hello *hm;
        int32_t src;
        if ((st = recv_hello(n, timeout, &hm, &src, err)) != BRT_OK) {
            if (st == BRT_ERR_TIMEOUT)
                brt_errf(err, BRT_ERR_TIMEOUT, "rank 0: only %d of %d ranks answered the start-up handshake in %.0fs",
                         got_n, g->world, timeout);
            break;
        }
        if (hm->version != BRT_WIRE_VERSION || hm->config_hash != h || hm->pp != g->pp || hm->dp != g->dp)
            st = brt_errf(err, BRT_ERR_COMM,
                          "rank %d (%s, pid %d) runs a different model config, layer split, flags or device than rank 0 "
                          "(all ranks must get the same model and options)",
                          src, hm->host ? hm->host : "?", hm->pid);
        else {
            if (hm->kv_budget < n->kv_budget_min)
                n->kv_budget_min = hm->kv_budget;
            if (src > 0 && src < g->world) {
                snprintf(peers[src].host, sizeof peers[src].host, "%s", hm->host ? hm->host : "?");
                peers[src].gpu = hm->gpu;
                peers[src].cuda = hm->device && !strcmp(hm->device, "cuda");
            }
        }
        brt__hello__free_unpacked(hm, NULL);
    }
    if (st == BRT_OK)
        st = send_links(n, peers, err);
    free(peers);
    return st == BRT_OK ? join_link(n, timeout, err) : st;
}
