/* The stage's work counters (brt_stage_work_done), which FLOP rates and MFU are computed from,
 * against counts worked out independently of the engine:
 *  - full attention: every layer sees L rows, row i sees keys 0..i (L(L+1)/2 pairs per layer),
 *    lm_head runs on every row when all prompt logits are asked for, on none when only sampling
 *    a first token is not asked for either;
 *  - Activation Beacon v1: the rows through the layers are brt_plan_state_need's rows (tokens +
 *    beacon slots) on every layer, and its attention sees fewer pairs than full attention would;
 *  - brt_stage_work_flops: the formula on a Llama-2-7B-shaped config by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/node.h"
#include "engine/policy.h"
#include "engine/stage.h"
#include "model/config.h"
#include "node_harness.h"
#include "sched/sched.h"

#define GOLDEN BRT_SOURCE_DIR "/tests/data/golden/"

/* ctx: a char[512] that says "not finished" until the job ends, then "" or why it failed */
static void on_done(void *ctx, brt_job *job)
{
    snprintf(ctx, 512, "%s", job->status == BRT_JOB_DONE ? "" : job->error[0] ? job->error : "failed");
}

/* One job of n prompt tokens (ids 3, 4, ... mod 500) on a golden set's model; full = all prompt
 * logits, else one greedy token. Returns the work done and the config. */
static brt_stage_work work_of(const char *set, int64_t n, int full, int32_t max_new, brt_model_config *cfg)
{
    char dir[1024];
    snprintf(dir, sizeof dir, GOLDEN "%s", set);
    char why[512] = "not finished";
    brt_node *node = harness_node(dir, NULL, 1, (int64_t)64 << 20, on_done, why);
    brt_err err;
    memset(&err, 0, sizeof err);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    assert_non_null(ids);
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)(3 + i % 500);
    brt_job_spec spec = harness_spec("work", ids, n, max_new, full);
    brt_job *job = NULL;
    if (brt_sched_submit(node->sched, &spec, &job, &err) != BRT_OK || brt_node_run(node, &err) != BRT_OK)
        fail_msg("%s: run: %s", set, err.msg);
    if (why[0])
        fail_msg("%s: the job did not finish: %s", set, why);
    brt_stage_work w = brt_stage_work_done(node->stage);
    *cfg = node->model.cfg;
    brt_node_close(node);
    free(ids);
    return w;
}

static void test_full_attention_counts_every_row_and_causal_pair(void **s)
{
    (void)s;
    brt_model_config cfg;
    const int64_t L = 300;
    brt_stage_work w = work_of("llama-tiny", L, 1, 0, &cfg);
    printf("   llama-tiny, %lld tokens, all logits: layer rows %lld, pairs %lld, lm_head rows %lld\n", (long long)L,
           (long long)w.layer_rows, (long long)w.attn_pairs, (long long)w.logit_rows);
    assert_int_equal(w.layer_rows, L * cfg.n_layers);
    assert_int_equal(w.attn_pairs, cfg.n_layers * L * (L + 1) / 2);
    assert_int_equal(w.logit_rows, L);

    /* 5 generated tokens: the prompt's last row and 4 decode steps reach lm_head; each decode
     * step is one row seeing every earlier key and itself */
    w = work_of("llama-tiny", L, 0, 5, &cfg);
    assert_int_equal(w.layer_rows, (L + 4) * cfg.n_layers);
    int64_t pairs = L * (L + 1) / 2;
    for (int64_t t = L; t < L + 4; t++)
        pairs += t + 1;
    assert_int_equal(w.attn_pairs, cfg.n_layers * pairs);
    assert_int_equal(w.logit_rows, 5);
}

static void test_beacon_rows_are_the_plans_tokens_plus_beacon_slots(void **s)
{
    (void)s;
    static const char *sets[] = {"beacon-tiny", "beacon-tiny-gqa", "beacon-tiny-adapt"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        brt_model_config cfg;
        const int64_t L = 700;
        brt_stage_work w = work_of(sets[i], L, 1, 0, &cfg);
        brt_state_need need;
        brt_err err;
        assert_int_equal(brt_plan_state_need(&cfg, L, 0, 512, &need, &err), BRT_OK);
        printf("   %s, %lld tokens: layer rows %lld (plan: %lld per layer), pairs %lld, lm_head rows %lld\n", sets[i],
               (long long)L, (long long)w.layer_rows, (long long)need.rows, (long long)w.attn_pairs,
               (long long)w.logit_rows);
        assert_true(need.rows > L); /* beacon slots were planned */
        assert_int_equal(w.layer_rows, need.rows * cfg.n_layers);
        assert_int_equal(w.logit_rows, L);
        /* a condensed memory: fewer pairs than full attention over the same rows, more than a
         * row seeing itself alone */
        assert_true(w.attn_pairs < cfg.n_layers * need.rows * (need.rows + 1) / 2);
        assert_true(w.attn_pairs > w.layer_rows);
    }
}

static void test_flops_formula_on_a_llama2_7b_shape(void **s)
{
    (void)s;
    brt_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.hidden = 4096, cfg.intermediate = 11008, cfg.n_heads = 32, cfg.n_kv_heads = 32, cfg.head_dim = 128;
    cfg.vocab_size = 32000;
    brt_stage_work w = {1000, 50000, 10};
    /* per row: 4 x 4096^2 (q, k, v, o) + 3 x 4096 x 11008 (gate, up, down) multiply-adds */
    double want = 2.0 * (4.0 * 4096 * 4096 + 3.0 * 4096 * 11008) * 1000 + 4.0 * 128 * 32 * 50000 +
                  2.0 * 4096 * 32000 * 10;
    assert_float_equal(brt_stage_work_flops(&cfg, &w), want, want * 1e-12);
    cfg.n_kv_heads = 8; /* GQA 4: k and v shrink to a quarter */
    want -= 2.0 * (2.0 * 4096 * 4096 * 3 / 4) * 1000;
    assert_float_equal(brt_stage_work_flops(&cfg, &w), want, want * 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_attention_counts_every_row_and_causal_pair),
        cmocka_unit_test(test_beacon_rows_are_the_plans_tokens_plus_beacon_slots),
        cmocka_unit_test(test_flops_formula_on_a_llama2_7b_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
