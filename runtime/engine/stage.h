/* A pipeline stage: layers [layer_begin, layer_end) of the model, their weights, the KV pool and
 * the long-context state of every job in flight, for those layers only. The first stage also
 * embeds tokens; the last applies the final norm and lm_head and turns logits into results. */
#ifndef BRT_STAGE_H
#define BRT_STAGE_H

#include <stdint.h>

#include "base/buf.h"
#include "engine/step.h"
#include "kernels.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"

typedef struct brt_stage brt_stage;

typedef struct brt_stage_opts {
    const brt_model_config *cfg;
    const brt_st_set *files;   /* the checkpoint (memory-mapped) */
    int32_t layer_begin, layer_end;
    int first, last;
    brt_backend *be;
    int64_t kv_budget;         /* bytes of KV blocks this stage may hold */
    int32_t block_bytes;       /* KV block size */
    int32_t max_rows;          /* rows per micro-batch */
} brt_stage_opts;

brt_status brt_stage_create(const brt_stage_opts *o, brt_stage **out, brt_err *err);
void brt_stage_destroy(brt_stage *s);

/* Run a micro-batch over the stage's hidden states ([mb->n_rows, hidden] f32 in the backend's
 * memory: put there by brt_stage_put_hidden or a device transport, except on the first stage,
 * which embeds; left there for the next stage). A failure of one job (say a bad token id) marks
 * its step FAILED with a message and drops its state; the other jobs go on. On the last stage
 * results[i] is filled for each step. The call itself fails only when the stage can no longer
 * run. */
brt_status brt_stage_forward(brt_stage *s, brt_microbatch *mb, brt_step_result *results, brt_err *err);
/* The hidden states: a view for device transports, or copied from / to host memory
 * ([rows, hidden] f32, packed). */
brt_mat brt_stage_hidden(brt_stage *s);
brt_status brt_stage_put_hidden(brt_stage *s, const float *host, int32_t rows, brt_err *err);
brt_status brt_stage_take_hidden(brt_stage *s, float *host, int32_t rows, brt_err *err);
/* Free a job's state (it finished or failed). */
void brt_stage_release(brt_stage *s, uint64_t job);
/* A job's state on this stage as bytes (a state image: the stage's layer range, the next step's
 * index, every layer's regions), appended to out; BRT_ERR_NOT_FOUND if the stage holds none. */
brt_status brt_stage_job_export(brt_stage *s, uint64_t job, brt_buf *out, brt_err *err);
/* Give job the state of an image (replacing any it had): its next step is the image's. An image of
 * other layers, another dtype or a damaged one is BRT_ERR_FORMAT, a full pool BRT_ERR_CAPACITY;
 * either way the job then has no state here. */
brt_status brt_stage_job_import(brt_stage *s, uint64_t job, const void *image, size_t len, brt_err *err);

/* Kept copies of job states in the backend's own memory (GPU memory with the CUDA backend): the
 * state cache's device tier. A second pool of `bytes` holds them (brt_stage_keep_pool, once).
 * keep: a copy of job's state now; restore: give job (replacing any state it had) a kept copy,
 * with its next step; both copy between pools on the device, never through the host. A full
 * keep pool is BRT_ERR_CAPACITY (nothing kept). kept_export: the kept copy's state image, the
 * same bytes brt_stage_job_export gave for the job then. Free every kept copy before the stage. */
typedef struct brt_stage_kept brt_stage_kept;
brt_status brt_stage_keep_pool(brt_stage *s, int64_t bytes, brt_err *err);
brt_status brt_stage_keep(brt_stage *s, uint64_t job, brt_stage_kept **out, brt_err *err);
brt_status brt_stage_restore(brt_stage *s, uint64_t job, const brt_stage_kept *k, brt_err *err);
brt_status brt_stage_kept_export(brt_stage *s, const brt_stage_kept *k, brt_buf *out, brt_err *err);
int64_t brt_stage_kept_bytes(const brt_stage_kept *k); /* keep-pool bytes (whole blocks) it holds */
void brt_stage_kept_free(brt_stage *s, brt_stage_kept *k);

const brt_weights *brt_stage_weights(const brt_stage *s);
/* Bytes of the backend buffers a stage holds for its activations (max_rows rows; the last stage
 * also holds logits rows), without creating one (plan, inspect). */
int64_t brt_stage_activation_bytes(const brt_model_config *cfg, int32_t max_rows, int last);
int64_t brt_stage_kv_used(const brt_stage *s);
/* Change the KV budget (before any job runs: a GPU's budget is what its weights leave). */
void brt_stage_set_kv_budget(brt_stage *s, int64_t bytes);
int64_t brt_stage_kv_peak(const brt_stage *s);
int32_t brt_stage_jobs(const brt_stage *s);
/* Seconds spent in forward and the number of micro-batches (for idle fractions). */
void brt_stage_stats(const brt_stage *s, double *busy_seconds, int64_t *microbatches);

/* The arithmetic a stage has done since it was created, counted as it goes (for FLOP rates and
 * MFU): rows through its layers (summed over layers; beacon rows included), visible (query row,
 * key) pairs of its attention (summed over layers, one head), rows through lm_head. */
typedef struct brt_stage_work {
    int64_t layer_rows, attn_pairs, logit_rows;
} brt_stage_work;
brt_stage_work brt_stage_work_done(const brt_stage *s);
/* Floating-point operations of that work on cfg's layers: 2 per multiply-add of each linear layer
 * (q/k/v/o, gate/up/down; beacon rows use weights of the same shapes), 4 x head_dim per pair and
 * head (scores and values; the softmax not counted), 2 x hidden x vocab per lm_head row. */
double brt_stage_work_flops(const brt_model_config *cfg, const brt_stage_work *w);

#endif
