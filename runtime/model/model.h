/* A model folder opened for use: its config (with overrides), its tokenizer (when the folder
 * has tokenizer.model) and its memory-mapped weights, checked against each other. */
#ifndef BRT_MODEL_H
#define BRT_MODEL_H

#include "model/config.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

typedef struct brt_model {
    char *dir;
    brt_model_config cfg;
    brt_tokenizer *tok;   /* NULL when the folder has no tokenizer.model */
    brt_st_set files;
} brt_model;

/* overrides: config keys to replace (may be NULL). need_tokenizer: a missing tokenizer.model
 * is an error naming the file. */
brt_status brt_model_open(const char *dir, const json_t *overrides, int need_tokenizer, brt_model *m, brt_err *err);
void brt_model_close(brt_model *m);

/* Parameter count and bytes of the checkpoint's tensors. */
void brt_model_size(const brt_model *m, int64_t *params, int64_t *bytes);

#endif
