/* The released checkpoints' config.json (configs/models/) load as they are, with the values that
 * set them apart: LongLLaMA 3B's head dimension of 100, Code-7B's rope_theta 1e6 and 32016-token
 * vocabulary, the Activation Beacon v1 Llama-2 and v2 Qwen2 settings (Qwen2's q/k/v biases, GQA,
 * an eos list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "model/config.h"

static void load(const char *name, brt_model_config *c)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/models/%s", BRT_SOURCE_DIR, name);
    brt_err err;
    brt_status st = brt_config_load_file(path, NULL, c, &err);
    if (st != BRT_OK)
        fail_msg("%s: %s", name, err.msg);
}

static void test_long_llama_3b_v1_0_and_v1_1(void **s)
{
    (void)s;
    brt_model_config c;
    for (int v = 0; v < 2; v++) {
        load(v ? "long_llama_3b_v1_1.json" : "long_llama_3b.json", &c);
        assert_int_equal(c.policy, BRT_POLICY_FOT);
        assert_int_equal(c.head_dim, 100); /* 3200 / 32: not a power of two */
        assert_int_equal(c.n_layers, 26);
        assert_int_equal(c.fot.window, 2048);
        assert_int_equal(c.fot.last_context_length, 1024); /* v1.0 omits it: the class default */
        assert_int_equal(c.fot.n_mem_layers, 3);
        assert_true(c.fot.is_mem_layer[6] && c.fot.is_mem_layer[12] && c.fot.is_mem_layer[18]);
        assert_true(c.fot.mem_bf16 && c.fot.mem_positionals);
        assert_true(c.rope_theta == 10000.0);
        assert_true(c.rms_eps > 0.99e-6f && c.rms_eps < 1.01e-6f);
        assert_false(c.tie_embeddings);
    }
}

static void test_long_llama_code_7b(void **s)
{
    (void)s;
    brt_model_config c;
    load("long_llama_code_7b.json", &c);
    assert_int_equal(c.policy, BRT_POLICY_FOT);
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.vocab_size, 32016);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.fot.window, 4096);
    assert_int_equal(c.fot.last_context_length, 3072);
    assert_true(c.fot.is_mem_layer[8] && c.fot.is_mem_layer[16] && c.fot.is_mem_layer[24]);
}

static void test_activation_beacon_llama2_7b_chat(void **s)
{
    (void)s;
    brt_model_config c;
    load("activation-beacon-llama2-7b-chat.json", &c);
    assert_int_equal(c.policy, BRT_POLICY_BEACON_V1);
    assert_int_equal(c.beacon.window, 1024);
    assert_int_equal(c.beacon.stride, 1024);
    assert_int_equal(c.beacon.n_ratios, 7);
    assert_int_equal(c.beacon.ratio_mix, BRT_RATIO_MIX_ADAPT);
    assert_int_equal(c.beacon.adapt_extra, 1024);
    assert_int_equal(c.beacon.attn, BRT_BEACON_ATTN_STEP_EXPANSION);
    assert_int_equal(c.beacon.param, BRT_BEACON_PARAM_Q | BRT_BEACON_PARAM_K | BRT_BEACON_PARAM_V | BRT_BEACON_PARAM_O);
    assert_int_equal(c.max_pos, 4096);
}

static void test_beacon_qwen2_7b_instruct(void **s)
{
    (void)s;
    brt_model_config c;
    load("beacon-qwen-2-7b-instruct.json", &c);
    assert_int_equal(c.policy, BRT_POLICY_BEACON_V2);
    assert_int_equal(c.beacon.pos, BRT_BEACON_POS_INTERLEAVE);
    assert_int_equal(c.beacon.window, 2048);
    assert_int_equal(c.beacon.attn, BRT_BEACON_ATTN_FULL_COVERAGE);
    assert_int_equal(c.beacon.param, BRT_BEACON_PARAM_Q | BRT_BEACON_PARAM_K | BRT_BEACON_PARAM_V);
    assert_true(c.qkv_bias && !c.o_bias); /* Qwen2: q/k/v biases, none on o */
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.eos_id, 151645); /* the first of the eos list, as the official beacon init */
    assert_true(c.rope_theta == 1e6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_llama_3b_v1_0_and_v1_1),
        cmocka_unit_test(test_long_llama_code_7b),
        cmocka_unit_test(test_activation_beacon_llama2_7b_chat),
        cmocka_unit_test(test_beacon_qwen2_7b_instruct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
