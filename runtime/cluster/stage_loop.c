/* A stage's work: a micro-batch through this rank's stage and on to the next stage (hidden states
 * over MPI from host memory, or GPU to GPU over the pipeline's device link) or, from the last
 * stage, its results to the coordinator; and the loop of every rank but 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cluster/node_impl.h"
#include "cluster/wire.h"

static brt_status grow_results(brt_step_result **res, int32_t *cap, int32_t n, brt_err *err)
{
    if (n <= *cap)
        return BRT_OK;
    brt_step_result *nr = realloc(*res, (size_t)n * 2 * sizeof *nr);
    if (!nr)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    *res = nr;
    *cap = n * 2;
    return BRT_OK;
}

/* Forward through this rank's stage and pass it on: to the next stage, or the results to the
 * coordinator (or straight into the scheduler when the coordinator is this rank). */
brt_status brt_node_run_mb(brt_node *n, brt_microbatch *mb, brt_step_result **res, int32_t *res_cap, brt_err *err)
{
    brt_rank_status("running micro-batch %llu (%d steps, %d rows) on stage %d of pipeline %d", (unsigned long long)mb->id,
               mb->n_steps, mb->n_rows, n->grid.my_pp, n->grid.my_dp);
    BRT_TRY(grow_results(res, res_cap, mb->n_steps, err));
    double t0 = brt_now();
    BRT_TRY(brt_node_cache_ops(n, mb, 0, err));
    BRT_TRY(brt_stage_forward(n->stage, mb, *res, err));
    BRT_TRY(brt_node_cache_ops(n, mb, 1, err));
    brt_trace_add(n, mb, t0, brt_now());
    const int last = n->grid.my_pp == n->grid.pp - 1;
    if (mb->n_stats < BRT_MB_STATS) { /* this stage's figures travel on with the micro-batch */
        brt_stage_stat *ss = &mb->stats[mb->n_stats++];
        int64_t mbs;
        brt_stage_stats(n->stage, &ss->busy_s, &mbs);
        *ss = (brt_stage_stat){n->grid.rank, n->grid.my_dp, n->grid.my_pp, ss->busy_s, brt_now() - n->t_start,
                               brt_stage_kv_used(n->stage), n->kv_budget};
    }
    const int32_t n_steps = mb->n_steps; /* the scheduler frees mb when it takes the results */
    brt_status st = BRT_OK;
    if (last && n->grid.rank == 0) {
        brt_node_record_stats(n, mb->stats, mb->n_stats);
        brt_sched_cache_reports(n->sched, mb->id, mb->reports, mb->n_reports);
        st = brt_sched_results(n->sched, mb->id, *res, n_steps, err);
    }
    else if (last) {
        void *hdr, *pl;
        size_t hl, pll;
        st = brt_wire_pack_results(mb->id, n->grid.rank, *res, mb->n_steps, mb->stats, mb->n_stats, mb->reports,
                                   mb->n_reports, &hdr, &hl, &pl, &pll, err);
        if (st == BRT_OK)
            st = n->tr->send(n->tr, 0, BRT_TAG_RESULTS, hdr, hl, pl, pll, err);
    } else if (n->link) { /* the header over MPI, the hidden states GPU to GPU */
        void *hdr;
        size_t hl;
        mb->device_payload = 1;
        st = brt_wire_pack_mb(mb, n->model.cfg.hidden, &hdr, &hl, err);
        if (st == BRT_OK)
            st = n->tr->send(n->tr, n->grid.rank + 1, BRT_TAG_MB, hdr, hl, NULL, 0, err);
        if (st == BRT_OK)
            st = n->be->link_send(n->be, brt_stage_hidden(n->stage), mb->n_rows, n->model.cfg.hidden,
                                  n->grid.my_pp + 1, err);
    } else {
        void *hdr;
        size_t hl, bytes = (size_t)mb->n_rows * n->model.cfg.hidden * sizeof(float);
        st = brt_wire_pack_mb(mb, n->model.cfg.hidden, &hdr, &hl, err);
        void *pl = st == BRT_OK ? malloc(bytes ? bytes : 1) : NULL;
        if (st == BRT_OK && !pl)
            st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        if (st == BRT_OK)
            st = brt_stage_take_hidden(n->stage, pl, mb->n_rows, err);
        if (st == BRT_OK)
            st = n->tr->send(n->tr, n->grid.rank + 1, BRT_TAG_MB, hdr, hl, pl, bytes, err);
        else {
            free(hdr);
            free(pl);
        }
    }
    if (last)
        for (int32_t i = 0; i < n_steps; i++)
            brt_step_result_free(&(*res)[i]);
    brt_rank_status("idle");
    return st;
}

/* Any other rank: run what the previous stage (or the coordinator) sends, until shutdown. */
brt_status brt_node_run_stage_rank(brt_node *n, brt_err *err)
{
    const int32_t dim = n->model.cfg.hidden;
    const double timeout = n->o.timeout > 0 ? n->o.timeout : 600;
    brt_step_result *res = NULL;
    int32_t res_cap = 0;
    brt_status st = BRT_OK;
    const int first = n->grid.my_pp == 0, last = n->grid.my_pp == n->grid.pp - 1;
    for (;;) {
        brt_rank_status("waiting for work from %s", first ? "the coordinator (rank 0)" : "the previous stage");
        brt_msg m;
        int got;
        if ((st = n->tr->recv(n->tr, &m, timeout, &got, err)) != BRT_OK)
            break;
        if (!got) {
            st = brt_errf(err, BRT_ERR_TIMEOUT,
                          "rank %d (pipeline %d, stage %d): nothing from the coordinator or the previous stage for %.0fs",
                          n->grid.rank, n->grid.my_dp, n->grid.my_pp, timeout);
            break;
        }
        if (m.tag == BRT_TAG_HEARTBEAT) {
            free(m.buf);
            continue;
        }
        if (m.tag == BRT_TAG_SHUTDOWN) {
            free(m.buf);
            if (!last)
                st = n->tr->send(n->tr, n->grid.rank + 1, BRT_TAG_SHUTDOWN, NULL, 0, NULL, 0, err);
            Brt__Trace t;
            brt_trace_fill(n, &t);
            if (st == BRT_OK)
                st = brt_wire_send_pb(n->tr, 0, BRT_TAG_TRACE, &t.base, NULL, 0, err);
            free(t.events);
            if (st == BRT_OK)
                st = n->tr->flush(n->tr, timeout, err);
            break;
        }
        if (m.tag != BRT_TAG_MB) {
            st = brt_errf(err, BRT_ERR_COMM, "rank %d: unexpected message (tag %d) from rank %d", n->grid.rank, m.tag,
                          m.src);
            free(m.buf);
            break;
        }
        brt_microbatch *mb;
        int32_t hd;
        st = brt_wire_unpack_mb(m.hdr, m.hdr_len, m.src, &mb, &hd, err);
        if (st == BRT_OK && mb->n_rows > n->max_rows)
            st = brt_errf(err, BRT_ERR_COMM, "rank %d sent %d rows, more than the %d this rank holds", m.src, mb->n_rows,
                          n->max_rows);
        if (st == BRT_OK && !first && mb->device_payload) {
            if (hd != dim || m.payload_len != 0 || !n->link)
                st = brt_errf(err, BRT_ERR_COMM, "rank %d announced %d rows of %d over a device link this rank %s", m.src,
                              mb->n_rows, hd, n->link ? "expects differently" : "does not have");
            else
                st = n->be->link_recv(n->be, brt_stage_hidden(n->stage), mb->n_rows, dim, n->grid.my_pp - 1, err);
        } else if (st == BRT_OK && !first) {
            size_t want = (size_t)mb->n_rows * dim * sizeof(float);
            if (hd != dim || m.payload_len != want)
                st = brt_errf(err, BRT_ERR_COMM, "rank %d sent %zu bytes of hidden states for %d rows of %d (expected %zu)",
                              m.src, m.payload_len, mb->n_rows, hd, want);
            else
                st = brt_stage_put_hidden(n->stage, m.payload, mb->n_rows, err);
        }
        free(m.buf);
        if (st == BRT_OK)
            st = brt_node_run_mb(n, mb, &res, &res_cap, err);
        brt_wire_free_mb(mb);
        if (st != BRT_OK)
            break;
    }
    free(res);
    return st;
}

