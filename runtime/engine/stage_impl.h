/* The stage's insides, shared by its files (internal to runtime/engine): stage.c (the forward
 * pass) and stage_state.c (a job's state as an image, and kept copies in the backend's memory). */
#ifndef BRT_STAGE_IMPL_H
#define BRT_STAGE_IMPL_H

#include "base/u64map.h"
#include "engine/kvpool.h"
#include "engine/kvstate.h"
#include "engine/policy.h"
#include "engine/stage.h"

#define LOGIT_ROWS 256 /* at most, rows of logits computed at a time on the last stage */

struct brt_stage {
    brt_stage_opts o;
    brt_model_config cfg;
    const brt_policy_ops *pol;
    brt_backend *be;
    brt_weights w;
    brt_kvpool *pool;
    brt_kvpool *keep_pool; /* the state cache's device tier: kept copies of job states (NULL: none) */
    brt_u64map jobs;
    int32_t dim, qd, kvd, inter, n_local, vocab;
    brt_kv_ctx kv;
    /* activations in the backend's memory, [max_rows, width] f32 each (logits [logit_rows, vocab]) */
    brt_buffer *act;
    brt_mat hidden, xn, q, k, kpre, v, att, tmp, gate, up, gin, gout, logits;
    /* host-side descriptions of a micro-batch */
    brt_attn_vis *vis;     /* [max_rows] */
    uint8_t *row_kind;     /* [max_rows] */
    int32_t *ids;          /* [max_rows] embedding rows */
    brt_run *runs;         /* [2 * max_rows + 2] gathers by row kind, logits rows */
    brt_kv_span *spans;
    int64_t spans_cap;
    brt_attn_seg *segs;
    brt_layer_ctx *ctxs;
    brt_job_state **js;
    int32_t steps_cap;
    int32_t logit_rows;    /* logit_rows_of: rows per lm_head GEMM */
    brt_logit_req req[LOGIT_ROWS];
    brt_logit_out lout[LOGIT_ROWS];
    double busy;
    int64_t n_mb;
    brt_stage_work work;
};

/* A job's state with every layer initialised by the policy, registered under id; NULL when out
 * of memory. */
brt_job_state *brt_stage_job_new(brt_stage *s, uint64_t id);
/* Give a state's slots back to the stage's pool and free it (js may be NULL). */
void brt_stage_job_free(brt_stage *s, brt_job_state *js);

#endif
