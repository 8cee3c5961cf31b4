/* One rank of a job: set-up and teardown (the model, the grid, the backend, the stage, the KV
 * budget, the start-up handshake), and running its role. */
#include "cluster/node.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cluster/node_impl.h"
#include "cluster/wire.h"
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

#define GPU_RESERVE ((int64_t)2 << 30)
int64_t brt_node_gpu_kv_budget(int64_t total, int32_t ranks_on_gpu, int64_t held)
{
    return (int64_t)(total * 0.92) / (ranks_on_gpu > 0 ? ranks_on_gpu : 1) - held - GPU_RESERVE;
}

static void kept_free(void *stage, void *kept) { brt_stage_kept_free(stage, kept); }

/* This rank's KV budget on its GPU, once its weights and buffers are there. */
static brt_status gpu_kv_budget(brt_node *n, int gpus, brt_err *err)
{
    int64_t fr, tot;
    n->be->memory(n->be, &fr, &tot);
    const int32_t lr = n->grid.local_rank, ls = n->grid.local_size > 0 ? n->grid.local_size : 1;
    int32_t share = 0;
    for (int32_t r = 0; r < ls; r++)
        share += r % gpus == lr % gpus;
    /* the state cache's device tier comes out of what the weights and buffers leave */
    const int64_t budget = brt_node_gpu_kv_budget(tot, share, n->be->held) - n->o.cache_dev_bytes;
    if (budget < ((int64_t)256 << 20))
        return brt_errf(err, BRT_ERR_CAPACITY,
                        "rank %d on %s: %.0f MiB of the GPU's %.0f MiB (shared by %d ranks) is left for long-context "
                        "state after this stage's weights and buffers (%.0f MiB) and the state cache's device tier (%.0f "
                        "MiB): use more pipeline stages, fewer ranks per GPU, a smaller --max-rows or "
                        "--state-cache-device-mb",
                        n->grid.rank, n->be->name, budget / 1048576.0, tot / 1048576.0, share, n->be->held / 1048576.0,
                        n->o.cache_dev_bytes / 1048576.0);
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
    const int rank0 = tr ? tr->rank : 0;
    brt_rank_status_init(rank0);
    brt_log_set_rank(rank0, tr ? tr->world : 1);
    brt_rank_status("loading %s", o->model_dir);
    brt_status st = brt_model_open(o->model_dir, o->overrides, o->need_tokenizer && rank0 == 0, &n->model, err);
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
    if (threads <= 0) /* what the allocation gives this rank, not the node's core count */
        threads = tr ? tr->cpus : brt_affinity_cpus();
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
    if (o->cache_dev_bytes > 0 || o->cache_host_bytes > 0 || (o->cache_dir && *o->cache_dir)) {
        /* what every state image depends on besides its steps: the model and policy, the state's
         * dtype and the backend that computes (kernels of another ISA or device round differently) */
        struct {
            brt_model_config cfg;
            int32_t dtype;
            char backend[64];
            uint32_t numerics; /* this build's kernels: a state from another rounds differently */
        } settings;
        memset(&settings, 0, sizeof settings);
        settings.cfg = n->model.cfg;
        settings.numerics = BRT_KERNELS_NUMERICS;
        settings.dtype = (int32_t)n->be->state_dtype;
        const char *bn = n->be->name; /* "cuda:3 (NVIDIA H100 ...)": the same GPU kind whatever its index */
        if (!strncmp(bn, "cuda:", 5)) {
            const char *rest = bn + 5;
            while (*rest >= '0' && *rest <= '9')
                rest++;
            snprintf(settings.backend, sizeof settings.backend, "cuda%s", rest);
        } else
            snprintf(settings.backend, sizeof settings.backend, "%s", bn);
        n->cache_settings = brt_key_settings(&settings, sizeof settings);
        brt_state_store_opts co = {o->cache_dir && *o->cache_dir ? o->cache_dir : NULL, n->cache_settings, a, b,
                                   kept_free, n->stage};
        if ((st = brt_stage_keep_pool(n->stage, o->cache_dev_bytes, err)) != BRT_OK ||
            (st = brt_state_store_open(&co, &n->store, err)) != BRT_OK)
            goto fail;
    }
    if (o->trace_path) /* every rank gets the same options: all record, rank 0 writes */
        brt_trace_start(n);
    n->kv_budget_min = n->kv_budget;
    if (tr && world > 1) {
        brt_rank_status("in the start-up handshake");
        st = brt_node_startup(n, n->gpu, err);
        if (st != BRT_OK)
            goto fail;
    }
    brt_log_debug("stage %d of pipeline %d: layers %d-%d, %d threads, KV budget %.0f MiB", s, n->grid.my_dp, a, b - 1,
                  n->be->n_threads, n->kv_budget / 1048576.0);
    brt_rank_status("idle");
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
    brt_sched_opts so = {.cfg = &n->model.cfg,
                         .tok = n->model.tok,
                         .n_pipelines = n->grid.dp,
                         .n_stages = n->grid.pp,
                         .stage_layers = n->grid.layers,
                         .stage_budget = n->kv_budget_min,
                         .block_bytes = n->block_bytes,
                         .state_dtype = n->be->state_dtype,
                         .max_rows = n->max_rows,
                         .max_inflight = n->max_inflight,
                         .prefill_chunk = n->prefill_chunk,
                         .max_jobs = n->o.max_jobs,
                         .on_done = on_done,
                         .on_done_ctx = ctx,
                         .free_done = free_done,
                         .cache_dev_bytes = n->o.cache_dev_bytes,
                         .cache_host_bytes = n->o.cache_host_bytes,
                         .cache_disk_bytes = n->o.cache_disk_bytes,
                         .cache_dir = n->o.cache_dir,
                         .cache_settings = n->cache_settings,
                         .checkpoint_every = n->o.checkpoint_every};
    return brt_sched_create(&so, &n->sched, err);
}

brt_status brt_node_start_sched(brt_node *n, brt_job_done_fn on_done, void *ctx, brt_err *err)
{
    return brt_node_start_sched_ex(n, on_done, ctx, 0, err);
}

brt_status brt_node_add_source(brt_node *n, brt_source *src, brt_err *err)
{
    if (n->n_sources == (int)(sizeof n->sources / sizeof n->sources[0]))
        return brt_errf(err, BRT_ERR_INTERNAL, "too many job sources");
    n->sources[n->n_sources++] = src;
    return BRT_OK;
}

void brt_node_close(brt_node *n)
{
    if (!n)
        return;
    brt_sched_destroy(n->sched);
    brt_state_store_close(n->store);
    brt_stage_destroy(n->stage);
    if (n->be)
        n->be->destroy(n->be);
    brt_model_close(&n->model);
    brt_trace_free(n);
    free(n);
}

void brt_node_keepalive(brt_node *n)
{
    if (!n->tr || n->grid.world == 1 || n->grid.rank != 0 || brt_now() - n->last_beat < BRT_HEARTBEAT_SECONDS)
        return;
    brt_err e;
    for (int32_t r = 1; r < n->grid.world; r++)
        n->tr->send(n->tr, r, BRT_TAG_HEARTBEAT, NULL, 0, NULL, 0, &e); /* a dead peer shows up later */
    n->last_beat = brt_now();
}

void brt_node_abort_others(brt_node *n)
{
    if (n && n->tr && n->grid.world > 1)
        brt_node_abort_job(n, "rank 0 failed before the run (see above)");
}

brt_status brt_node_run(brt_node *n, brt_err *err)
{
    brt_rank_signals(n->graceful ? &n->stop_signal : NULL); /* stage ranks: rank 0 drains, then stops them */
    brt_status st = n->grid.rank == 0 ? brt_node_run_coordinator(n, err) : brt_node_run_stage_rank(n, err);
    if (st != BRT_OK && n->tr && n->grid.world > 1) {
        char what[BRT_ERR_MSG_MAX + 64];
        snprintf(what, sizeof what, "%s", err->msg);
        brt_node_abort_job(n, what);
    }
    return st;
}
