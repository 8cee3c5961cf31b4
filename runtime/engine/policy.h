/* Long-context policies: full (plain Llama), beacon_v1, beacon_v2, fot. Each is one table of
 * functions with two halves:
 *  - the planner (coordinator side): turns a job's token stream into steps: which rows (raw
 *    tokens, beacon slots), their positions, the mask rule and what the stages keep;
 *  - the state keeper (stage side): per layer, rotates the step's queries/keys, describes the
 *    keys each row sees (spans + visible intervals) and, after attention, updates the job's
 *    state of that layer.
 * Kernels never know the policy; the planner is the single source of positions. */
#ifndef BRT_POLICY_H
#define BRT_POLICY_H

#include <stdint.h>

#include "engine/kvstate.h"
#include "engine/step.h"
#include "model/config.h"

/* Planner state of one job (coordinator). */
typedef struct brt_plan {
    brt_policy_kind kind;
    int64_t fed;            /* tokens of the stream already in planned steps */
    uint32_t next_index;    /* index of the next step */
    /* beacon */
    int64_t start;          /* current window start */
    int32_t sink, mem, raw; /* state sizes (slots per layer) after the planned steps */
    int32_t raw_beacons;    /* v2: beacon slots in the raw region */
    int32_t ratio_fixed;    /* adapt: the chosen ratio, -1 = not chosen yet */
    int32_t step_idx;       /* v1 sequence mode: steps so far */
    int32_t seq_pos;        /* v2 sequence mode: position in the cycle */
    int32_t prev_full;      /* v2: the previous step completed a window */
    int32_t rem, r_cur;     /* v2 interleave: remainder and the window's ratio */
    /* fot */
    int32_t has_cache, local;
    int64_t call_begin, call_end;
} brt_plan;

/* Everything a stage hands a policy for one step at one layer. The step's rows are views into the
 * stage's activations; the policy moves state only through the helpers of kvstate.h. */
typedef struct brt_layer_ctx {
    const brt_model_config *cfg;
    brt_kv_ctx *kv;           /* backend, pool, RoPE */
    int32_t layer;            /* global layer index */
    const brt_step *step;
    brt_job_state *job;
    brt_layer_state *ls;
    brt_mat q;                /* [n_rows, q_dim] f32 pre-RoPE; rotated in place by prepare */
    brt_mat k;                /* [n_rows, kv_dim] f32 pre-RoPE; rotated in place by prepare */
    brt_mat kpre;             /* [n_rows, kv_dim] f32 pre-RoPE copy, kept for the state */
    brt_mat v;                /* [n_rows, kv_dim] f32 */
    brt_kv_span *spans;       /* out: keys in order */
    int32_t spans_cap, n_spans;
    brt_attn_vis *vis;        /* out: [n_rows] */
} brt_layer_ctx;

typedef struct brt_policy_ops {
    brt_policy_kind kind;
    /* Plan the next step over the available tokens [0, avail); 0 = nothing to plan. The step's
     * arrays are malloc'ed (brt_step_free_arrays). */
    int (*plan_next)(brt_plan *p, const brt_model_config *cfg, const int32_t *tokens, int64_t avail,
                     int32_t chunk, brt_step *st, brt_err *err);
    /* Rows of the largest step (prefill chunk for full). */
    int32_t (*max_step_rows)(const brt_model_config *cfg, int32_t chunk);
    /* Stage: a new job's layer state. */
    void (*state_init)(const brt_model_config *cfg, int32_t layer, brt_kvpool *pool, brt_layer_state *ls);
    brt_status (*prepare)(brt_layer_ctx *c, brt_err *err);
    brt_status (*commit)(brt_layer_ctx *c, brt_err *err);
    /* Stage: after the step went through all of this stage's layers (may be NULL). */
    brt_status (*end_step)(brt_job_state *js, const brt_step *st, brt_err *err);
    /* Bytes of pool blocks one layer's state needs for the given region sizes, state kept in
     * state_dtype (the backend's). */
    int64_t (*layer_bytes)(const brt_model_config *cfg, int32_t layer, int32_t block_bytes, brt_dtype state_dtype,
                           int64_t sink, int64_t mem, int64_t raw);
} brt_policy_ops;

const brt_policy_ops *brt_policy_ops_for(brt_policy_kind k);

void brt_plan_init(brt_plan *p, const brt_model_config *cfg);
void brt_step_free_arrays(brt_step *st);
/* Allocate a step's row arrays for n rows. */
brt_status brt_step_alloc_rows(brt_step *st, int32_t n, brt_err *err);

/* Worst-case state of a job of prompt_len tokens generating max_new: the largest region sizes
 * over its life, found by running the planner over the real call pattern (prompt, then one
 * token at a time). */
typedef struct brt_state_need {
    int64_t sink, mem, raw;
    int64_t steps;
    int64_t rows;           /* rows of all steps (tokens + beacon slots): what the GEMMs process */
} brt_state_need;
brt_status brt_plan_state_need(const brt_model_config *cfg, int64_t prompt_len, int64_t max_new, int32_t chunk,
                               brt_state_need *out, brt_err *err);
/* Pool bytes the job needs on layers [a, b) (worst case), state kept in state_dtype. */
int64_t brt_plan_job_bytes(const brt_model_config *cfg, const brt_state_need *need, int32_t a, int32_t b,
                           int32_t block_bytes, brt_dtype state_dtype);

/* Shared helpers for the policies */
/* Keep the step's pre-RoPE keys (kpre), then rotate q and k at the step's positions (rotate). */
brt_status brt_policy_rope_step(brt_layer_ctx *c, int rotate, brt_err *err);
int32_t brt_beacon_choose_ratio(brt_plan *p, const brt_model_config *cfg, int64_t avail, int v2, brt_err *err);

#endif
