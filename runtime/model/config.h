/* Model configuration from a Hugging Face config.json (plus overrides), and the long-context
 * policy it selects. Parsing is strict: a field this runtime does not know, or a value it does
 * not support, is an error naming the field, never a silent default. */
#ifndef BRT_CONFIG_H
#define BRT_CONFIG_H

#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"

typedef struct json_t json_t;

typedef enum brt_policy_kind {
    BRT_POLICY_FULL = 0, /* plain Llama: all raw KV */
    BRT_POLICY_BEACON_V1,
    BRT_POLICY_BEACON_V2,
    BRT_POLICY_FOT
} brt_policy_kind;

const char *brt_policy_name(brt_policy_kind k);

typedef enum brt_beacon_attn {
    BRT_BEACON_ATTN_STEP_EXPANSION = 0,
    BRT_BEACON_ATTN_SEGMENTATION,
    BRT_BEACON_ATTN_FULL_COVERAGE
} brt_beacon_attn;

typedef enum brt_ratio_mix {
    BRT_RATIO_MIX_STEP_RANDOM = 0, /* only with one ratio (no draw needed) */
    BRT_RATIO_MIX_INSTANCE_RANDOM, /* only with one ratio */
    BRT_RATIO_MIX_SEQUENCE,
    BRT_RATIO_MIX_ADAPT
} brt_ratio_mix;

typedef enum brt_beacon_pos { BRT_BEACON_POS_APPEND = 0, BRT_BEACON_POS_INTERLEAVE } brt_beacon_pos;

enum { /* beacon_param bits */
    BRT_BEACON_PARAM_Q = 1,
    BRT_BEACON_PARAM_K = 2,
    BRT_BEACON_PARAM_V = 4,
    BRT_BEACON_PARAM_O = 8,
    BRT_BEACON_PARAM_MLP = 16
};

#define BRT_MAX_RATIOS 16
#define BRT_MAX_LAYERS 1024

typedef struct brt_beacon_config {
    int32_t window;          /* W: raw tokens per window */
    int32_t stride;          /* S: tokens condensed per full window (S <= W) */
    int32_t ratios[BRT_MAX_RATIOS];
    int n_ratios;
    brt_ratio_mix ratio_mix;
    int32_t adapt_extra;     /* F of adapt-F */
    brt_beacon_attn attn;
    int attend_prev;         /* v1: beacon_attend_previous; v2: beacon_attend_prev */
    uint32_t param;          /* BRT_BEACON_PARAM_* */
    brt_beacon_pos pos;      /* v2 only; v1 is append */
    int32_t sink_size;       /* v2 only */
    int embed_init_bos;      /* v2: beacon_embed_init == "bos" (else eos) */
} brt_beacon_config;

typedef struct brt_fot_config {
    uint8_t is_mem_layer[BRT_MAX_LAYERS];
    int n_mem_layers;
    int mem_bf16;            /* mem_dtype bfloat16 (memory K/V rounded to bf16) vs float32 */
    int mem_positionals;
    int32_t last_context_length;
    int32_t window;          /* = max_position_embeddings: the local-cache cap */
} brt_fot_config;

/* rope_scaling kinds: linear divides positions by the factor; llama3 (Llama-3.1) rescales the low
 * frequencies by the factor and blends the middle band (transformers' _compute_llama3_parameters). */
typedef enum brt_rope_scaling { BRT_ROPE_NONE = 0, BRT_ROPE_LINEAR, BRT_ROPE_LLAMA3 } brt_rope_scaling;

#define BRT_MAX_EOS 8 /* end-of-generation ids a model may name (Llama-3.1 names three) */

typedef struct brt_model_config {
    char model_type[32];     /* llama, qwen2, mistral, longllama */
    int32_t vocab_size;
    int32_t hidden;          /* dim */
    int32_t intermediate;
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t max_pos;         /* max_position_embeddings */
    float rms_eps;
    double rope_theta;
    brt_rope_scaling rope_scaling;
    double rope_factor;
    double rope_low_freq, rope_high_freq; /* llama3: low_freq_factor, high_freq_factor */
    int32_t rope_orig_max;   /* llama3: original_max_position_embeddings */
    int tie_embeddings;
    int qkv_bias;            /* q/k/v projections have biases */
    int o_bias;              /* o projection has a bias (Llama attention_bias) */
    int32_t bos_id, eos_id;  /* eos_id = eos_ids[0] */
    int32_t eos_ids[BRT_MAX_EOS]; /* every id that ends generation: config.json's eos_token_id (a number
                                     or a list) and generation_config.json's */
    int32_t n_eos;
    brt_dtype weight_dtype;  /* torch_dtype: how the checkpoint is stored (default below when absent) */
    int weight_dtype_given;  /* the config names torch_dtype */
    brt_policy_kind policy;
    brt_beacon_config beacon;
    brt_fot_config fot;
} brt_model_config;

/* 1 when the id ends generation (any of the model's end-of-sequence ids). */
int brt_config_is_eos(const brt_model_config *c, int32_t id);
/* Fill inv_freq[head_dim / 2] as transformers does in float32: 1 / theta^(2i/d), then the
 * rope_scaling kind's rescaling (llama3; linear is applied to positions instead). */
void brt_config_rope_inv_freq(const brt_model_config *c, float *inv_freq);

/* The weights' element type a config without torch_dtype implies: how long-context checkpoints are
 * released (bf16), so planning a deployment from its config alone does not double its weights. */
#define BRT_CONFIG_DEFAULT_WEIGHT_DTYPE BRT_DT_BF16

/* Overrides may say where their keys came from: an object under this key maps a config key to a
 * label (the flag that set it, "--beacon-window", or "PRESET policy"). A message about a labelled
 * key starts with the label instead of the config file, and a malformed value there is
 * BRT_ERR_INVALID (the caller's input) rather than BRT_ERR_FORMAT. It is not a config field. */
#define BRT_CONFIG_ORIGIN_KEY "__origin__"

/* Parse a config object. overrides (may be NULL) is merged over it first (same keys as
 * config.json, e.g. {"beacon_window": 64}); `what` names the source in messages. */
brt_status brt_config_from_json(const json_t *cfg, const json_t *overrides, const char *what,
                                brt_model_config *out, brt_err *err);
/* Load a config.json file (with optional overrides). */
brt_status brt_config_load_file(const char *path, const json_t *overrides, brt_model_config *out, brt_err *err);
/* Load DIR/config.json (with optional overrides). */
brt_status brt_config_load(const char *dir, const json_t *overrides, brt_model_config *out, brt_err *err);

/* A torch_dtype name ("bfloat16", "float16", "float32", or bf16/f16/f32) as an element type; 0 if
 * it names none of them. */
int brt_config_parse_dtype(const char *name, brt_dtype *out);

/* Turn a plain Llama config into a beacon one with the official class defaults for that
 * version (used by --policy beacon_v1|beacon_v2 on a model without beacon fields). */
brt_status brt_config_beacon_defaults(int version, json_t *overrides, brt_err *err);

#endif
