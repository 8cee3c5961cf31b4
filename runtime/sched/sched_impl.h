/* The scheduler's insides, shared by its files (internal to runtime/sched): sched.c (jobs,
 * admission, packing, results) and sched_cache.c (the state cache's part in them). */
#ifndef BRT_SCHED_IMPL_H
#define BRT_SCHED_IMPL_H

#include "base/u64map.h"
#include "cache/index.h"
#include "sched/sched.h"

typedef struct pipeline {
    brt_job *active;        /* circular list of running jobs */
    int32_t n_active;
    int64_t load;           /* tokens of its running jobs still to plan or generate */
    int64_t tokens;         /* tokens planned on it so far */
    int32_t inflight;
    int64_t *used;          /* [n_stages] reserved bytes */
    uint64_t *release;
    int32_t n_release, cap_release;
    brt_cache_op *ops;      /* state-cache ops for its next micro-batch */
    int32_t n_ops, cap_ops;
} pipeline;

struct brt_sched {
    brt_sched_opts o;
    brt_model_config cfg;
    const brt_policy_ops *pol;
    brt_job **jobs;         /* [n_slots] jobs not yet freed, submission order (NULL: freed, until
                               compacted so that a server's array stays the size of its live jobs) */
    int64_t n_slots, cap_slots, next_queued;
    int64_t n_jobs, n_finished, n_running; /* submitted ever, ended, running */
    brt_u64map by_id;
    brt_u64map inflight;    /* micro-batch id -> brt_microbatch */
    pipeline *pipes;
    uint64_t next_job_id, next_mb_id;
    int64_t tokens_planned, tokens_total, tokens_done;
    int32_t max_step_rows;
    brt_err halt;           /* status != OK: brt_sched_halt was called */
    brt_cache_index *cache; /* NULL: no state cache */
    int stopping;           /* plan no more steps (a run checkpointing its jobs before it stops) */
};


/* State cache (sched_cache.c). */
/* A job was admitted to its pipeline: look its prompt up (a hit starts it from the cached state,
 * after a load) and decide where its state is worth keeping. */
void brt_sc_admitted(brt_sched *s, brt_job *j);
/* A step of j was planned into a micro-batch of pipeline p: extend its key, queue saves. */
void brt_sc_planned(brt_sched *s, brt_job *j, const brt_step *st);
/* Queue an op for pipeline p's next micro-batch; -1 out of memory. */
int brt_sc_queue(brt_sched *s, int32_t p, uint32_t kind, uint32_t tier, uint64_t job, const brt_cache_key *k);

#endif
