#include "dist/node.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "engine/policy.h"

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

brt_status brt_node_open(const brt_node_opts *o, brt_transport *tr, brt_node **out, brt_err *err)
{
    *out = NULL;
    brt_node *n = calloc(1, sizeof *n);
    if (!n)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    n->o = *o;
    n->tr = tr;
    brt_status st = brt_model_open(o->model_dir, o->overrides, o->need_tokenizer, &n->model, err);
    if (st != BRT_OK) {
        free(n);
        return st;
    }
    const brt_model_config *cfg = &n->model.cfg;
    int32_t world = tr ? tr->world : 1, rank = tr ? tr->rank : 0;
    st = brt_grid_init(&n->grid, world, rank, o->pp, o->dp, cfg, err);
    if (st != BRT_OK)
        goto fail;
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
    int64_t wbytes = 0;
    for (int32_t l = a; l < b; l++)
        wbytes += brt_weights_layer_bytes(&n->model.files, cfg, l);
    n->kv_budget = o->kv_budget > 0 ? o->kv_budget : brt_node_default_kv_budget(n->grid.local_size, wbytes);
    int threads = o->threads;
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores > 0 ? cores : 1) / (n->grid.local_size > 0 ? n->grid.local_size : 1);
        if (threads < 1)
            threads = 1;
    }
    n->be = brt_cpu_backend_create(threads, o->isa);
    if (!n->be) {
        st = brt_errf(err, BRT_ERR_UNSUPPORTED, "CPU kernels for instruction set '%s' are not available here",
                      o->isa ? o->isa : "?");
        goto fail;
    }
    brt_stage_opts so = {cfg, &n->model.files, a, b, s == 0, s == n->grid.pp - 1, n->be, n->kv_budget,
                         n->block_bytes, n->max_rows};
    st = brt_stage_create(&so, &n->stage, err);
    if (st != BRT_OK)
        goto fail;
    *out = n;
    return BRT_OK;
fail:
    brt_node_close(n);
    return st;
}

brt_status brt_node_start_sched(brt_node *n, brt_job_done_fn on_done, void *ctx, brt_err *err)
{
    if (n->grid.rank != 0)
        return BRT_OK;
    brt_sched_opts so = {&n->model.cfg, n->model.tok, n->grid.dp, n->grid.pp, n->grid.layers, n->kv_budget,
                         n->block_bytes, n->max_rows, n->max_inflight, n->prefill_chunk, on_done, ctx};
    return brt_sched_create(&so, &n->sched, err);
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
    free(n);
}

typedef struct progress {
    double t0, last;
    int64_t tok0;
} progress;

static void report(brt_node *n, progress *pg, int force)
{
    double now = brt_now();
    if (!n->o.progress || (!force && now - pg->last < 2.0))
        return;
    pg->last = now;
    int64_t done = brt_sched_jobs_finished(n->sched), total = brt_sched_jobs_total(n->sched);
    int64_t tp = brt_sched_tokens_processed(n->sched), tt = brt_sched_tokens_total(n->sched);
    double el = now - pg->t0, rate = el > 0 ? (tp - pg->tok0) / el : 0;
    double eta = rate > 0 && tt > tp ? (tt - tp) / rate : 0;
    brt_log_info("progress: jobs %lld/%lld done, tokens %lld/%lld (%.0f tok/s), elapsed %.0fs, ETA %.0fs",
                 (long long)done, (long long)total, (long long)tp, (long long)tt, rate, el, eta);
}

/* One rank does it all: plan, run every layer, take the results. */
static brt_status run_single(brt_node *n, brt_err *err)
{
    const int32_t dim = n->model.cfg.hidden;
    float *hidden = malloc((size_t)n->max_rows * dim * sizeof(float));
    if (!hidden)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    progress pg = {brt_now(), brt_now(), 0};
    brt_status st = BRT_OK;
    brt_step_result *res = NULL;
    int32_t res_cap = 0;
    for (;;) {
        brt_microbatch *mb;
        if (!brt_sched_next(n->sched, 0, &mb) && !brt_sched_pending_release(n->sched, 0, &mb)) {
            if (!brt_sched_idle(n->sched))
                st = brt_errf(err, BRT_ERR_INTERNAL, "scheduler stalled with %lld of %lld jobs unfinished",
                              (long long)(brt_sched_jobs_total(n->sched) - brt_sched_jobs_finished(n->sched)),
                              (long long)brt_sched_jobs_total(n->sched));
            break;
        }
        if (mb->n_steps > res_cap) {
            res_cap = mb->n_steps * 2;
            brt_step_result *nr = realloc(res, (size_t)res_cap * sizeof *res);
            if (!nr) {
                st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
                break;
            }
            res = nr;
        }
        st = brt_stage_forward(n->stage, mb, hidden, res, err);
        if (st != BRT_OK)
            break;
        int32_t ns = mb->n_steps;
        st = brt_sched_results(n->sched, mb->id, res, ns, err);
        for (int32_t i = 0; i < ns; i++)
            brt_step_result_free(&res[i]);
        if (st != BRT_OK)
            break;
        report(n, &pg, 0);
    }
    report(n, &pg, 1);
    free(res);
    free(hidden);
    return st;
}

brt_status brt_node_run(brt_node *n, brt_err *err)
{
    if (n->grid.world == 1)
        return run_single(n, err);
    return brt_errf(err, BRT_ERR_UNSUPPORTED, "multi-rank runs need the MPI transport");
}
