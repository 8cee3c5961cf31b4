/* Long-context state of one job on one stage, per layer, in pool blocks, and the helpers every
 * policy uses to keep it: regions of slots with post-RoPE keys (and pre-RoPE keys where a
 * region's positions can change), appended, re-rotated and handed to attention as spans.
 *
 * Regions (which ones a policy uses is its own business):
 *   sink  beacon v2 attention sink          keys rotated at 0..sink-1
 *   mem   beacon memory / FoT memory        beacon: rotated at sink+j; FoT: unrotated, mem dtype
 *   raw   beacon open window / FoT local    rotated at base+j (base tracked; pre-RoPE kept)
 *         cache / the full policy's cache */
#ifndef BRT_KVSTATE_H
#define BRT_KVSTATE_H

#include <stdint.h>

#include "engine/kvpool.h"
#include "kernels.h"

typedef struct brt_layer_state {
    brt_kvseq sink_k, sink_v;
    brt_kvseq mem_k, mem_v;
    brt_kvseq raw_k, raw_v, raw_kpre;
    int32_t raw_base;   /* position of raw slot 0 that raw_k is rotated for */
    int has_kpre;       /* raw_kpre is kept */
} brt_layer_state;

typedef struct brt_job_state {
    uint64_t job;
    uint32_t next_index;
    int failed;
    int32_t n_layers;
    brt_layer_state *layers;
    uint8_t *raw_kind;  /* kinds of the raw region's slots (beacon v2 interleave) */
    int32_t raw_kind_n, raw_kind_cap;
} brt_job_state;

/* Rotation context: RoPE tables and scratch shared by the helpers. */
typedef struct brt_rope_ctx {
    brt_backend *be;
    const float *inv_freq;  /* [head_dim/2] */
    float pos_div;          /* linear RoPE scaling: positions are divided by the factor (1 = none) */
    int32_t n_kv_heads, head_dim;
    float *tmp;             /* scratch [tmp_rows, kv_dim] */
    float *tmp_pos;         /* scratch [tmp_rows] */
    int32_t tmp_rows;
} brt_rope_ctx;

void brt_layer_state_init(brt_layer_state *ls, brt_kvpool *pool, int32_t kv_dim, brt_dtype mem_dtype, int keep_kpre);
void brt_layer_state_clear(brt_layer_state *ls, brt_kvpool *pool);

/* Append rows of pre-RoPE keys rotated at positions first_pos.. (rotate = 0: stored as given). */
brt_status brt_kv_append_rotated(brt_rope_ctx *rc, brt_kvpool *pool, brt_kvseq *kseq, const float *kpre,
                                 int64_t ldk, int32_t n, int32_t first_pos, int rotate, brt_err *err);
/* Re-rotate the raw region from its pre-RoPE keys so slot j sits at base + j. */
void brt_kv_rebase_raw(brt_rope_ctx *rc, brt_layer_state *ls, int32_t base);
/* Rotate rows in place at the given integer positions (scaled by pos_scale). */
void brt_rope_rows(brt_rope_ctx *rc, float *x, int64_t ld, int32_t rows, int32_t heads, const int32_t *pos);

/* Append the spans of region (k, v) to out; returns the new count. */
int32_t brt_kv_add_spans(const brt_kvseq *k, const brt_kvseq *v, brt_kv_span *out, int32_t n, int32_t cap);

#endif
