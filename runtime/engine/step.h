/* The unit of work: a step is one job's next chunk (a window or part of one, plus the beacon
 * slots the policy adds, or one decode token). Steps of many jobs are packed into a micro-batch
 * whose rows go through every projection and MLP as one GEMM; attention runs per step against
 * that job's own context. The coordinator's planner fills steps; every stage applies them to
 * the state of its own layers. */
#ifndef BRT_STEP_H
#define BRT_STEP_H

#include <stdint.h>

#include "base/status.h"
#include "kernels.h"

enum brt_step_flags {
    BRT_STEP_FULL_WINDOW = 1u, /* beacon: the step completes a window (condense) */
    BRT_STEP_NO_CACHE = 2u,    /* fot: NO-CACHE mode (memory layers append after attention) */
    BRT_STEP_FLUSH = 4u,       /* fot: flush the local cache (into memory) before attention */
    BRT_STEP_RAW_TO_MEM = 8u,  /* beacon ratio 0: raw slots become memory */
    BRT_STEP_FAILED = 16u,     /* an earlier stage failed this job: skip its state */
};

enum brt_logits_mode {
    BRT_LOGITS_NONE = 0,
    BRT_LOGITS_SAMPLE = 1, /* last raw row: sample the next token */
    BRT_LOGITS_SCORE = 2,  /* every raw row: logprob of the next prompt token (+ top-k) */
    BRT_LOGITS_FULL = 4,   /* every raw row: the whole logit vector (beaconrt logits) */
};

enum brt_row_kind { BRT_ROW_RAW = 0, BRT_ROW_BEACON = 1 };

typedef struct brt_step {
    uint64_t job;
    uint32_t index;        /* step number within the job, from 0 */
    int32_t n_rows;        /* rows of the step (raw + beacon) */
    int32_t n_raw;
    int32_t ratio;         /* beacon: condensing ratio of the window (0 = keep raw) */
    int32_t k;             /* beacon v1/append: beacon rows appended (-1: ratio 0 on a full window) */
    int32_t keep;          /* beacon v1: raw slots kept after a full window (W - S) */
    int32_t span;          /* beacon: raw tokens per beacon in the mask rule */
    int32_t sink_take;     /* beacon v2: overwrite the sink with the first sink_take slots */
    uint32_t flags;        /* brt_step_flags */
    int32_t expect_sink, expect_mem, expect_raw; /* state sizes before the step (checked) */
    uint32_t logits;       /* brt_logits_mode */
    int32_t top_k;         /* alternatives per scored/sampled row (0..20) */
    float temperature, top_p;
    uint64_t seed;         /* sampling: the job's seed */
    uint32_t draw;         /* sampling: tokens the job generated before this one (the draw's index,
                              so that a job samples the same tokens whatever its steps) */
    int32_t *tokens;       /* [n_rows] token ids (-1 for beacon rows) */
    int32_t *pos;          /* [n_rows] RoPE position of each row in this step */
    uint8_t *kind;         /* [n_rows] brt_row_kind */
    int32_t *target;       /* [n_rows] next prompt token for SCORE rows, else -1 */
    char error[200];       /* why the step failed (with BRT_STEP_FAILED) */
} brt_step;

/* A stage's figures as a micro-batch leaves it (the coordinator's /metrics). */
typedef struct brt_stage_stat {
    int32_t rank, pipeline, stage;
    double busy_s, wall_s;
    int64_t kv_used, kv_budget;
} brt_stage_stat;

#define BRT_MB_STATS 32 /* stages whose figures a micro-batch carries */

/* State-cache work a micro-batch carries to every stage of its pipeline (runtime/cache). */
enum brt_cache_op_kind {
    BRT_CACHE_SAVE = 1,       /* after the steps: keep the job's state under key in op tier */
    BRT_CACHE_LOAD = 2,       /* before the steps: give the job the state kept under key (the
                                 nearest tier that has it: device, host, disk) */
    BRT_CACHE_DROP_HOST = 3,
    BRT_CACHE_DROP_DISK = 4,
    BRT_CACHE_DEMOTE = 5,     /* write the host copy to disk, then drop it from host memory */
    BRT_CACHE_DROP_DEV = 6,
    BRT_CACHE_DEMOTE_DEV = 7, /* write the device copy to op tier (host or disk), then drop it */
    BRT_CACHE_KIND_LAST = BRT_CACHE_DEMOTE_DEV,
};
/* device: the backend's own memory (GPU memory with the CUDA backend) */
enum { BRT_TIER_HOST = 1, BRT_TIER_DISK = 2, BRT_TIER_DEVICE = 3 };

typedef struct brt_cache_op {
    uint32_t kind, tier;
    uint64_t job;
    uint8_t key[16];
} brt_cache_op;

/* What one stage made of one op. */
typedef struct brt_cache_report {
    uint32_t kind;
    uint32_t tier;            /* the op's */
    uint8_t key[16];
    uint64_t job;
    int32_t stage;
    int32_t ok;
    int64_t bytes;
    char error[160];
} brt_cache_report;

/* A micro-batch: steps of distinct jobs, rows concatenated in step order. */
typedef struct brt_microbatch {
    uint64_t id;
    int32_t pipeline;      /* data-parallel replica it runs on */
    int32_t n_steps;
    brt_step *steps;
    int32_t n_rows;
    int32_t n_release;
    uint64_t *release;     /* jobs whose state every stage frees before running the steps */
    int32_t device_payload;/* on the wire: the hidden states follow over the device link */
    brt_stage_stat stats[BRT_MB_STATS]; /* the stages it went through */
    int32_t n_stats;
    brt_cache_op *cache_ops;   /* [n_cache_ops] */
    int32_t n_cache_ops;
    brt_cache_report *reports; /* [n_reports] every stage's, appended as it passes */
    int32_t n_reports, cap_reports;
} brt_microbatch;

/* What the last stage returns for one step (brt_tok_lp: kernels.h). */

typedef struct brt_step_result {
    uint64_t job;
    uint32_t index;
    int32_t failed;
    char error[256];
    /* SAMPLE: the next token */
    int32_t sampled;
    float sampled_logprob;
    brt_tok_lp *sampled_top;  /* [top_k] */
    /* SCORE: per raw row, the logprob of its target (NaN when none) and top-k */
    int32_t n_scored;
    float *target_logprob;    /* [n_scored] */
    brt_tok_lp *scored_top;   /* [n_scored * top_k] */
    int32_t top_k;
    /* FULL: per raw row, the logits */
    int32_t n_full, vocab;
    float *full;              /* [n_full * vocab] */
} brt_step_result;

void brt_step_result_free(brt_step_result *r);

#endif
