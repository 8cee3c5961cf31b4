/* brt_weight_count_stage (what plan and inspect print per stage) counts exactly the bytes the runtime
 * binds for that stage (brt_weights_bind), from a checkpoint's tensors as stored, and the count from
 * the config alone in its torch_dtype equals both when the checkpoint is stored in that dtype:
 *  - Qwen2 with Activation Beacon v2 (q/k/v biases, beacon q/k/v projections with biases, the
 *    beacon embedding row), untied, BF16;
 *  - Llama with tied embeddings and attention biases, beacon v1 (q/k/v/o projections), F16: a last
 *    stage that is not the first binds the embedding table again;
 *  - every split of the layers into one to three stages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "model/config.h"
#include "model/plan_weights.h"
#include "model/safetensors.h"
#include "model/weights.h"

typedef struct {
    char name[96];
    int64_t rows, cols; /* rows 1: a vector [cols] */
} tensor_spec;

/* The tensors of a Hugging Face checkpoint of cfg (with the beacon tensors its beacon_param names). */
static size_t checkpoint_tensors(const brt_model_config *c, tensor_spec *t)
{
    size_t n = 0;
    const int64_t d = c->hidden, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim,
                  in = c->intermediate;
#define T(r, cl, ...)                                                    \
    do {                                                                 \
        snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__);              \
        t[n].rows = (r);                                                 \
        t[n].cols = (cl);                                                \
        n++;                                                             \
    } while (0)
    T(c->vocab_size, d, "model.embed_tokens.weight");
    T(1, d, "model.norm.weight");
    if (!c->tie_embeddings)
        T(c->vocab_size, d, "lm_head.weight");
    const int beacon = c->policy == BRT_POLICY_BEACON_V1 || c->policy == BRT_POLICY_BEACON_V2;
    if (beacon)
        T(1, d, "model.beacon_embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        T(1, d, "model.layers.%d.input_layernorm.weight", l);
        T(1, d, "model.layers.%d.post_attention_layernorm.weight", l);
        for (int b = 0; b < (beacon ? 2 : 1); b++) {
            const char *pre = b ? "beacon_" : "";
            const uint32_t p = b ? c->beacon.param : 0xff;
            if (p & BRT_BEACON_PARAM_Q) {
                T(q, d, "model.layers.%d.self_attn.%sq_proj.weight", l, pre);
                if (c->qkv_bias)
                    T(1, q, "model.layers.%d.self_attn.%sq_proj.bias", l, pre);
            }
            if (p & BRT_BEACON_PARAM_K) {
                T(kv, d, "model.layers.%d.self_attn.%sk_proj.weight", l, pre);
                if (c->qkv_bias)
                    T(1, kv, "model.layers.%d.self_attn.%sk_proj.bias", l, pre);
            }
            if (p & BRT_BEACON_PARAM_V) {
                T(kv, d, "model.layers.%d.self_attn.%sv_proj.weight", l, pre);
                if (c->qkv_bias)
                    T(1, kv, "model.layers.%d.self_attn.%sv_proj.bias", l, pre);
            }
            if (p & BRT_BEACON_PARAM_O) {
                T(d, q, "model.layers.%d.self_attn.%so_proj.weight", l, pre);
                if (c->o_bias)
                    T(1, d, "model.layers.%d.self_attn.%so_proj.bias", l, pre);
            }
            if (!b)
                T(in, d, "model.layers.%d.mlp.gate_proj.weight", l);
            if (p & BRT_BEACON_PARAM_MLP) {
                T(in, d, "model.layers.%d.mlp.%sup_proj.weight", l, pre);
                T(d, in, "model.layers.%d.mlp.%sdown_proj.weight", l, pre);
            }
        }
    }
#undef T
    return n;
}

static void check_model(const char *json, brt_dtype dt)
{
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    assert_non_null(o);
    brt_model_config cfg;
    brt_err err;
    if (brt_config_from_json(o, NULL, "test config", &cfg, &err) != BRT_OK)
        fail_msg("%s", err.msg);
    json_decref(o);
    assert_true(cfg.weight_dtype_given);
    assert_int_equal(cfg.weight_dtype, dt);

    tensor_spec *spec = calloc(512, sizeof *spec);
    size_t n = checkpoint_tensors(&cfg, spec);
    brt_st_out_tensor *out = calloc(n, sizeof *out);
    static char zeros[1 << 16];
    for (size_t i = 0; i < n; i++) {
        out[i].name = spec[i].name;
        out[i].dtype = dt;
        out[i].ndim = spec[i].rows == 1 ? 1 : 2;
        out[i].shape[0] = spec[i].rows == 1 ? spec[i].cols : spec[i].rows;
        out[i].shape[1] = spec[i].cols;
        assert_true(spec[i].rows * spec[i].cols * 2 <= (int64_t)sizeof zeros);
        out[i].data = zeros;
    }
    char dir[] = "/tmp/brt-plan-weights.XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (brt_st_write(path, out, n, &err) != BRT_OK)
        fail_msg("%s", err.msg);
    brt_st_set set;
    if (brt_st_set_open_dir(dir, &set, &err) != BRT_OK || brt_weights_check_names(&set, &cfg, &err) != BRT_OK)
        fail_msg("%s", err.msg);

    /* every split into 1..3 stages: [0, x), [x, y), [y, L) */
    const int32_t L = cfg.n_layers;
    int checked = 0;
    for (int32_t x = 1; x <= L; x++)
        for (int32_t y = x; y <= L; y++) {
            int32_t cuts[4] = {0, x, y, L}, pp = 0, lay[4];
            lay[pp++] = 0;
            for (int i = 1; i < 4; i++)
                if (cuts[i] > lay[pp - 1])
                    lay[pp++] = cuts[i];
            pp--; /* stages */
            for (int32_t s = 0; s < pp; s++) {
                const int first = s == 0, last = s == pp - 1;
                brt_weights w;
                if (brt_weights_bind(&set, &cfg, lay[s], lay[s + 1], first, last, &w, &err) != BRT_OK)
                    fail_msg("bind [%d, %d): %s", lay[s], lay[s + 1], err.msg);
                brt_weight_count from_files, from_config;
                brt_weight_count_stage(&cfg, &set, BRT_DT_F32 /* unused with files */, lay[s], lay[s + 1], first, last,
                                       &from_files);
                brt_weight_count_stage(&cfg, NULL, cfg.weight_dtype, lay[s], lay[s + 1], first, last, &from_config);
                if (from_files.bytes != w.bytes || from_config.bytes != w.bytes ||
                    from_config.params != from_files.params || from_config.vec_params != from_files.vec_params)
                    fail_msg("stage %d of %d, layers [%d, %d): bound %lld B, counted %lld B from the files and %lld B "
                             "from the config (params %lld / %lld, vectors %lld / %lld)",
                             s, pp, lay[s], lay[s + 1], (long long)w.bytes, (long long)from_files.bytes,
                             (long long)from_config.bytes, (long long)from_files.params, (long long)from_config.params,
                             (long long)from_files.vec_params, (long long)from_config.vec_params);
                brt_weights_free(&w);
                checked++;
            }
        }
    assert_true(checked > L);
    brt_st_set_close(&set);
    unlink(path);
    rmdir(dir);
    free(out);
    free(spec);
}

static void test_qwen2_beacon_v2_bf16_untied(void **s)
{
    (void)s;
    check_model("{\"model_type\": \"qwen2\", \"vocab_size\": 40, \"hidden_size\": 16, \"intermediate_size\": 24,"
                " \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
                " \"max_position_embeddings\": 64, \"beacon_window\": 8, \"beacon_stride\": 8, \"beacon_ratio\": [2],"
                " \"beacon_param\": [\"q\", \"k\", \"v\"], \"beacon_pos\": \"interleave\","
                " \"beacon_attn\": \"full-coverage\", \"torch_dtype\": \"bfloat16\"}",
                BRT_DT_BF16);
}

static void test_llama_tied_biases_beacon_v1_f16(void **s)
{
    (void)s;
    check_model("{\"model_type\": \"llama\", \"vocab_size\": 40, \"hidden_size\": 16, \"intermediate_size\": 24,"
                " \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 4,"
                " \"max_position_embeddings\": 64, \"tie_word_embeddings\": true, \"attention_bias\": true,"
                " \"beacon_window\": 8, \"beacon_ratio\": [2], \"torch_dtype\": \"float16\"}",
                BRT_DT_F16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen2_beacon_v2_bf16_untied),
        cmocka_unit_test(test_llama_tied_biases_beacon_v1_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
