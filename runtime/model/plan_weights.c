#include "model/plan_weights.h"

#include <stdio.h>
#include <string.h>

#include "model/weights.h"

static int is_beacon(const brt_model_config *cfg)
{
    return cfg->policy == BRT_POLICY_BEACON_V1 || cfg->policy == BRT_POLICY_BEACON_V2;
}

/* The beacon_param bit a beacon tensor of a layer belongs to (0: not a beacon tensor). */
static uint32_t beacon_bit(const char *suffix)
{
    static const struct {
        const char *name;
        uint32_t bit;
    } k[] = {{"self_attn.beacon_q_proj.", BRT_BEACON_PARAM_Q}, {"self_attn.beacon_k_proj.", BRT_BEACON_PARAM_K},
             {"self_attn.beacon_v_proj.", BRT_BEACON_PARAM_V}, {"self_attn.beacon_o_proj.", BRT_BEACON_PARAM_O},
             {"mlp.beacon_up_proj.", BRT_BEACON_PARAM_MLP},    {"mlp.beacon_down_proj.", BRT_BEACON_PARAM_MLP}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strncmp(suffix, k[i].name, strlen(k[i].name)))
            return k[i].bit;
    return 0;
}

static void add(brt_weight_count *w, int64_t rows, int64_t cols, int64_t elem_bytes)
{
    w->params += rows * cols;
    w->bytes += rows * cols * elem_bytes;
    if (rows == 1)
        w->vec_params += cols;
}

/* Would the stage bind this checkpoint tensor? */
static int stage_binds(const brt_model_config *cfg, const char *name, int32_t a, int32_t b, int first, int last)
{
    if (brt_weights_ignored_name(name))
        return 0;
    if (!strcmp(name, "model.embed_tokens.weight"))
        return first || (last && cfg->tie_embeddings);
    if (!strcmp(name, "model.beacon_embed_tokens.weight"))
        return first && is_beacon(cfg);
    if (!strcmp(name, "model.norm.weight") || !strcmp(name, "lm_head.weight"))
        return last;
    int l, off = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &off) != 1 || off == 0 || l < a || l >= b)
        return 0;
    const uint32_t bit = beacon_bit(name + off);
    return !bit || (is_beacon(cfg) && (cfg->beacon.param & bit));
}

void brt_weight_count_stage(const brt_model_config *cfg, const brt_st_set *files, brt_dtype dt, int32_t a, int32_t b,
                             int first, int last, brt_weight_count *out)
{
    memset(out, 0, sizeof *out);
    if (files) {
        for (size_t f = 0; f < files->n_files; f++)
            for (size_t i = 0; i < files->files[f]->n; i++) {
                const brt_st_tensor *t = &files->files[f]->tensors[i];
                if (!stage_binds(cfg, t->name, a, b, first, last))
                    continue;
                const int vec = t->ndim == 1 || (t->ndim == 2 && t->shape[0] == 1);
                out->params += t->numel;
                out->bytes += (int64_t)t->nbytes;
                if (vec)
                    out->vec_params += t->numel;
            }
        return;
    }
    /* the tensors a checkpoint of this config has (names and shapes as brt_weights_bind wants them) */
    const int64_t es = (int64_t)brt_dtype_size(dt), d = cfg->hidden, q = (int64_t)cfg->n_heads * cfg->head_dim,
                  kv = (int64_t)cfg->n_kv_heads * cfg->head_dim, inter = cfg->intermediate, V = cfg->vocab_size;
    const uint32_t bp = is_beacon(cfg) ? cfg->beacon.param : 0;
    for (int32_t l = a; l < b; l++) {
        add(out, 1, d, es); /* input_layernorm */
        add(out, 1, d, es); /* post_attention_layernorm */
        add(out, q, d, es);
        add(out, kv, d, es);
        add(out, kv, d, es);
        add(out, d, q, es);
        if (cfg->qkv_bias) {
            add(out, 1, q, es);
            add(out, 1, kv, es);
            add(out, 1, kv, es);
        }
        if (cfg->o_bias)
            add(out, 1, d, es);
        add(out, inter, d, es); /* gate */
        add(out, inter, d, es); /* up */
        add(out, d, inter, es); /* down */
        if (bp & BRT_BEACON_PARAM_Q) {
            add(out, q, d, es);
            if (cfg->qkv_bias)
                add(out, 1, q, es);
        }
        if (bp & BRT_BEACON_PARAM_K) {
            add(out, kv, d, es);
            if (cfg->qkv_bias)
                add(out, 1, kv, es);
        }
        if (bp & BRT_BEACON_PARAM_V) {
            add(out, kv, d, es);
            if (cfg->qkv_bias)
                add(out, 1, kv, es);
        }
        if (bp & BRT_BEACON_PARAM_O) {
            add(out, d, q, es);
            if (cfg->o_bias)
                add(out, 1, d, es);
        }
        if (bp & BRT_BEACON_PARAM_MLP) {
            add(out, inter, d, es);
            add(out, d, inter, es);
        }
    }
    if (first) {
        add(out, V, d, es);
        if (is_beacon(cfg))
            add(out, 1, d, es); /* the released beacon checkpoints carry their own beacon_embed_tokens row */
    }
    if (last) {
        add(out, 1, d, es); /* final norm */
        if (!cfg->tie_embeddings || !first)
            add(out, V, d, es); /* lm_head, or the tied table bound again */
    }
}
