/* Model weights: pointers into the memory-mapped safetensors files (nothing is copied but the
 * small norm vectors, which are converted to f32). A rank binds only the tensors of its own
 * layers, so only their pages are ever touched. Tensor names are the official ones
 * (HF Llama / Qwen2; Activation Beacon's beacon_* names; LongLLaMA's). */
#ifndef BRT_WEIGHTS_H
#define BRT_WEIGHTS_H

#include <stdint.h>

#include "kernels.h"
#include "model/config.h"
#include "model/safetensors.h"


typedef struct brt_layer_weights {
    brt_weight attn_norm;   /* [dim] f32 (converted at load) */
    brt_weight ffn_norm;    /* [dim] f32 */
    brt_weight wq, wk, wv, wo;      /* [q_dim, dim] [kv_dim, dim] [kv_dim, dim] [dim, q_dim] */
    brt_weight bq, bk, bv, bo;      /* biases (rows 1) or absent */
    brt_weight w_gate, w_up, w_down;/* [inter, dim] [inter, dim] [dim, inter] */
    /* beacon rows (Activation Beacon): separate projections, or aliases of the ones above */
    brt_weight beacon_wq, beacon_wk, beacon_wv, beacon_wo;
    brt_weight beacon_bq, beacon_bk, beacon_bv, beacon_bo;
    brt_weight beacon_up, beacon_down;
} brt_layer_weights;

typedef struct brt_weights {
    int32_t layer_begin, layer_end; /* this rank's layers [begin, end) */
    int has_embed, has_head;
    brt_weight embed;               /* [vocab, dim] (stage 0, and the last stage if tied) */
    brt_weight beacon_embed;        /* [1, dim] row (beacon policies, stage 0) */
    brt_weight final_norm;          /* [dim] f32 (last stage) */
    brt_weight lm_head;             /* [vocab, dim] (last stage; = embed when tied) */
    brt_layer_weights *layers;      /* [layer_end - layer_begin] */
    float *owned;                   /* f32 copies of norm vectors */
    int n_beacon_initialized;       /* beacon tensors taken from the official initialisation */
    int64_t bytes;                  /* bytes of the bound tensors (weights memory of this rank) */
} brt_weights;

/* Bind the tensors this rank needs: layers [layer_begin, layer_end), the embedding when
 * need_embed, the final norm and lm_head when need_head. Every shape is checked against the
 * config; a missing or misshapen tensor is an error naming the file and tensor. */
brt_status brt_weights_bind(const brt_st_set *st, const brt_model_config *cfg, int32_t layer_begin,
                            int32_t layer_end, int need_embed, int need_head, brt_weights *w, brt_err *err);
void brt_weights_free(brt_weights *w);
/* Make every bound tensor usable by the backend's kernels (the CUDA backend copies this rank's
 * tensors to the GPU once; the CPU backend packs its GEMM weights into panels and reads the rest
 * where they are mapped). The mapped pages of a tensor the backend copied leave resident memory
 * (st: the files they are mapped from; NULL keeps them). */
brt_status brt_weights_upload(brt_weights *w, brt_backend *be, const brt_st_set *st, brt_err *err);

/* Bytes the weights of layers [a, b) (+ embedding / head) take in the checkpoint. */
int64_t brt_weights_layer_bytes(const brt_st_set *st, const brt_model_config *cfg, int32_t layer);

/* Tensor names that are not weights of the model (e.g. rotary inv_freq buffers): ignored. */
int brt_weights_ignored_name(const char *name);

/* Check that every tensor in the files is one the model uses (or knowingly ignores), so a
 * checkpoint of another architecture fails loudly. */
brt_status brt_weights_check_names(const brt_st_set *st, const brt_model_config *cfg, brt_err *err);

#endif
