/* One rank of a beaconrt job: its place in the grid, the model, the compute backend, its stage
 * and (on world rank 0) the coordinator's scheduler. brt_node_run drives the rank's role until
 * every submitted job has finished: rank 0 plans micro-batches, runs stage 0 of pipeline 0 and
 * collects results; the other ranks run their stage on what their predecessor sends. With one
 * rank nothing leaves the process. */
#ifndef BRT_NODE_H
#define BRT_NODE_H

#include <stdint.h>

#include "cache/store.h"
#include "cluster/grid.h"
#include "cluster/transport.h"
#include "engine/stage.h"
#include "model/model.h"
#include "sched/sched.h"

typedef struct brt_node_opts {
    const char *model_dir;
    const json_t *overrides;  /* config keys (policy knobs) */
    int need_tokenizer;
    int threads;              /* kernel threads per rank (0 = cores / ranks on the node) */
    const char *isa;          /* NULL = best */
    const char *device;       /* "cpu" (NULL) or "cuda": every rank computes there */
    const char *precision;    /* CUDA: "bf16" (NULL) or "f32" */
    int32_t pp, dp;           /* 0 = one pipeline of all ranks */
    int64_t kv_budget;        /* bytes of KV state per stage (0 = from the machine's memory) */
    int32_t max_rows;         /* rows per micro-batch (0 = default) */
    int32_t max_inflight;     /* micro-batches in flight per pipeline (0 = 2 x stages) */
    int32_t prefill_chunk;    /* full policy: rows per prefill step (0 = 512) */
    int32_t max_jobs;         /* jobs running at once per pipeline (0 = 64) */
    double timeout;           /* seconds a rank waits for a peer before failing (0 = 600) */
    int progress;             /* print progress lines on stderr */
    const char *trace_path;   /* write per-micro-batch timings of every rank here (rank 0) */
    /* state cache (runtime/cache): 0 / NULL = that tier is off */
    int64_t cache_dev_bytes;  /* per stage, in the backend's memory (GPU memory with cuda) */
    int64_t cache_host_bytes; /* per stage, in host memory */
    const char *cache_dir;    /* the disk tier's folder */
    int64_t cache_disk_bytes; /* per stage on disk (0 with a folder: 64 GiB) */
    int32_t checkpoint_every; /* write a job's state to disk every N prefill steps (0: only on SIGTERM) */
} brt_node_opts;

typedef void (*brt_token_fn)(void *ctx, brt_job *job, int32_t token);

typedef struct brt_node {
    brt_node_opts o;
    brt_grid grid;
    brt_model model;
    brt_backend *be;
    brt_stage *stage;
    brt_sched *sched;         /* rank 0 only */
    brt_transport *tr;        /* NULL with one rank */
    int32_t max_rows, max_inflight, prefill_chunk, block_bytes;
    int64_t kv_budget;        /* this rank's stage */
    int64_t kv_budget_min;    /* the smallest of all stages (rank 0, for admission) */
    int64_t weight_bytes;     /* this rank's layers */
    double t_start;
    double last_beat;         /* rank 0: when the last heartbeat went out */
    int link;                 /* this rank's pipeline moves hidden states over the device link */
    brt_source *sources[4];   /* rank 0: where jobs come from (brt_node_add_source) */
    int n_sources;
    int graceful;             /* the first SIGTERM/SIGINT asks the sources to stop and the jobs to end
                                 within drain_seconds (serve); the stage ranks wait for rank 0 */
    double drain_seconds;     /* rank 0, graceful: then cancel what is still running */
    double drain_end;         /* rank 0: when the drain ends (0: not draining) */
    int stop_phase;           /* rank 0, stopping with a disk tier: 1 waiting for the micro-batches in
                                 flight, 2 waiting for the checkpoints, 3 done */
    int32_t checkpointed;     /* jobs whose state was kept on disk when the run stopped */
    brt_state_store *store;   /* this stage's share of the state cache (NULL: no cache) */
    brt_cache_key cache_settings; /* what every state image depends on besides its steps */
    brt_stage_stat stats[64]; /* rank 0: every stage's newest figures (from results) */
    int n_stats;
    volatile int stop_signal; /* the signal that asked it (0: none) */
    int32_t gpu;              /* the GPU this rank computes on (-1: none) */
    struct brt_trace_buf *trace;
} brt_node;

/* Collective: every rank calls it; ranks check they run the same model config and layer split. */
brt_status brt_node_open(const brt_node_opts *o, brt_transport *tr, brt_node **out, brt_err *err);
/* Rank 0: create the scheduler (jobs are then submitted with brt_sched_submit(node->sched...)).
 * free_done: jobs are freed once on_done has seen them (batch runs). */
brt_status brt_node_start_sched(brt_node *n, brt_job_done_fn on_done, void *ctx, brt_err *err);
brt_status brt_node_start_sched_ex(brt_node *n, brt_job_done_fn on_done, void *ctx, int free_done, brt_err *err);
/* Rank 0: a job source the run polls (at most 4). */
brt_status brt_node_add_source(brt_node *n, brt_source *src, brt_err *err);
/* Every rank: run until every source is closed and every job has ended (rank 0), or until rank 0
 * says stop (the others). */
brt_status brt_node_run(brt_node *n, brt_err *err);
/* Rank 0, during long work before brt_node_run (reading and tokenizing a large batch): keep the
 * waiting ranks from timing out (sends a heartbeat at most every few seconds). */
void brt_node_keepalive(brt_node *n);
/* Rank 0 failed before or outside brt_node_run: bring the other ranks down now (no return when
 * there are others). */
void brt_node_abort_others(brt_node *n);
void brt_node_close(brt_node *n);

/* Collective start-up (startup.c): the handshake and the pipelines' device links. */
brt_status brt_node_startup(brt_node *n, int32_t gpu, brt_err *err);

/* Defaults shared with `beaconrt plan`. */
int64_t brt_node_default_kv_budget(int32_t local_ranks, int64_t weight_bytes);
/* A GPU's: its share of the card's memory (ranks_on_gpu share it) less what the rank holds there
 * (weights, activations, workspaces) and a reserve for the CUDA context and growing scratch. */
int64_t brt_node_gpu_kv_budget(int64_t gpu_total_bytes, int32_t ranks_on_gpu, int64_t held_bytes);
int32_t brt_node_block_bytes(const brt_model_config *cfg);

#endif
