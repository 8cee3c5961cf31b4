/* The coordinator's scheduler: jobs, admission, micro-batch packing, results. It knows nothing
 * of transport: a driver asks it for the next micro-batch of a pipeline, delivers that
 * micro-batch to the pipeline's first stage (in-process or over MPI) and hands back the last
 * stage's results.
 *
 * Admission is exact: a job's worst-case state on every stage is computed from its length
 * (running the planner over prompt + max_tokens), and the job starts only when every stage of
 * a pipeline has that room; a job that can never fit is failed with the bytes it needs.
 * Packing: decode steps first (they are latency bound), then prefill windows, one step per job
 * per micro-batch; a job's next prefill window is planned as soon as the previous one has left
 * (wavefront), decode steps wait for their token. */
#ifndef BRT_SCHED_H
#define BRT_SCHED_H

#include <stdint.h>

#include "base/buf.h"
#include "engine/policy.h"
#include "engine/step.h"
#include "cache/index.h"
#include "cache/key.h"
#include "model/config.h"
#include "model/tokenizer.h"
#include "sched/source.h"

typedef struct brt_sched brt_sched;

#define BRT_MAX_JOB_TOKENS (1 << 24) /* prompt + generated tokens of one job (16M) */

typedef struct brt_job_spec {
    const char *name;          /* custom_id, for messages */
    const int32_t *prompt;     /* copied */
    int64_t prompt_len;
    int32_t max_new;           /* tokens to generate (0 = score only) */
    float temperature, top_p;
    uint64_t seed;
    int32_t logprobs;          /* -1: none; else top alternatives (0..20) per token */
    int echo;                  /* score the prompt tokens too */
    int full_logits;           /* keep every prompt row's logits (beaconrt logits) */
    int ignore_eos;
    const char *const *stop;   /* stop strings (needs a tokenizer) */
    int n_stop;
    void *user;                /* returned with the job */
    brt_source *source;        /* told of the job's tokens and end; NULL: the scheduler's on_done */
    int32_t stop_ids[4];       /* [n_stop_ids] tokens besides EOS that end generation (a chat turn's end) */
    int n_stop_ids;
} brt_job_spec;

#define BRT_JOB_STOP_IDS 4

typedef enum { BRT_JOB_QUEUED = 0, BRT_JOB_RUNNING, BRT_JOB_DONE, BRT_JOB_FAILED, BRT_JOB_CANCELLED } brt_job_status;

typedef struct brt_job {
    uint64_t id;
    char *name;
    void *user;
    brt_source *source;
    brt_job_status status;
    brt_status err_status;
    char error[512];
    int32_t pipeline;
    /* stream: prompt then generated tokens */
    int32_t *tokens;
    int64_t n_tokens, cap_tokens, prompt_len;
    int32_t max_new, n_gen;
    int32_t cap_gen;            /* room in gen_logprob/gen_top (grows as tokens come: a request may ask
                                   for millions and stop after ten) */
    float temperature, top_p;
    uint64_t seed;
    int32_t logprobs, echo, full_logits, ignore_eos;
    char **stop;
    int n_stop;
    int32_t stop_ids[BRT_JOB_STOP_IDS]; /* -1 unused */
    const char *finish_reason;  /* "length" | "stop" */
    int64_t text_cut;           /* bytes of generated text to keep when a stop string matched (-1: all) */
    brt_buf gen_text;           /* the generated text so far (only with stop strings) */
    /* outputs */
    float *gen_logprob;         /* [cap_gen] */
    brt_tok_lp *gen_top;        /* [cap_gen * k] */
    float *prompt_logprob;      /* [prompt_len], [0] = NaN */
    brt_tok_lp *prompt_top;     /* [prompt_len * k] */
    float *full;                /* [prompt_len * vocab] */
    int64_t full_rows;
    /* scheduling */
    brt_plan plan;
    int32_t inflight;           /* steps sent, results not back */
    int64_t scored;             /* prompt rows scored so far */
    int64_t *reserved;          /* [n_stages] bytes */
    double t_admit, t_first, t_done;
    int64_t slot;               /* index in the scheduler's job list */
    int64_t work_left;          /* tokens still to plan or generate (counted in its pipeline's load) */
    int64_t tokens_done;        /* rows whose results came back */
    struct brt_job *next_active, *prev_active;
    /* state cache */
    brt_key_chain chain;        /* the key of the steps planned so far */
    int restoring;              /* a load of cached state is in flight: nothing is planned meanwhile */
    int restore_dev;            /* ... from a copy in device memory */
    brt_cache_key restore_key;
    int64_t cached_tokens;      /* prompt tokens taken from the cache instead of computed */
    int32_t save_index[2];      /* keep the state after these steps (-1: none): the deepest step a longer
                                   prompt would share, and the one before (when a question crosses a
                                   window boundary, the deepest holds some of it; the one before is
                                   still the document alone) */
    int has_ckpt;               /* ckpt_key: its newest mid-document checkpoint */
    brt_cache_key ckpt_key;
    int no_cache;               /* every prompt row must be computed (scores, logits): no lookup */
} brt_job;

typedef void (*brt_job_done_fn)(void *ctx, brt_job *job);

typedef struct brt_sched_opts {
    const brt_model_config *cfg;
    const brt_tokenizer *tok;   /* for stop strings; may be NULL */
    int32_t n_pipelines, n_stages;
    const int32_t *stage_layers;/* [n_stages + 1] boundaries */
    int64_t stage_budget;       /* KV bytes per stage */
    int32_t block_bytes;
    brt_dtype state_dtype;      /* what the stages keep state in (their backend's) */
    int32_t max_rows;           /* rows per micro-batch */
    int32_t max_inflight;       /* micro-batches in flight per pipeline */
    int32_t prefill_chunk;      /* rows per prefill step of the full policy */
    int32_t max_jobs;           /* jobs running at once per pipeline (admission stops there) */
    brt_job_done_fn on_done;
    void *on_done_ctx;
    int free_done;              /* free a job once on_done has seen it (batch runs: memory stays flat) */
    /* state cache: device (the backend's memory), host and disk (dir) tiers per stage; all 0/NULL:
     * no cache */
    int64_t cache_dev_bytes, cache_host_bytes, cache_disk_bytes;
    const char *cache_dir;
    brt_cache_key cache_settings;
    int32_t checkpoint_every;   /* keep a job's state on disk every N prefill steps (0: no) */
} brt_sched_opts;

brt_status brt_sched_create(const brt_sched_opts *o, brt_sched **out, brt_err *err);
void brt_sched_destroy(brt_sched *s);

/* Add a job. Bad parameters or a job that can never fit fail it at once (on_done is called
 * with status FAILED; with free_done, *out is then NULL); only allocation failures of the
 * scheduler itself fail the call. */
brt_status brt_sched_submit(brt_sched *s, const brt_job_spec *spec, brt_job **out, brt_err *err);
/* Does this token end the job's generation (EOS unless ignored, or one of its stop ids)? */
int brt_job_is_stop_token(const brt_sched *s, const brt_job *job, int32_t token);

/* The next micro-batch for a pipeline (0 = nothing to send now). The micro-batch stays owned by
 * the scheduler until its results come back (or brt_sched_abandon). */
int brt_sched_next(brt_sched *s, int32_t pipeline, brt_microbatch **mb);
/* Results of a micro-batch from the pipeline's last stage (one per step, in step order). */
brt_status brt_sched_results(brt_sched *s, uint64_t mb_id, brt_step_result *res, int32_t n, brt_err *err);
/* Cancel a job (its client went away): a queued job never starts, a running one stops and its
 * state is freed on every stage with the pipeline's next micro-batch. Its source's on_done sees
 * status BRT_JOB_CANCELLED. BRT_ERR_NOT_FOUND when the job has ended already. */
brt_status brt_sched_cancel(brt_sched *s, uint64_t job_id, brt_err *err);
/* Cancel every job that has not ended (a server's drain is over); returns how many. */
int64_t brt_sched_cancel_all(brt_sched *s);
/* Cancel the jobs of one source that have not started; returns how many. */
int64_t brt_sched_cancel_queued(brt_sched *s, const brt_source *src);
/* The stages' state-cache reports of a micro-batch (before its brt_sched_results). */
void brt_sched_cache_reports(brt_sched *s, uint64_t mb_id, const brt_cache_report *r, int32_t n);
/* Stop planning steps (the run is stopping); ops and releases still go out. */
void brt_sched_stop_planning(brt_sched *s);
/* Keep every running job's state on disk at the step it has reached (a mid-document checkpoint
 * before the run stops): call with nothing in flight; returns how many saves were queued. */
int32_t brt_sched_checkpoint_all(brt_sched *s);
/* Saves and loads still in flight (0: the cache is settled). */
int32_t brt_sched_cache_pending(const brt_sched *s);
/* The state cache's counters (NULL: no cache). */
const brt_cache_counters *brt_sched_cache_counters(const brt_sched *s);

/* Ends the run from an on_done callback that cannot keep a result (the output cannot be
 * written): the brt_sched_results call that finished the job returns this error, so the driver
 * stops instead of computing results that would be lost. The first halt wins. */
void brt_sched_halt(brt_sched *s, const brt_err *why);

int64_t brt_sched_jobs_total(const brt_sched *s);
int64_t brt_sched_jobs_finished(const brt_sched *s);
int64_t brt_sched_jobs_queued(const brt_sched *s);  /* submitted, not admitted yet */
int64_t brt_sched_jobs_running(const brt_sched *s);
/* Tokens admitted to a pipeline and not yet processed: what the replica has left to do. */
int64_t brt_sched_pipeline_load(const brt_sched *s, int32_t pipeline);
int32_t brt_sched_pipeline_jobs(const brt_sched *s, int32_t pipeline);
/* Tokens processed per pipeline since the start (the run summary's per-replica work). */
int64_t brt_sched_pipeline_tokens(const brt_sched *s, int32_t pipeline);
int brt_sched_idle(const brt_sched *s);        /* all submitted jobs finished */
int32_t brt_sched_inflight(const brt_sched *s, int32_t pipeline);
int64_t brt_sched_tokens_processed(const brt_sched *s); /* raw token rows planned */
int64_t brt_sched_tokens_done(const brt_sched *s);      /* ... whose results came back (ended jobs: all theirs) */
int64_t brt_sched_tokens_total(const brt_sched *s);     /* prompt + max_new of all jobs */
void brt_sched_free_job(brt_sched *s, brt_job *job);    /* after on_done, when done with it */

#endif
