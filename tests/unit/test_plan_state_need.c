/* brt_plan_state_need / brt_plan_job_bytes: the state a job needs, known before it starts.
 *  - beacon v1: memory floor(L/W)*k, the open window at most W + k: bounded per ratio (the same
 *    peak window for a 10x longer document), and with the adaptive ratio memory + window stays
 *    within max_position_embeddings for every L up to (P - W) * max ratio;
 *  - full: grows linearly with the document;
 *  - FoT: memory grows linearly, in memory layers only; other layers hold at most one window;
 *  - the need is sufficient: running the job through the real state keeper never uses more
 *    pool bytes than brt_plan_job_bytes reserved. */
#include "policy_harness.h"

static brt_state_need need_of(const brt_model_config *cfg, int64_t prompt, int64_t max_new, int32_t chunk)
{
    brt_state_need n;
    brt_err err;
    memset(&err, 0, sizeof err);
    if (brt_plan_state_need(cfg, prompt, max_new, chunk, &n, &err) != BRT_OK)
        fail_msg("brt_plan_state_need(%lld, %lld): %s", (long long)prompt, (long long)max_new, err.msg);
    return n;
}

static void test_beacon_v1_memory_formula_and_bounded_window_per_ratio(void **s)
{
    (void)s;
    const int32_t W = 64, ratios[] = {2, 4, 8, 16};
    for (size_t ri = 0; ri < sizeof ratios / sizeof ratios[0]; ri++) {
        const int32_t r = ratios[ri], k = W / r;
        char json[256];
        snprintf(json, sizeof json, "{\"beacon_window\": %d, \"beacon_ratio\": [%d]}", W, r);
        brt_model_config cfg;
        h_cfg(json, &cfg);
        int64_t prev_mem = -1, peak_raw = 0;
        for (int64_t L = 1; L <= 20000; L = L < 200 ? L + 7 : L * 3 / 2) {
            brt_state_need n = need_of(&cfg, L, 1, 512);
            /* beacon.md §9: M = floor(L/W) k; the peak window (raw + this step's raw rows) is W:
             * beacon rows go straight to memory */
            assert_int_equal(n.mem, (L / W) * k);
            assert_int_equal(n.sink, 0);
            assert_int_equal(n.raw, L >= W ? W : L);
            assert_int_equal(n.steps, (L + W - 1) / W);
            assert_true(n.mem >= prev_mem); /* monotone */
            prev_mem = n.mem;
            if (n.raw > peak_raw)
                peak_raw = n.raw;
        }
        assert_int_equal(peak_raw, W);
        /* a 10x longer document: the same window peak, ten times the memory */
        brt_state_need a = need_of(&cfg, 10 * W * 100, 1, 512), b = need_of(&cfg, W * 100, 1, 512);
        assert_int_equal(a.raw, b.raw);
        assert_int_equal(a.mem, 10 * b.mem);
        /* decoding: the window fills during generation too (prompt + max_new - 1 tokens fed) */
        brt_state_need g = need_of(&cfg, 3 * W + 5, 2 * W, 512);
        assert_int_equal(g.mem, ((3 * W + 5 + 2 * W - 1) / W) * k);
        assert_int_equal(g.raw, W);
        assert_int_equal(g.steps, 4 + (2 * W - 1));
    }
}

static void test_beacon_v1_stride_lt_window_keeps_raw_tail(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg("{\"beacon_window\": 64, \"beacon_stride\": [32], \"beacon_ratio\": [4]}", &cfg);
    for (int64_t L = 64; L <= 6400; L += 97) {
        brt_state_need n = need_of(&cfg, L, 1, 512);
        const int64_t F = (L - 64) / 32 + 1;
        assert_int_equal(n.mem, F * 8);
        assert_int_equal(n.raw, 64); /* W - S cached + S new (the k beacons go to memory) */
    }
}

static void test_beacon_v1_adaptive_memory_plus_window_within_max_positions(void **s)
{
    (void)s;
    /* Llama-2 recipe: the adaptive ratio keeps M + W <= P = 4096 for every document up to
     * 3072 * 128 tokens (beacon.md §9: "with the adaptive r, M+W <= P") */
    brt_model_config cfg;
    h_cfg("{\"max_position_embeddings\": 4096, \"beacon_window\": 1024, \"beacon_stride\": [1024], "
          "\"beacon_ratio\": [2,4,8,16,32,64,128], \"beacon_ratio_mix\": \"adapt-1024\"}",
          &cfg);
    static const int64_t Ls[] = {1024, 4096, 6144, 6145, 12288, 12289, 24576, 32768, 49152, 98304,
                                 100000, 196608, 196609, 300000, 393216};
    for (size_t i = 0; i < sizeof Ls / sizeof Ls[0]; i++) {
        brt_state_need n = need_of(&cfg, Ls[i], 1, 512);
        if (n.mem + 1024 > 4096)
            fail_msg("L = %lld: memory %lld + window 1024 exceeds 4096", (long long)Ls[i], (long long)n.mem);
        assert_true(n.raw <= 1024 + 512);
    }
    /* beacon.md §9 worked numbers: 32K -> r = 16, 2048 slots; 100K -> r = 64, 1552 memory */
    assert_int_equal(need_of(&cfg, 32768, 1, 512).mem, 2048);
    assert_int_equal(need_of(&cfg, 100000, 1, 512).mem, 1552);
    assert_int_equal(need_of(&cfg, 400000, 1, 512).mem, 3120);
}

static void test_beacon_v2_interleave_counts(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg("{\"beacon_window\": 64, \"beacon_stride\": 64, \"beacon_ratio\": [4], \"beacon_pos\": \"interleave\", "
          "\"beacon_attn\": \"full-coverage\", \"beacon_sink_size\": 1}",
          &cfg);
    for (int64_t L = 64; L <= 6400; L += 131) {
        brt_state_need n = need_of(&cfg, L, 1, 512);
        assert_int_equal(n.mem, (L / 64) * 16);
        assert_int_equal(n.sink, 1);
        assert_int_equal(n.raw, 64 + 16);
    }
}

static void test_full_grows_linearly(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg("{}", &cfg);
    assert_int_equal(cfg.policy, BRT_POLICY_FULL);
    for (int64_t L = 1; L <= 100000; L = L * 3 + 1) {
        brt_state_need n = need_of(&cfg, L, 16, 512);
        assert_int_equal(n.raw, L + 15);
        assert_int_equal(n.mem, 0);
        brt_state_need n2 = need_of(&cfg, 2 * L, 1, 512);
        assert_int_equal(n2.raw, 2 * L);
    }
    const int32_t bb = 4096;
    int64_t b1 = brt_plan_job_bytes(&cfg, &(brt_state_need){0, 0, 10000, 0, 0}, 0, cfg.n_layers, bb, BRT_DT_F32);
    int64_t b10 = brt_plan_job_bytes(&cfg, &(brt_state_need){0, 0, 100000, 0, 0}, 0, cfg.n_layers, bb, BRT_DT_F32);
    assert_true(b10 >= 10 * b1 - 10 * cfg.n_layers * 2 * bb && b10 <= 10 * b1);
}

static void test_fot_memory_linear_in_memory_layers_only(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg_golden("longllama-tiny-bf16mem", &cfg); /* W 72, Lc 64, memory layers 1 and 2 */
    for (int64_t N = 1; N <= 50000; N = N * 2 + 3) {
        brt_state_need n = need_of(&cfg, N, 1, 512);
        assert_int_equal(n.mem, N > 64 ? N - 64 : 0);
        assert_true(n.raw <= 72);
    }
    /* generation: 700 + 16 flushes once (72 slots) at decode call 9 */
    brt_state_need g = need_of(&cfg, 700, 16, 512);
    assert_int_equal(g.mem, 636 + 72);
    const int32_t bb = 2048;
    brt_state_need a = need_of(&cfg, 5000, 1, 512), b = need_of(&cfg, 50000, 1, 512);
    /* layer 0 has no memory: the same bytes for a 10x longer document */
    assert_int_equal(brt_plan_job_bytes(&cfg, &a, 0, 1, bb, BRT_DT_F32), brt_plan_job_bytes(&cfg, &b, 0, 1, bb, BRT_DT_F32));
    /* memory layers grow ~10x */
    for (int32_t l = 1; l <= 2; l++) {
        double ra = (double)brt_plan_job_bytes(&cfg, &a, l, l + 1, bb, BRT_DT_F32),
               rb = (double)brt_plan_job_bytes(&cfg, &b, l, l + 1, bb, BRT_DT_F32);
        assert_true(rb / ra > 9.0 && rb / ra < 11.0);
    }
    /* bf16 memory costs half of f32 memory */
    brt_model_config f32 = cfg;
    f32.fot.mem_bf16 = 0;
    double m16 = (double)brt_plan_job_bytes(&cfg, &b, 1, 2, bb, BRT_DT_F32), m32 = (double)brt_plan_job_bytes(&f32, &b, 1, 2, bb, BRT_DT_F32);
    assert_true(m32 / m16 > 1.9 && m32 / m16 < 2.1);
}

/* ---- the reservation suffices ----------------------------------------------------------------- */

static void check_reservation(brt_model_config *cfg, int64_t prompt, int64_t max_new)
{
    harness *h = malloc(sizeof *h);
    assert_non_null(h);
    const int64_t total = prompt + (max_new > 1 ? max_new - 1 : 0);
    h_init(h, cfg, total);
    assert_int_equal(h->n_layers, cfg->n_layers);
    brt_state_need need = need_of(cfg, prompt, max_new, 512);
    const int64_t reserved = brt_plan_job_bytes(cfg, &need, 0, cfg->n_layers, brt_kvpool_block_bytes(h->pool), BRT_DT_F32);
    int64_t steps = 0;
    for (int64_t avail = prompt; avail <= total; avail++)
        steps += h_run_to(h, avail);
    assert_int_equal(steps, need.steps);
    const int64_t peak = brt_kvpool_peak_bytes(h->pool);
    if (peak > reserved)
        fail_msg("%s, prompt %lld + %lld new: the state peaked at %lld pool bytes, the plan reserved %lld",
                 brt_policy_name(cfg->policy), (long long)prompt, (long long)max_new, (long long)peak,
                 (long long)reserved);
    h_free(h);
    free(h);
}

static void test_reservation_covers_real_state_beacon(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg("{\"beacon_window\": 16, \"beacon_ratio\": [4]}", &cfg);
    check_reservation(&cfg, 100, 40);
    check_reservation(&cfg, 5, 60);
    h_cfg("{\"beacon_window\": 16, \"beacon_stride\": [8], \"beacon_ratio\": [2]}", &cfg);
    check_reservation(&cfg, 100, 40);
    h_cfg("{\"beacon_window\": 16, \"beacon_ratio\": [0, 2, 4], \"beacon_ratio_mix\": \"adapt-4\", "
          "\"max_position_embeddings\": 64}",
          &cfg);
    check_reservation(&cfg, 10, 30);
    check_reservation(&cfg, 300, 30);
    h_cfg("{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_pos\": \"interleave\", "
          "\"beacon_attn\": \"full-coverage\", \"beacon_sink_size\": 2}",
          &cfg);
    check_reservation(&cfg, 100, 40);
    check_reservation(&cfg, 3, 60);
    h_cfg("{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_pos\": \"append\", "
          "\"beacon_attn\": \"segmentation\"}",
          &cfg);
    check_reservation(&cfg, 100, 40);
}

static void test_reservation_covers_real_state_fot_and_full(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg_golden("longllama-tiny-bf16mem", &cfg);
    check_reservation(&cfg, 700, 16);
    check_reservation(&cfg, 65, 100);
    h_cfg_golden("longllama-tiny", &cfg);
    check_reservation(&cfg, 200, 30);
    h_cfg("{}", &cfg);
    check_reservation(&cfg, 300, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beacon_v1_memory_formula_and_bounded_window_per_ratio),
        cmocka_unit_test(test_beacon_v1_stride_lt_window_keeps_raw_tail),
        cmocka_unit_test(test_beacon_v1_adaptive_memory_plus_window_within_max_positions),
        cmocka_unit_test(test_beacon_v2_interleave_counts),
        cmocka_unit_test(test_full_grows_linearly),
        cmocka_unit_test(test_fot_memory_linear_in_memory_layers_only),
        cmocka_unit_test(test_reservation_covers_real_state_beacon),
        cmocka_unit_test(test_reservation_covers_real_state_fot_and_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
