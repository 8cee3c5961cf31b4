/* Long-context state of one job on one stage, per layer, in pool blocks, and the helpers every
 * policy uses to keep it: regions of slots with post-RoPE keys (and pre-RoPE keys where a
 * region's positions can change), appended, re-rotated and handed to attention as spans. Every
 * move of state is a backend op: a policy says which slots go where, never touches them.
 *
 * Regions (which ones a policy uses is its own business):
 *   sink  beacon v2 attention sink          keys rotated at 0..sink-1
 *   mem   beacon memory / FoT memory        beacon: rotated at sink+j; FoT: unrotated, mem dtype
 *   raw   beacon open window / FoT local    rotated at base+j (base tracked; pre-RoPE kept)
 *         cache / the full policy's cache */
#ifndef BRT_KVSTATE_H
#define BRT_KVSTATE_H

#include <stdint.h>

#include "base/buf.h"
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

/* What the helpers share: the backend, the pool, RoPE, and room for run lists. */
typedef struct brt_kv_ctx {
    brt_backend *be;
    brt_kvpool *pool;
    brt_rope rope;          /* inv_freq in backend memory, head_dim, pos_div */
    int32_t n_kv_heads, head_dim;
    brt_run *runs;          /* scratch [runs_cap] */
    int32_t runs_cap;
} brt_kv_ctx;

void brt_kv_ctx_free(brt_kv_ctx *kc);

/* Region dtypes: sink and raw in the pool's state dtype, memory in mem_dtype. */
void brt_layer_state_init(brt_layer_state *ls, brt_kvpool *pool, int32_t kv_dim, brt_dtype mem_dtype, int keep_kpre);
void brt_layer_state_clear(brt_layer_state *ls, brt_kvpool *pool);

/* Append n rows of a view (f32 activations or slots) to seq, rotated at positions first_pos..
 * when rotate (from their f32 values, before conversion to seq's dtype). */
brt_status brt_kv_append(brt_kv_ctx *kc, brt_kvseq *seq, brt_mat rows, int32_t n, int rotate, int32_t first_pos,
                         brt_err *err);
/* The same from a gather: the concatenation of src runs. */
brt_status brt_kv_append_runs(brt_kv_ctx *kc, brt_kvseq *seq, const brt_run *src, int32_t n_src, int rotate,
                              int32_t first_pos, brt_err *err);
/* Re-rotate the raw region from its pre-RoPE keys so slot j sits at base + j. */
brt_status brt_kv_rebase_raw(brt_kv_ctx *kc, brt_layer_state *ls, int32_t base, brt_err *err);
/* Rotate rows of a view in place at the given integer positions. */
brt_status brt_rope_rows(brt_kv_ctx *kc, brt_mat x, int32_t rows, int32_t heads, const int32_t *pos, brt_err *err);
/* Room for n runs in kc->runs. */
brt_status brt_kv_runs_reserve(brt_kv_ctx *kc, int32_t n, brt_err *err);

/* A layer's state as bytes (a state image, for the state cache): raw_base, whether pre-RoPE keys
 * are kept, then each region's dtype, width, slot count and slots in its own dtype, read back
 * through the backend. Import checks every region against the layer's own (what state_init made)
 * and takes pool blocks for the slots: BRT_ERR_FORMAT for an image that does not fit, BRT_ERR_CAPACITY
 * when the pool is full. *cur advances past what was read. */
brt_status brt_layer_state_export(const brt_layer_state *ls, brt_kvpool *pool, brt_buf *out, brt_err *err);
brt_status brt_layer_state_import(brt_layer_state *ls, brt_kvpool *pool, const uint8_t **cur, const uint8_t *end,
                                  brt_err *err);

/* Make dst (zeroed, or a state of pool dp) a copy of src in pool dp (the same backend and block
 * size as sp): every region's slots copied by the backend, no host round trip. On failure (dp full:
 * BRT_ERR_CAPACITY) dst holds nothing. */
brt_status brt_layer_state_copy(brt_layer_state *dst, brt_kvpool *dp, const brt_layer_state *src, brt_kvpool *sp,
                                brt_err *err);

/* Append the spans of region (k, v) to out; returns the new count. */
int32_t brt_kv_add_spans(const brt_kv_ctx *kc, const brt_kvseq *k, const brt_kvseq *v, brt_kv_span *out, int32_t n,
                         int32_t cap);

#endif
