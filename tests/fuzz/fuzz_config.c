/* A model's config.json through the strict parser (brt_config_from_json on the bytes as
 * brt_config_load_file reads them: jansson, no flags), twice: as the whole config, and as the
 * overrides (--policy, presets) merged over the embedded stories260K config. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "model/config.h"

/* models/stories260K/config.json, minus the fields the parser ignores */
static const char k_base[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"bos_token_id\": 1,"
    " \"eos_token_id\": 2, \"hidden_act\": \"silu\", \"hidden_size\": 64, \"intermediate_size\": 172,"
    " \"max_position_embeddings\": 512, \"model_type\": \"llama\", \"num_attention_heads\": 8,"
    " \"num_hidden_layers\": 5, \"num_key_value_heads\": 4, \"rms_norm_eps\": 1e-05, \"rope_scaling\": null,"
    " \"rope_theta\": 10000.0, \"tie_word_embeddings\": true, \"vocab_size\": 512}";

static json_t *g_base;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_error_t je;
    g_base = json_loads(k_base, 0, &je);
    FUZZ_CHECK(g_base != NULL);
    return 0;
}

/* What a config the parser accepts must hold (the engine indexes buffers with these). */
static void check_config(const brt_model_config *c, const json_t *merged)
{
    FUZZ_CHECK(c->n_layers >= 1 && c->n_layers <= BRT_MAX_LAYERS);
    FUZZ_CHECK(c->n_heads >= 1 && c->n_kv_heads >= 1 && c->n_heads % c->n_kv_heads == 0);
    FUZZ_CHECK(c->head_dim >= 2 && c->head_dim % 2 == 0);
    FUZZ_CHECK(c->vocab_size >= 1 && c->hidden >= 1 && c->intermediate >= 1 && c->max_pos >= 1);
    FUZZ_CHECK(c->bos_id >= 0 && c->bos_id < c->vocab_size && c->eos_id >= 0 && c->eos_id < c->vocab_size);
    /* the special ids are the ones the file names, not a truncation of them */
    const json_t *bos = json_object_get(merged, "bos_token_id"), *eos = json_object_get(merged, "eos_token_id");
    if (json_is_array(eos) && json_array_size(eos) > 0)
        eos = json_array_get(eos, 0);
    if (json_is_integer(bos))
        FUZZ_CHECK(json_integer_value(bos) == c->bos_id);
    if (json_is_integer(eos))
        FUZZ_CHECK(json_integer_value(eos) == c->eos_id);
    if (c->policy == BRT_POLICY_BEACON_V1 || c->policy == BRT_POLICY_BEACON_V2) {
        const brt_beacon_config *b = &c->beacon;
        FUZZ_CHECK(b->window >= 1 && b->stride >= 1 && b->stride <= b->window);
        FUZZ_CHECK(b->n_ratios >= 1 && b->n_ratios <= BRT_MAX_RATIOS);
        for (int i = 0; i < b->n_ratios; i++)
            FUZZ_CHECK(b->ratios[i] >= 0);
    } else if (c->policy == BRT_POLICY_FOT) {
        FUZZ_CHECK(c->fot.n_mem_layers >= 0 && c->fot.n_mem_layers <= c->n_layers);
    } else
        FUZZ_CHECK(c->policy == BRT_POLICY_FULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    json_t *doc = json_loadb((const char *)data, size, 0, &je);
    if (!doc)
        return 0;
    brt_model_config c;
    brt_err e;
    brt_err_clear(&e);
    if (brt_config_from_json(doc, NULL, "fuzz/config.json", &c, &e) == BRT_OK)
        check_config(&c, doc);
    else
        FUZZ_CHECK(e.msg[0] != '\0');

    brt_err_clear(&e);
    if (brt_config_from_json(g_base, doc, "fuzz/overrides", &c, &e) == BRT_OK) {
        json_t *merged = json_deep_copy(g_base);
        FUZZ_CHECK(merged != NULL && json_object_update(merged, doc) == 0);
        check_config(&c, merged);
        json_decref(merged);
    } else
        FUZZ_CHECK(e.msg[0] != '\0');
    json_decref(doc);
    return 0;
}
