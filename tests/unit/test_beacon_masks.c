/* Activation Beacon attention masks: the visible key intervals the policy's `prepare` gives
 * every row, for every attention mode of v1 and v2, checked key by key against the rules of
 * beacon.md §4 and the official-code notes (A3, B2), on real layer states that already hold
 * memory (earlier windows) and a raw window cache.
 *
 * Key order of a step: [sink | beacon memory M | raw window cache R | this step's rows].
 * v1 / v2 append, full window with k beacons appended after the n new raw rows (w = R + n):
 *   raw row j: causal, keys [0, sink+M+R+j]; never the new beacons;
 *   beacon i:  memory      v1: iff beacon_attend_previous; v2: always;
 *              window col  step-expansion j < (i+1)s; segmentation i*s <= j < (i+1)s;
 *                          full-coverage all (v2 full-coverage: plain causal over everything);
 *              new beacons v1: itself only; v2: beacons 0..i if attend_prev, else itself.
 * v2 interleave: plain causal over the slot sequence. */
#include "policy_harness.h"

/* ---- rule checker ------------------------------------------------------------------------ */

typedef struct probe {
    int steps;             /* steps checked */
    int beacon_steps;      /* steps with beacon rows */
    int rich_steps;        /* beacon steps with memory > 0 and a raw cache > 0 */
    int64_t beacon_rows;
    int64_t raw_rows;
} probe;

static void check_rules(harness *h, brt_layer_ctx *c, void *ud)
{
    probe *pr = ud;
    const brt_model_config *cfg = &h->cfg;
    const brt_beacon_config *b = &cfg->beacon;
    const brt_step *st = c->step;
    const int v2 = cfg->policy == BRT_POLICY_BEACON_V2;
    const int interleave = v2 && b->pos == BRT_BEACON_POS_INTERLEAVE;
    const int32_t sink = c->ls->sink_k.n, M = c->ls->mem_k.n, R = c->ls->raw_k.n;
    assert_int_equal(sink, st->expect_sink);
    assert_int_equal(M, st->expect_mem);
    assert_int_equal(R, st->expect_raw);
    if (!v2)
        assert_int_equal(sink, 0);
    const int32_t nk = h_n_keys(c);
    assert_int_equal(nk, sink + M + R + st->n_rows);
    /* the step's own rows are the last span */
    assert_true(c->n_spans >= 1);
    assert_ptr_equal(c->spans[c->n_spans - 1].k.buf, c->k.buf);
    assert_int_equal(c->spans[c->n_spans - 1].k.off, c->k.off);
    assert_int_equal(c->spans[c->n_spans - 1].n, st->n_rows);

    const int32_t base = sink + M, nr = st->n_raw, k = st->n_rows - nr, w = R + nr, bcol = base + w;
    int32_t span = 0;
    if (!interleave && k > 0) {
        /* beacon.md §2: k = S / r beacons; the rule's span is S / k (= r when r divides S) */
        assert_true(st->flags & BRT_STEP_FULL_WINDOW);
        assert_true(st->ratio > 0);
        assert_int_equal(k, b->stride / st->ratio);
        span = b->stride / k;
        /* v1 / append: the raw rows first, the beacons last */
        for (int32_t r = 0; r < st->n_rows; r++)
            assert_int_equal(st->kind[r], r < nr ? BRT_ROW_RAW : BRT_ROW_BEACON);
    }
    uint8_t *want = malloc((size_t)nk + 1);
    assert_non_null(want);
    for (int32_t r = 0; r < st->n_rows; r++) {
        memset(want, 0, (size_t)nk);
        if (interleave || r < nr) {
            /* plain causal: every earlier key and itself */
            for (int32_t j = 0; j <= base + R + r; j++)
                want[j] = 1;
            if (st->kind[r] == BRT_ROW_BEACON)
                pr->beacon_rows++;
            else
                pr->raw_rows++;
        } else {
            const int32_t i = r - nr;
            pr->beacon_rows++;
            if (v2 && b->attn == BRT_BEACON_ATTN_FULL_COVERAGE) {
                for (int32_t j = 0; j <= bcol + i; j++)
                    want[j] = 1;
            } else {
                if (v2 || b->attend_prev)
                    for (int32_t j = 0; j < base; j++)
                        want[j] = 1;
                for (int32_t j = 0; j < w; j++) {
                    int vis = 0;
                    switch (b->attn) {
                    case BRT_BEACON_ATTN_STEP_EXPANSION: vis = j < (i + 1) * span; break;
                    case BRT_BEACON_ATTN_SEGMENTATION: vis = j >= i * span && j < (i + 1) * span; break;
                    case BRT_BEACON_ATTN_FULL_COVERAGE: vis = 1; break;
                    }
                    want[base + j] = (uint8_t)vis;
                }
                if (v2 && b->attend_prev)
                    for (int32_t j = 0; j <= i; j++)
                        want[bcol + j] = 1;
                else
                    want[bcol + i] = 1;
            }
        }
        h_expect_row(c, r, want, nk, cfg->policy == BRT_POLICY_BEACON_V1 ? "v1" : "v2");
    }
    free(want);
    pr->steps++;
    if (k > 0 || (interleave && st->n_rows > nr)) {
        pr->beacon_steps++;
        if (M > 0 && R > 0)
            pr->rich_steps++;
    }
}

/* Run a call schedule (token counts that arrive together) with the rule check on layer 0. */
static probe run_schedule(const char *json, const int *calls, int n_calls)
{
    brt_model_config cfg;
    h_cfg(json, &cfg);
    harness *h = malloc(sizeof *h);
    assert_non_null(h);
    int64_t total = 0;
    for (int i = 0; i < n_calls; i++)
        total += calls[i];
    h_init(h, &cfg, total);
    h->n_layers = 2; /* two layers are enough; both keep state */
    probe pr = {0};
    int64_t avail = 0;
    for (int i = 0; i < n_calls; i++) {
        avail += calls[i];
        brt_step st;
        while (h_plan(h, avail, &st) == 1) {
            h_apply(h, &st, 0, check_rules, &pr);
            brt_step_free_arrays(&st);
        }
    }
    h_free(h);
    free(h);
    return pr;
}

/* S = W = 16, r = 4: the prompt fills two windows and opens a third (raw cache 8); the next
 * call (12 tokens) completes it with memory 8 and raw cache 8, then single tokens. */
static const int k_calls_sw[] = {40, 12, 1, 1, 1, 1, 9, 1, 1};
/* S = 8 < W = 16, r = 4: every full window keeps W - S = 8 raw slots; the windows of the
 * second and third calls complete with memory > 0 and a raw cache of 8..15 slots. */
static const int k_calls_s_lt_w[] = {40, 5, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void v1_case(const char *attn, int attend_prev, int stride)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"beacon_window\": 16, \"beacon_stride\": [%d], \"beacon_ratio\": [4], \"beacon_attn\": \"%s\","
             " \"beacon_attend_previous\": %s, \"beacon_param\": [\"q\",\"k\",\"v\",\"o\"]}",
             stride, attn, attend_prev ? "true" : "false");
    probe pr = stride == 16 ? run_schedule(json, k_calls_sw, N_OF(k_calls_sw))
                            : run_schedule(json, k_calls_s_lt_w, N_OF(k_calls_s_lt_w));
    /* the scenario must really exercise beacons over memory and a raw cache */
    assert_true(pr.beacon_steps >= 3);
    assert_true(pr.rich_steps >= 1);
    assert_true(pr.beacon_rows > 0 && pr.raw_rows > 0);
}

static void test_v1_step_expansion_attend_previous(void **s) { (void)s; v1_case("step-expansion", 1, 16); }
static void test_v1_step_expansion_no_attend_previous(void **s) { (void)s; v1_case("step-expansion", 0, 16); }
static void test_v1_segmentation_attend_previous(void **s) { (void)s; v1_case("segmentation", 1, 16); }
static void test_v1_segmentation_no_attend_previous(void **s) { (void)s; v1_case("segmentation", 0, 16); }
static void test_v1_full_coverage_attend_previous(void **s) { (void)s; v1_case("full-coverage", 1, 16); }
static void test_v1_full_coverage_no_attend_previous(void **s) { (void)s; v1_case("full-coverage", 0, 16); }
static void test_v1_stride_lt_window_step_expansion_attend_previous(void **s) { (void)s; v1_case("step-expansion", 1, 8); }
static void test_v1_stride_lt_window_step_expansion_no_attend_previous(void **s) { (void)s; v1_case("step-expansion", 0, 8); }
static void test_v1_stride_lt_window_segmentation_attend_previous(void **s) { (void)s; v1_case("segmentation", 1, 8); }
static void test_v1_stride_lt_window_segmentation_no_attend_previous(void **s) { (void)s; v1_case("segmentation", 0, 8); }
static void test_v1_stride_lt_window_full_coverage_attend_previous(void **s) { (void)s; v1_case("full-coverage", 1, 8); }
static void test_v1_stride_lt_window_full_coverage_no_attend_previous(void **s) { (void)s; v1_case("full-coverage", 0, 8); }

/* Ratio 0: full windows keep raw activations, no beacon rows: plain causal everywhere. */
static void test_v1_ratio0_plain_causal(void **s)
{
    (void)s;
    probe pr = run_schedule("{\"beacon_window\": 16, \"beacon_ratio\": [0]}", k_calls_sw, N_OF(k_calls_sw));
    assert_int_equal(pr.beacon_rows, 0);
    assert_true(pr.steps >= 5);
}

static void v2_append_case(const char *attn, int attend_prev, int sink)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_attn\": \"%s\","
             " \"beacon_attend_prev\": %s, \"beacon_pos\": \"append\", \"beacon_sink_size\": %d,"
             " \"beacon_param\": [\"q\",\"k\",\"v\"]}",
             attn, attend_prev ? "true" : "false", sink);
    probe pr = run_schedule(json, k_calls_sw, N_OF(k_calls_sw));
    assert_true(pr.beacon_steps >= 3);
    assert_true(pr.rich_steps >= 1);
}

static void test_v2_append_step_expansion_attend_prev(void **s) { (void)s; v2_append_case("step-expansion", 1, 0); }
static void test_v2_append_step_expansion_no_attend_prev(void **s) { (void)s; v2_append_case("step-expansion", 0, 0); }
static void test_v2_append_segmentation_attend_prev(void **s) { (void)s; v2_append_case("segmentation", 1, 0); }
static void test_v2_append_segmentation_no_attend_prev(void **s) { (void)s; v2_append_case("segmentation", 0, 0); }
static void test_v2_append_full_coverage_plain_causal(void **s) { (void)s; v2_append_case("full-coverage", 1, 0); }
static void test_v2_append_full_coverage_no_attend_prev_plain_causal(void **s) { (void)s; v2_append_case("full-coverage", 0, 0); }
static void test_v2_append_step_expansion_with_sink(void **s) { (void)s; v2_append_case("step-expansion", 1, 2); }

static void v2_interleave_case(int ratio, int sink)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [%d], \"beacon_attn\": "
             "\"full-coverage\", \"beacon_pos\": \"interleave\", \"beacon_sink_size\": %d}",
             ratio, sink);
    /* interleave: beacons also appear in partial windows, so single tokens get them too */
    probe pr = run_schedule(json, k_calls_sw, N_OF(k_calls_sw));
    assert_true(pr.beacon_steps >= 4);
    assert_true(pr.rich_steps >= 1);
}

static void test_v2_interleave_plain_causal_ratio4(void **s) { (void)s; v2_interleave_case(4, 0); }
static void test_v2_interleave_plain_causal_ratio2(void **s) { (void)s; v2_interleave_case(2, 0); }
static void test_v2_interleave_plain_causal_with_sink(void **s) { (void)s; v2_interleave_case(4, 2); }

/* ---- keys stored at their memory positions ------------------------------------------------
 * A completed window's beacons enter memory rotated at sink + M_old + i (their slot), not at
 * their creation position (beacon.md §5, §12.1); the open window's keys sit at sink + M + j
 * and move when memory grows (v1 with S < W). Checked against a reference RoPE. */

typedef struct memprobe {
    int32_t m_old, n_expect;
    float *expect_pre; /* [n_expect, kvd] pre-RoPE keys that must become memory, in order */
} memprobe;

static void collect_new_memory(harness *h, brt_layer_ctx *c, void *ud)
{
    memprobe *mp = ud;
    const brt_step *st = c->step;
    const int32_t kvd = h->cfg.n_kv_heads * h->cfg.head_dim;
    const int interleave = h->cfg.policy == BRT_POLICY_BEACON_V2 && h->cfg.beacon.pos == BRT_BEACON_POS_INTERLEAVE;
    mp->m_old = c->ls->mem_k.n;
    mp->n_expect = 0;
    free(mp->expect_pre);
    mp->expect_pre = malloc(((size_t)c->ls->raw_k.n + (size_t)st->n_rows + 1) * kvd * sizeof(float));
    if (!(st->flags & BRT_STEP_FULL_WINDOW))
        return;
    if (interleave)
        for (int32_t i = 0; i < c->ls->raw_k.n; i++)
            if (h->js.raw_kind[i] == BRT_ROW_BEACON)
                h_slot(h, &c->ls->raw_kpre, i, mp->expect_pre + (int64_t)mp->n_expect++ * kvd);
    for (int32_t r = 0; r < st->n_rows; r++)
        if (st->kind[r] == BRT_ROW_BEACON)
            h_row(h, c->kpre, r, mp->expect_pre + (int64_t)mp->n_expect++ * kvd, kvd);
}

static void check_memory_positions(const char *json, const int *calls, int n_calls)
{
    brt_model_config cfg;
    h_cfg(json, &cfg);
    harness *h = malloc(sizeof *h);
    assert_non_null(h);
    int64_t total = 0;
    for (int i = 0; i < n_calls; i++)
        total += calls[i];
    h_init(h, &cfg, total);
    h->n_layers = 1;
    const int32_t kvd = cfg.n_kv_heads * cfg.head_dim;
    float *got = malloc((size_t)kvd * 4), *ref = malloc((size_t)kvd * 4), *pre = malloc((size_t)kvd * 4);
    memprobe mp = {0};
    int64_t avail = 0;
    int full_steps = 0;
    for (int ci = 0; ci < n_calls; ci++) {
        avail += calls[ci];
        brt_step st;
        while (h_plan(h, avail, &st) == 1) {
            h_apply(h, &st, 0, collect_new_memory, &mp);
            const brt_layer_state *ls = &h->ls[0];
            const int32_t sink = ls->sink_k.n;
            if ((st.flags & BRT_STEP_FULL_WINDOW) && mp.n_expect > 0) {
                full_steps++;
                assert_int_equal(ls->mem_k.n, mp.m_old + mp.n_expect);
                for (int32_t i = 0; i < mp.n_expect; i++) {
                    h_slot(h, &ls->mem_k, mp.m_old + i, got);
                    h_rope_ref(h, mp.expect_pre + (int64_t)i * kvd, ref, cfg.n_kv_heads, sink + mp.m_old + i);
                    double d = h_maxdiff(got, ref, kvd);
                    if (d > 1e-5)
                        fail_msg("step %u: memory slot %d is not the beacon key rotated at %d (max diff %g)", st.index,
                                 mp.m_old + i, sink + mp.m_old + i, d);
                }
            }
            /* the open window: slot j rotated at sink + M + j from its pre-RoPE key */
            for (int32_t j = 0; j < ls->raw_k.n; j++) {
                h_slot(h, &ls->raw_k, j, got);
                h_slot(h, &ls->raw_kpre, j, pre);
                h_rope_ref(h, pre, ref, cfg.n_kv_heads, sink + ls->mem_k.n + j);
                double d = h_maxdiff(got, ref, kvd);
                if (d > 1e-5)
                    fail_msg("step %u: raw slot %d is not rotated at %d (max diff %g)", st.index, j,
                             sink + ls->mem_k.n + j, d);
            }
            brt_step_free_arrays(&st);
        }
    }
    assert_true(full_steps >= 3);
    free(mp.expect_pre);
    free(got);
    free(ref);
    free(pre);
    h_free(h);
    free(h);
}

static void test_v1_memory_keys_at_slot_positions(void **s)
{
    (void)s;
    check_memory_positions("{\"beacon_window\": 16, \"beacon_ratio\": [4]}", k_calls_sw, N_OF(k_calls_sw));
}

static void test_v1_stride_lt_window_raw_cache_rebased(void **s)
{
    (void)s;
    check_memory_positions("{\"beacon_window\": 16, \"beacon_stride\": [8], \"beacon_ratio\": [4]}", k_calls_s_lt_w,
                           N_OF(k_calls_s_lt_w));
}

static void test_v2_interleave_memory_keys_at_slot_positions(void **s)
{
    (void)s;
    check_memory_positions("{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_pos\": "
                           "\"interleave\", \"beacon_attn\": \"full-coverage\"}",
                           k_calls_sw, N_OF(k_calls_sw));
}

static void test_v2_interleave_sink_memory_keys_after_sink(void **s)
{
    (void)s;
    check_memory_positions("{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_pos\": "
                           "\"interleave\", \"beacon_attn\": \"full-coverage\", \"beacon_sink_size\": 2}",
                           k_calls_sw, N_OF(k_calls_sw));
}

/* the sink quirk with a short prompt: every step overwrites the sink until memory exists, the
 * sink slots also stay in the open window, which therefore sits after the sink */
static const int k_calls_short_prompt[] = {5, 1, 1, 3, 20, 1, 1, 1, 30};

static void test_v2_interleave_sink_quirk_short_prompt_state_positions(void **s)
{
    (void)s;
    check_memory_positions("{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_pos\": "
                           "\"interleave\", \"beacon_attn\": \"full-coverage\", \"beacon_sink_size\": 4}",
                           k_calls_short_prompt, N_OF(k_calls_short_prompt));
    probe pr = run_schedule("{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_pos\": "
                            "\"interleave\", \"beacon_attn\": \"full-coverage\", \"beacon_sink_size\": 4}",
                            k_calls_short_prompt, N_OF(k_calls_short_prompt));
    assert_true(pr.rich_steps >= 1);
}

static void test_v2_append_memory_keys_at_slot_positions(void **s)
{
    (void)s;
    check_memory_positions("{\"beacon_window\": 16, \"beacon_stride\": 16, \"beacon_ratio\": [4], \"beacon_pos\": "
                           "\"append\", \"beacon_attn\": \"step-expansion\"}",
                           k_calls_sw, N_OF(k_calls_sw));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_step_expansion_attend_previous),
        cmocka_unit_test(test_v1_step_expansion_no_attend_previous),
        cmocka_unit_test(test_v1_segmentation_attend_previous),
        cmocka_unit_test(test_v1_segmentation_no_attend_previous),
        cmocka_unit_test(test_v1_full_coverage_attend_previous),
        cmocka_unit_test(test_v1_full_coverage_no_attend_previous),
        cmocka_unit_test(test_v1_stride_lt_window_step_expansion_attend_previous),
        cmocka_unit_test(test_v1_stride_lt_window_step_expansion_no_attend_previous),
        cmocka_unit_test(test_v1_stride_lt_window_segmentation_attend_previous),
        cmocka_unit_test(test_v1_stride_lt_window_segmentation_no_attend_previous),
        cmocka_unit_test(test_v1_stride_lt_window_full_coverage_attend_previous),
        cmocka_unit_test(test_v1_stride_lt_window_full_coverage_no_attend_previous),
        cmocka_unit_test(test_v1_ratio0_plain_causal),
        cmocka_unit_test(test_v2_append_step_expansion_attend_prev),
        cmocka_unit_test(test_v2_append_step_expansion_no_attend_prev),
        cmocka_unit_test(test_v2_append_segmentation_attend_prev),
        cmocka_unit_test(test_v2_append_segmentation_no_attend_prev),
        cmocka_unit_test(test_v2_append_full_coverage_plain_causal),
        cmocka_unit_test(test_v2_append_full_coverage_no_attend_prev_plain_causal),
        cmocka_unit_test(test_v2_append_step_expansion_with_sink),
        cmocka_unit_test(test_v2_interleave_plain_causal_ratio4),
        cmocka_unit_test(test_v2_interleave_plain_causal_ratio2),
        cmocka_unit_test(test_v2_interleave_plain_causal_with_sink),
        cmocka_unit_test(test_v1_memory_keys_at_slot_positions),
        cmocka_unit_test(test_v1_stride_lt_window_raw_cache_rebased),
        cmocka_unit_test(test_v2_interleave_memory_keys_at_slot_positions),
        cmocka_unit_test(test_v2_interleave_sink_memory_keys_after_sink),
        cmocka_unit_test(test_v2_interleave_sink_quirk_short_prompt_state_positions),
        cmocka_unit_test(test_v2_append_memory_keys_at_slot_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
