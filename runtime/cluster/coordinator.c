/* World rank 0: the coordinator's loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cluster/node_impl.h"
#include "cluster/wire.h"

void brt_node_abort_job(brt_node *n, const char *what)
{
    brt_log_error("%s", what);
    if (n->tr && n->grid.world > 1) {
        Brt__Abort a = BRT__ABORT__INIT;
        a.version = BRT_WIRE_VERSION;
        a.rank = n->grid.rank;
        a.message = (char *)what;
        brt_err e;
        if (n->grid.rank != 0 && brt_wire_send_pb(n->tr, 0, BRT_TAG_ABORT, &a.base, NULL, 0, &e) == BRT_OK)
            n->tr->flush(n->tr, 5, &e);
        n->tr->abort(n->tr, 1);
    }
}

/* A message to the coordinator: results of a micro-batch, or a rank's failure. */
static brt_status coordinator_msg(brt_node *n, brt_msg *m, brt_err *err)
{
    brt_status st = BRT_OK;
    if (m->tag == BRT_TAG_RESULTS) {
        uint64_t id;
        brt_step_result *r;
        int32_t nr;
        brt_stage_stat stats[BRT_MB_STATS];
        int32_t n_stats, n_reps;
        brt_cache_report *reps;
        st = brt_wire_unpack_results(m->hdr, m->hdr_len, m->payload, m->payload_len, m->src, &id, &r, &nr, stats,
                                     &n_stats, &reps, &n_reps, err);
        if (st == BRT_OK) {
            brt_node_record_stats(n, stats, n_stats);
            brt_sched_cache_reports(n->sched, id, reps, n_reps);
            free(reps);
            st = brt_sched_results(n->sched, id, r, nr, err);
            for (int32_t i = 0; i < nr; i++)
                brt_step_result_free(&r[i]);
            free(r);
        }
    } else if (m->tag == BRT_TAG_ABORT) {
        Brt__Abort *a = brt__abort__unpack(NULL, m->hdr_len, m->hdr);
        st = brt_errf(err, BRT_ERR_COMM, "rank %d failed: %s", m->src, a && a->message ? a->message : "?");
        if (a)
            brt__abort__free_unpacked(a, NULL);
    } else
        st = brt_errf(err, BRT_ERR_COMM, "rank 0: unexpected message (tag %d) from rank %d", m->tag, m->src);
    free(m->buf);
    return st;
}

void brt_node_record_stats(brt_node *n, const brt_stage_stat *st, int32_t count)
{
    for (int32_t i = 0; i < count; i++) {
        int k = 0;
        while (k < n->n_stats && (n->stats[k].pipeline != st[i].pipeline || n->stats[k].stage != st[i].stage))
            k++;
        if (k == n->n_stats) {
            if (n->n_stats == (int)(sizeof n->stats / sizeof n->stats[0]))
                continue;
            n->n_stats++;
        }
        n->stats[k] = st[i];
    }
}

/* Every source closed (no job will come)? */
static int sources_closed(brt_node *n)
{
    for (int i = 0; i < n->n_sources; i++)
        if (!n->sources[i]->closed(n->sources[i]))
            return 0;
    return 1;
}

static int32_t inflight_all(const brt_node *n)
{
    int32_t k = 0;
    for (int32_t d = 0; d < n->grid.dp; d++)
        k += brt_sched_inflight(n->sched, d);
    return k;
}

/* The end of a drain with a disk tier: plan nothing more, let what is in flight come back, keep
 * every job that is still reading its prompt on disk at the step it reached (a mid-document
 * checkpoint: the rerun resumes there), then cancel. 1 when it is done. */
static int checkpoint_then_cancel(brt_node *n)
{
    if (n->stop_phase == 0) {
        brt_sched_stop_planning(n->sched);
        n->stop_phase = 1;
    }
    if (n->stop_phase == 1) {
        if (inflight_all(n))
            return 0;
        n->checkpointed = brt_sched_checkpoint_all(n->sched);
        if (n->checkpointed)
            brt_log_info("stopping: keeping the state of %d jobs on disk (mid-document checkpoints)", n->checkpointed);
        n->stop_phase = 2;
    }
    if (n->stop_phase == 2) {
        if (inflight_all(n) || brt_sched_cache_pending(n->sched))
            return 0;
        n->stop_phase = 3;
    }
    return 1;
}

/* SIGTERM on a server (or a run with a disk tier): the sources stop taking work at once, and what
 * is still running when the drain ends is checkpointed (with a disk tier) and cancelled (a stream
 * ends with an error event, a batch job is left for the rerun). */
static void drain(brt_node *n)
{
    if (!n->graceful || !n->stop_signal)
        return;
    if (n->drain_end == 0) {
        n->drain_end = brt_now() + n->drain_seconds;
        brt_log_info("signal %d: taking no new work; %lld jobs running or queued get %.0fs to finish (a second "
                     "signal stops at once)",
                     n->stop_signal,
                     (long long)(brt_sched_jobs_total(n->sched) - brt_sched_jobs_finished(n->sched)),
                     n->drain_seconds);
        for (int i = 0; i < n->n_sources; i++)
            if (n->sources[i]->stop)
                n->sources[i]->stop(n->sources[i], n->sched);
    } else if (n->drain_end > 0 && brt_now() >= n->drain_end) {
        if (n->o.cache_dir && !checkpoint_then_cancel(n))
            return;
        const int64_t left = brt_sched_cancel_all(n->sched);
        if (left)
            brt_log_warn("drain: %.0fs are up; cancelled the %lld jobs still running", n->drain_seconds,
                         (long long)left);
        n->drain_end = -1; /* once */
    }
}

static brt_status poll_sources(brt_node *n, brt_err *err)
{
    drain(n);
    for (int i = 0; i < n->n_sources; i++)
        BRT_TRY(n->sources[i]->poll(n->sources[i], n->sched, err));
    return BRT_OK;
}

/* Nothing to compute or send: wait a little for a result or for a source's next request,
 * whichever comes first (a short wait on each in turn when there are both). */
static brt_status idle_wait(brt_node *n, int inflight, double *last_msg, brt_err *err)
{
    const int world = n->grid.world;
    /* with other ranks, alternate short waits on MPI and on the sources; alone, wait on the sources
     * (they wake up at once when a request arrives) */
    const int open = n->n_sources && !sources_closed(n);
    const double slice = !open ? 1.0 : world > 1 ? 0.002 : 0.5;
    if (n->tr && world > 1) {
        brt_msg m;
        int got;
        BRT_TRY(n->tr->recv(n->tr, &m, slice, &got, err));
        if (got) {
            *last_msg = brt_now();
            return coordinator_msg(n, &m, err);
        }
        const double timeout = n->o.timeout > 0 ? n->o.timeout : 600;
        if (inflight && brt_now() - *last_msg > timeout)
            return brt_errf(err, BRT_ERR_TIMEOUT,
                            "rank 0: no results for %.0fs with %d micro-batches in flight (a stage rank is stuck or "
                            "gone; --timeout to wait longer)",
                            timeout, inflight);
    }
    for (int i = 0; i < n->n_sources; i++)
        if (n->sources[i]->wait && !n->sources[i]->closed(n->sources[i]))
            n->sources[i]->wait(n->sources[i], slice);
    return BRT_OK;
}

brt_status brt_node_run_coordinator(brt_node *n, brt_err *err)
{
    const int32_t dim = n->model.cfg.hidden, world = n->grid.world;
    const double timeout = n->o.timeout > 0 ? n->o.timeout : 600;
    brt_microbatch **local = calloc((size_t)n->max_inflight + 1, sizeof *local);
    if (!local)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    int32_t n_local = 0, res_cap = 0;
    brt_step_result *res = NULL;
    brt_progress pg = {brt_now(), brt_now()};
    double last_msg = brt_now();
    brt_status st = BRT_OK;
    for (int turn = 0;; turn++) {
        int busy = 0;
        /* 1. new jobs (and cancellations) from the sources */
        if ((st = poll_sources(n, err)) != BRT_OK)
            goto out;
        if (turn == 0 && n->sched && brt_sched_jobs_total(n->sched) > 1)
            brt_progress_report(n, &pg, 1); /* the first line at once: a first window can take a while */
        /* 2. results and failures from the other ranks */
        while (n->tr && world > 1) {
            brt_msg m;
            int got;
            if ((st = n->tr->recv(n->tr, &m, 0, &got, err)) != BRT_OK)
                goto out;
            if (!got)
                break;
            busy = 1;
            last_msg = brt_now();
            if ((st = coordinator_msg(n, &m, err)) != BRT_OK)
                goto out;
        }
        /* 3. plan and send what each pipeline can take */
        for (int32_t d = 0; d < n->grid.dp; d++) {
            brt_microbatch *mb;
            while (brt_sched_next(n->sched, d, &mb)) {
                busy = 1;
                if (d == 0) {
                    local[n_local++] = mb;
                    continue;
                }
                void *hdr;
                size_t hl;
                if ((st = brt_wire_pack_mb(mb, dim, &hdr, &hl, err)) != BRT_OK ||
                    (st = n->tr->send(n->tr, brt_grid_rank_of(&n->grid, d, 0), BRT_TAG_MB, hdr, hl, NULL, 0, err)) !=
                        BRT_OK)
                    goto out;
            }
        }
        /* 4. this rank's own stage: oldest micro-batch first */
        if (n_local) {
            brt_microbatch *mb = local[0];
            memmove(local, local + 1, (size_t)--n_local * sizeof *local);
            if ((st = brt_node_run_mb(n, mb, &res, &res_cap, err)) != BRT_OK)
                goto out;
            busy = 1;
        }
        brt_progress_report(n, &pg, 0);
        int inflight = 0;
        for (int32_t d = 0; d < n->grid.dp; d++)
            inflight += brt_sched_inflight(n->sched, d);
        const int idle = brt_sched_idle(n->sched) && !inflight && !n_local;
        if (idle && sources_closed(n))
            break;
        brt_node_keepalive(n);
        if (busy)
            continue;
        if (!idle && !inflight && (!n->tr || world == 1)) {
            st = brt_errf(err, BRT_ERR_INTERNAL, "scheduler stalled with %lld of %lld jobs unfinished",
                          (long long)(brt_sched_jobs_total(n->sched) - brt_sched_jobs_finished(n->sched)),
                          (long long)brt_sched_jobs_total(n->sched));
            goto out;
        }
        brt_rank_status(inflight ? "waiting for results of %d micro-batches in flight" : "waiting for work (%d in flight)",
                        inflight);
        if ((st = idle_wait(n, inflight, &last_msg, err)) != BRT_OK)
            goto out;
    }
    brt_progress_report(n, &pg, 1);
    /* shut down: each pipeline's first stage passes it on after its last micro-batch */
    if (n->tr && world > 1) {
        brt_rank_status("shutting down");
        for (int32_t d = 0; d < n->grid.dp; d++) {
            int32_t first = brt_grid_rank_of(&n->grid, d, d == 0 ? 1 : 0);
            if (d == 0 && n->grid.pp == 1)
                continue;
            if ((st = n->tr->send(n->tr, first, BRT_TAG_SHUTDOWN, NULL, 0, NULL, 0, err)) != BRT_OK)
                goto out;
        }
    }
    st = brt_trace_gather(n, timeout, err);
out:
    free(res); /* micro-batches still in `local` belong to the scheduler */
    free(local);
    return st;
}
