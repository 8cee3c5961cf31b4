#include "dist/node.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/hash.h"
#include "base/log.h"
#include "brt.pb-c.h"
#include "dist/wire.h"
#include "engine/policy.h"

#define HEARTBEAT_SECONDS 5.0

/* ---- what this rank is doing, for a clean message if the launcher kills it ------------- */

static char g_status[256] = "starting";
static int g_rank = 0;

static void set_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_status(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_status, sizeof g_status, fmt, ap);
    va_end(ap);
}

static void on_term(int sig)
{
    char line[400];
    int n = snprintf(line, sizeof line, "beaconrt[rank %d]: stopped by signal %d while %s\n", g_rank, sig, g_status);
    if (n > 0 && write(2, line, (size_t)n) < 0) { /* nothing to do */
    }
    _exit(128 + sig);
}

/* ---- traces ---------------------------------------------------------------------------- */

typedef struct brt_trace_buf {
    Brt__TraceEvent *ev;
    size_t n, cap;
} brt_trace_buf;

static void trace_add(brt_node *n, const brt_microbatch *mb, double t0, double t1)
{
    if (!n->trace)
        return;
    brt_trace_buf *t = n->trace;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        Brt__TraceEvent *ne = realloc(t->ev, cap * sizeof *ne);
        if (!ne)
            return;
        t->ev = ne;
        t->cap = cap;
    }
    Brt__TraceEvent *e = &t->ev[t->n++];
    brt__trace_event__init(e);
    e->mb_id = mb->id;
    e->t_begin = t0;
    e->t_end = t1;
    e->rows = mb->n_rows;
    e->n_jobs = e->n_steps = (size_t)mb->n_steps;
    e->jobs = malloc((size_t)(mb->n_steps ? mb->n_steps : 1) * sizeof *e->jobs);
    e->steps = malloc((size_t)(mb->n_steps ? mb->n_steps : 1) * sizeof *e->steps);
    for (int32_t i = 0; e->jobs && e->steps && i < mb->n_steps; i++) {
        e->jobs[i] = mb->steps[i].job;
        e->steps[i] = mb->steps[i].index;
    }
}

static long rss_peak_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

static void trace_fill(brt_node *n, Brt__Trace *tr)
{
    brt__trace__init(tr);
    tr->version = BRT_WIRE_VERSION;
    tr->rank = n->grid.rank;
    tr->dp = n->grid.my_dp;
    tr->pp = n->grid.my_pp;
    int64_t mbs;
    brt_stage_stats(n->stage, &tr->busy_seconds, &mbs);
    tr->microbatches = mbs;
    tr->kv_peak_bytes = brt_stage_kv_peak(n->stage);
    tr->rss_peak_kb = rss_peak_kb();
    tr->t_start = n->t_start;
    tr->t_end = brt_now();
    tr->weight_bytes = n->weight_bytes;
    if (n->trace) {
        tr->n_events = n->trace->n;
        tr->events = malloc((n->trace->n ? n->trace->n : 1) * sizeof *tr->events);
        for (size_t i = 0; tr->events && i < n->trace->n; i++)
            tr->events[i] = &n->trace->ev[i];
    }
}

static void trace_free(brt_node *n)
{
    if (!n->trace)
        return;
    for (size_t i = 0; i < n->trace->n; i++) {
        free(n->trace->ev[i].jobs);
        free(n->trace->ev[i].steps);
    }
    free(n->trace->ev);
    free(n->trace);
    n->trace = NULL;
}

/* ---- set-up -------------------------------------------------------------------------- */

int32_t brt_node_block_bytes(const brt_model_config *cfg)
{
    /* 32 f32 slots of one layer's K (or V): small enough that a short job wastes little,
     * large enough that long ones need few blocks */
    int64_t b = 32LL * cfg->n_kv_heads * cfg->head_dim * 4;
    return (int32_t)((b + 63) / 64 * 64);
}

int64_t brt_node_default_kv_budget(int32_t local_ranks, int64_t weight_bytes)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    int64_t phys = pages > 0 && psz > 0 ? (int64_t)pages * psz : (int64_t)8 << 30;
    int64_t share = (int64_t)(phys * 0.6) / (local_ranks > 0 ? local_ranks : 1);
    int64_t b = share - weight_bytes;
    return b < ((int64_t)256 << 20) ? ((int64_t)256 << 20) : b;
}

#define GPU_RESERVE ((int64_t)2 << 30)
int64_t brt_node_gpu_kv_budget(int64_t total, int32_t ranks_on_gpu, int64_t held)
{
    return (int64_t)(total * 0.92) / (ranks_on_gpu > 0 ? ranks_on_gpu : 1) - held - GPU_RESERVE;
}

/* This rank's KV budget on its GPU, once its weights and buffers are there. */
static brt_status gpu_kv_budget(brt_node *n, int gpus, brt_err *err)
{
    int64_t fr, tot;
    n->be->memory(n->be, &fr, &tot);
    const int32_t lr = n->grid.local_rank, ls = n->grid.local_size > 0 ? n->grid.local_size : 1;
    int32_t share = 0;
    for (int32_t r = 0; r < ls; r++)
        share += r % gpus == lr % gpus;
    const int64_t budget = brt_node_gpu_kv_budget(tot, share, n->be->held);
    if (budget < ((int64_t)256 << 20))
        return brt_errf(err, BRT_ERR_CAPACITY,
                        "rank %d on %s: %.0f MiB of the GPU's %.0f MiB (shared by %d ranks) is left for long-context "
                        "state after this stage's weights and buffers (%.0f MiB): use more pipeline stages, fewer "
                        "ranks per GPU or a smaller --max-rows",
                        n->grid.rank, n->be->name, budget / 1048576.0, tot / 1048576.0, share, n->be->held / 1048576.0);
    n->kv_budget = budget;
    brt_stage_set_kv_budget(n->stage, budget);
    return BRT_OK;
}

brt_status brt_node_open(const brt_node_opts *o, brt_transport *tr, brt_node **out, brt_err *err)
{
    *out = NULL;
    brt_node *n = calloc(1, sizeof *n);
    if (!n)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    n->o = *o;
    n->tr = tr;
    n->t_start = brt_now();
    g_rank = tr ? tr->rank : 0;
    brt_log_set_rank(g_rank, tr ? tr->world : 1);
    set_status("loading %s", o->model_dir);
    brt_status st = brt_model_open(o->model_dir, o->overrides, o->need_tokenizer && g_rank == 0, &n->model, err);
    if (st != BRT_OK) {
        free(n);
        return st;
    }
    const brt_model_config *cfg = &n->model.cfg;
    int32_t world = tr ? tr->world : 1, rank = tr ? tr->rank : 0;
    st = brt_grid_init(&n->grid, world, rank, o->pp, o->dp, cfg, err);
    if (st != BRT_OK)
        goto fail;
    if (tr) {
        n->grid.local_rank = tr->local_rank;
        n->grid.local_size = tr->local_size;
    }
    const brt_policy_ops *pol = brt_policy_ops_for(cfg->policy);
    n->prefill_chunk = o->prefill_chunk > 0 ? o->prefill_chunk : 512;
    int32_t step_rows = pol->max_step_rows(cfg, n->prefill_chunk);
    n->max_rows = o->max_rows > 0 ? o->max_rows : (step_rows > 2048 ? step_rows : 2048);
    if (n->max_rows < step_rows) {
        st = brt_errf(err, BRT_ERR_INVALID, "--max-rows %d is smaller than one %s step (%d rows)", n->max_rows,
                      brt_policy_name(cfg->policy), step_rows);
        goto fail;
    }
    n->max_inflight = o->max_inflight > 0 ? o->max_inflight : 2 * n->grid.pp;
    n->block_bytes = brt_node_block_bytes(cfg);
    const int32_t s = n->grid.my_pp, a = n->grid.layers[s], b = n->grid.layers[s + 1];
    for (int32_t l = a; l < b; l++)
        n->weight_bytes += brt_weights_layer_bytes(&n->model.files, cfg, l);
    n->kv_budget = o->kv_budget > 0 ? o->kv_budget : brt_node_default_kv_budget(n->grid.local_size, n->weight_bytes);
    int threads = o->threads;
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores > 0 ? cores : 1) / (n->grid.local_size > 0 ? n->grid.local_size : 1);
        if (threads < 1)
            threads = 1;
    }
    /* each rank of a node takes its own GPU (ranks beyond the GPUs share them round robin) */
    int gpus = o->device && !strcmp(o->device, "cuda") ? brt_backend_gpu_count() : 0;
    n->gpu = gpus > 0 ? n->grid.local_rank % gpus : -1;
    brt_backend_opts bo = {o->device, threads, o->isa, n->gpu > 0 ? n->gpu : 0, o->precision};
    st = brt_backend_create(&bo, &n->be, err);
    if (st != BRT_OK)
        goto fail;
    brt_stage_opts so = {cfg, &n->model.files, a, b, s == 0, s == n->grid.pp - 1, n->be, n->kv_budget,
                         n->block_bytes, n->max_rows};
    st = brt_stage_create(&so, &n->stage, err);
    if (st != BRT_OK)
        goto fail;
    if (!o->kv_budget && gpus > 0 && (st = gpu_kv_budget(n, gpus, err)) != BRT_OK)
        goto fail;
    if (o->trace_path) /* every rank gets the same options: all record, rank 0 writes */
        n->trace = calloc(1, sizeof *n->trace);
    n->kv_budget_min = n->kv_budget;
    if (tr && world > 1) {
        set_status("in the start-up handshake");
        st = brt_node_startup(n, n->gpu, err);
        if (st != BRT_OK)
            goto fail;
    }
    if (world > 1)
        brt_log_debug("stage %d of pipeline %d: layers %d-%d, %d threads, KV budget %.0f MiB", s, n->grid.my_dp, a,
                      b - 1, n->be->n_threads, n->kv_budget / 1048576.0);
    set_status("idle");
    *out = n;
    return BRT_OK;
fail:
    brt_node_close(n);
    return st;
}

brt_status brt_node_start_sched_ex(brt_node *n, brt_job_done_fn on_done, void *ctx, int free_done, brt_err *err)
{
    if (n->grid.rank != 0)
        return BRT_OK;
    brt_sched_opts so = {&n->model.cfg, n->model.tok, n->grid.dp, n->grid.pp, n->grid.layers, n->kv_budget_min,
                         n->block_bytes, n->be->state_dtype, n->max_rows, n->max_inflight, n->prefill_chunk,
                         n->o.max_jobs, on_done, ctx, free_done};
    return brt_sched_create(&so, &n->sched, err);
}

brt_status brt_node_start_sched(brt_node *n, brt_job_done_fn on_done, void *ctx, brt_err *err)
{
    return brt_node_start_sched_ex(n, on_done, ctx, 0, err);
}

void brt_node_close(brt_node *n)
{
    if (!n)
        return;
    brt_sched_destroy(n->sched);
    brt_stage_destroy(n->stage);
    if (n->be)
        n->be->destroy(n->be);
    brt_model_close(&n->model);
    trace_free(n);
    free(n);
}

/* ---- progress -------------------------------------------------------------------------- */

typedef struct progress {
    double t0, last;
} progress;

static void report(brt_node *n, progress *pg, int force)
{
    double now = brt_now();
    if (!n->o.progress || (!force && now - pg->last < 2.0))
        return;
    pg->last = now;
    int64_t done = brt_sched_jobs_finished(n->sched), total = brt_sched_jobs_total(n->sched);
    int64_t tp = brt_sched_tokens_processed(n->sched), tt = brt_sched_tokens_total(n->sched);
    double el = now - pg->t0, rate = el > 0 ? tp / el : 0;
    double eta = rate > 0 && tt > tp ? (tt - tp) / rate : 0;
    brt_log_info("progress: jobs %lld/%lld done, tokens %lld/%lld (%.0f tok/s), elapsed %.0fs, ETA %.0fs",
                 (long long)done, (long long)total, (long long)tp, (long long)tt, rate, el, eta);
}

/* ---- running ------------------------------------------------------------------------- */

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
/* Forward through this rank's stage and pass it on: to the next stage, or the results to the
 * coordinator (or straight into the scheduler when the coordinator is this rank). */
static brt_status run_mb(brt_node *n, brt_microbatch *mb, brt_step_result **res, int32_t *res_cap, brt_err *err)
{
    set_status("running micro-batch %llu (%d steps, %d rows) on stage %d of pipeline %d", (unsigned long long)mb->id,
               mb->n_steps, mb->n_rows, n->grid.my_pp, n->grid.my_dp);
    BRT_TRY(grow_results(res, res_cap, mb->n_steps, err));
    double t0 = brt_now();
    BRT_TRY(brt_stage_forward(n->stage, mb, *res, err));
    trace_add(n, mb, t0, brt_now());
    const int last = n->grid.my_pp == n->grid.pp - 1;
    const int32_t n_steps = mb->n_steps; /* the scheduler frees mb when it takes the results */
    brt_status st = BRT_OK;
    if (last && n->grid.rank == 0)
        st = brt_sched_results(n->sched, mb->id, *res, n_steps, err);
    else if (last) {
        void *hdr, *pl;
        size_t hl, pll;
        st = brt_wire_pack_results(mb->id, n->grid.rank, *res, mb->n_steps, &hdr, &hl, &pl, &pll, err);
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
    set_status("idle");
    return st;
}

static void write_trace_line(FILE *f, const Brt__Trace *t, double t_ref)
{
    fprintf(f,
            "{\"rank\":%d,\"pipeline\":%d,\"stage\":%d,\"busy_s\":%.6f,\"wall_s\":%.6f,\"microbatches\":%lld,"
            "\"kv_peak_bytes\":%lld,\"rss_peak_kb\":%lld,\"weight_bytes\":%lld,\"events\":[",
            t->rank, t->dp, t->pp, t->busy_seconds, t->t_end - t->t_start, (long long)t->microbatches,
            (long long)t->kv_peak_bytes, (long long)t->rss_peak_kb, (long long)t->weight_bytes);
    for (size_t i = 0; i < t->n_events; i++) {
        const Brt__TraceEvent *e = t->events[i];
        fprintf(f, "%s{\"mb\":%llu,\"t0\":%.6f,\"t1\":%.6f,\"rows\":%d,\"steps\":[", i ? "," : "",
                (unsigned long long)e->mb_id, e->t_begin - t_ref, e->t_end - t_ref, e->rows);
        for (size_t k = 0; k < e->n_jobs; k++)
            fprintf(f, "%s[%llu,%u]", k ? "," : "", (unsigned long long)e->jobs[k], e->steps[k]);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
}

static void summarize(brt_node *n, Brt__Trace **traces, int32_t count)
{
    double wall = brt_now() - n->t_start;
    for (int32_t i = 0; i < count && n->o.progress; i++) {
        const Brt__Trace *t = traces[i];
        brt_log_info("rank %d (pipeline %d, stage %d): busy %.1f%% of %.1fs, %lld micro-batches, KV peak %.1f MiB, RSS "
                     "peak %.0f MiB",
                     t->rank, t->dp, t->pp, wall > 0 ? 100 * t->busy_seconds / wall : 0, wall,
                     (long long)t->microbatches, t->kv_peak_bytes / 1048576.0, t->rss_peak_kb / 1024.0);
    }
    if (n->o.trace_path) {
        FILE *f = fopen(n->o.trace_path, "w");
        if (!f) {
            brt_log_warn("cannot write the trace to %s", n->o.trace_path);
            return;
        }
        for (int32_t i = 0; i < count; i++)
            write_trace_line(f, traces[i], n->t_start);
        fclose(f);
    }
}

static void abort_job(brt_node *n, const char *what)
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
        st = brt_wire_unpack_results(m->hdr, m->hdr_len, m->payload, m->payload_len, m->src, &id, &r, &nr, err);
        if (st == BRT_OK) {
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

/* World rank 0: plan, dispatch, run stage 0 of pipeline 0, collect results, shut down. */
static brt_status run_coordinator(brt_node *n, brt_err *err)
{
    const int32_t dim = n->model.cfg.hidden, world = n->grid.world;
    const double timeout = n->o.timeout > 0 ? n->o.timeout : 600;
    brt_microbatch **local = calloc((size_t)n->max_inflight + 1, sizeof *local);
    if (!local)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    int32_t n_local = 0, res_cap = 0;
    brt_step_result *res = NULL;
    progress pg = {brt_now(), brt_now()};
    double last_msg = brt_now();
    brt_status st = BRT_OK;
    for (;;) {
        int busy = 0;
        /* 1. results and failures from the other ranks */
        while (n->tr && world > 1) {
            brt_msg m;
            int got;
            if ((st = n->tr->recv(n->tr, &m, 0, &got, err)) != BRT_OK)
                goto out;
            if (!got)
                break;
            busy = 1;
            last_msg = brt_now();
            st = coordinator_msg(n, &m, err);
            if (st != BRT_OK)
                goto out;
        }
        /* 2. plan and send what each pipeline can take */
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
        /* 3. this rank's own stage: oldest micro-batch first */
        if (n_local) {
            brt_microbatch *mb = local[0];
            memmove(local, local + 1, (size_t)--n_local * sizeof *local);
            if ((st = run_mb(n, mb, &res, &res_cap, err)) != BRT_OK)
                goto out;
            busy = 1;
        }
        report(n, &pg, 0);
        int inflight = 0;
        for (int32_t d = 0; d < n->grid.dp; d++)
            inflight += brt_sched_inflight(n->sched, d);
        if (brt_sched_idle(n->sched) && !inflight && !n_local)
            break;
        brt_node_keepalive(n);
        if (busy)
            continue;
        if (!n->tr || world == 1) {
            st = brt_errf(err, BRT_ERR_INTERNAL, "scheduler stalled with %lld of %lld jobs unfinished",
                          (long long)(brt_sched_jobs_total(n->sched) - brt_sched_jobs_finished(n->sched)),
                          (long long)brt_sched_jobs_total(n->sched));
            goto out;
        }
        /* nothing to do here: wait for a result (bounded) */
        set_status("waiting for results of %d micro-batches in flight", inflight);
        brt_msg m;
        int got;
        if ((st = n->tr->recv(n->tr, &m, 1.0, &got, err)) != BRT_OK)
            goto out;
        if (got) {
            last_msg = brt_now();
            if ((st = coordinator_msg(n, &m, err)) != BRT_OK)
                goto out;
        } else if (brt_now() - last_msg > timeout) {
            st = brt_errf(err, BRT_ERR_TIMEOUT,
                          "rank 0: no results for %.0fs with %d micro-batches in flight (a stage rank is stuck or "
                          "gone; --timeout to wait longer)",
                          timeout, inflight);
            goto out;
        }
    }
    report(n, &pg, 1);
    /* shut down: each pipeline's first stage passes it on after its last micro-batch */
    if (n->tr && world > 1) {
        set_status("shutting down");
        for (int32_t d = 0; d < n->grid.dp; d++) {
            int32_t first = brt_grid_rank_of(&n->grid, d, d == 0 ? 1 : 0);
            if (d == 0 && n->grid.pp == 1)
                continue;
            if ((st = n->tr->send(n->tr, first, BRT_TAG_SHUTDOWN, NULL, 0, NULL, 0, err)) != BRT_OK)
                goto out;
        }
        Brt__Trace **traces = calloc((size_t)world, sizeof *traces);
        Brt__Trace mine;
        trace_fill(n, &mine);
        traces[0] = &mine;
        int32_t have = 1;
        while (have < world) {
            brt_msg m;
            int got;
            if ((st = n->tr->recv(n->tr, &m, timeout, &got, err)) != BRT_OK)
                break;
            if (!got) {
                brt_log_warn("only %d of %d ranks reported at shutdown", have, world);
                break;
            }
            if (m.tag == BRT_TAG_TRACE) {
                Brt__Trace *t = brt__trace__unpack(NULL, m.hdr_len, m.hdr);
                if (t && t->rank > 0 && t->rank < world && !traces[t->rank]) {
                    traces[t->rank] = t;
                    have++;
                } else if (t)
                    brt__trace__free_unpacked(t, NULL);
            }
            free(m.buf);
        }
        Brt__Trace **list = calloc((size_t)world, sizeof *list);
        int32_t cnt = 0;
        for (int32_t r = 0; r < world; r++)
            if (traces[r])
                list[cnt++] = traces[r];
        summarize(n, list, cnt);
        free(list);
        free(mine.events);
        for (int32_t r = 1; r < world; r++)
            if (traces[r])
                brt__trace__free_unpacked(traces[r], NULL);
        free(traces);
    } else if (n->o.trace_path) {
        Brt__Trace mine, *one = &mine;
        trace_fill(n, &mine);
        summarize(n, &one, 1);
        free(mine.events);
    }
out:
    free(res); /* micro-batches still in `local` belong to the scheduler */
    free(local);
    return st;
}

/* Any other rank: run what the previous stage (or the coordinator) sends, until shutdown. */
static brt_status run_stage_rank(brt_node *n, brt_err *err)
{
    const int32_t dim = n->model.cfg.hidden;
    const double timeout = n->o.timeout > 0 ? n->o.timeout : 600;
    brt_step_result *res = NULL;
    int32_t res_cap = 0;
    brt_status st = BRT_OK;
    const int first = n->grid.my_pp == 0, last = n->grid.my_pp == n->grid.pp - 1;
    for (;;) {
        set_status("waiting for work from %s", first ? "the coordinator (rank 0)" : "the previous stage");
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
            trace_fill(n, &t);
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
            st = run_mb(n, mb, &res, &res_cap, err);
        brt_wire_free_mb(mb);
        if (st != BRT_OK)
            break;
    }
    free(res);
    return st;
}

void brt_node_keepalive(brt_node *n)
{
    if (!n->tr || n->grid.world == 1 || n->grid.rank != 0 || brt_now() - n->last_beat < HEARTBEAT_SECONDS)
        return;
    brt_err e;
    for (int32_t r = 1; r < n->grid.world; r++)
        n->tr->send(n->tr, r, BRT_TAG_HEARTBEAT, NULL, 0, NULL, 0, &e); /* a dead peer shows up later */
    n->last_beat = brt_now();
}

void brt_node_abort_others(brt_node *n)
{
    if (n && n->tr && n->grid.world > 1)
        abort_job(n, "rank 0 failed before the run (see above)");
}

brt_status brt_node_run(brt_node *n, brt_err *err)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    brt_status st = n->grid.rank == 0 ? run_coordinator(n, err) : run_stage_rank(n, err);
    if (st != BRT_OK && n->tr && n->grid.world > 1) {
        char what[BRT_ERR_MSG_MAX + 64];
        snprintf(what, sizeof what, "%s", err->msg);
        abort_job(n, what);
    }
    return st;
}
