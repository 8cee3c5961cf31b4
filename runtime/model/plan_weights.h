/* The weights one pipeline stage holds, for plan and inspect: counted from the checkpoint's tensors
 * when the files are there (their real dtypes), else from the tensors the config implies, stored in
 * the config's torch_dtype. One function for both, so the two commands cannot disagree. */
#ifndef BRT_PLAN_WEIGHTS_H
#define BRT_PLAN_WEIGHTS_H

#include <stdint.h>

#include "base/dtype.h"
#include "model/config.h"
#include "model/safetensors.h"

typedef struct brt_weight_count {
    int64_t params;     /* elements */
    int64_t bytes;      /* bytes as stored (checkpoint dtypes, or the config's) */
    int64_t vec_params; /* elements of one-row tensors (norms, biases, the beacon embedding): f32 on a GPU */
} brt_weight_count;

/* What the stage of layers [a, b) binds, as brt_weights_bind does: its layers (the beacon projections
 * when the policy is a beacon one and beacon_param names them), the embedding table (and the beacon
 * embedding row) when first, the final norm and lm_head when last; with tied embeddings a last stage
 * that is not also the first holds the table again. files: the checkpoint, or NULL to count the
 * tensors the config implies, each stored as dt. Tensors a checkpoint lacks (beacon projections that
 * get the official initialisation, an alias of the base ones) take no memory and are not counted. */
void brt_weight_count_stage(const brt_model_config *cfg, const brt_st_set *files, brt_dtype dt, int32_t a, int32_t b,
                             int first, int last, brt_weight_count *out);

/* Bytes of those weights on a GPU that keeps matrices in elements of mat_bytes (2: bf16/f16, 4: f32)
 * and one-row tensors in f32 (the CUDA backend's rule). */
static inline int64_t brt_weight_count_device_bytes(const brt_weight_count *w, int mat_bytes)
{
    return (w->params - w->vec_params) * mat_bytes + w->vec_params * 4;
}

#endif
