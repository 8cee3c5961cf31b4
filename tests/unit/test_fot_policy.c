/* LongLLaMA / FoT policy: the planner's windows for edge lengths (N = last_context_length,
 * N = last_context_length + 1, a second call with a cache), the flush during generation, and
 * the state the stage keeps: memory only in memory layers (several of them), memory keys
 * unrotated pre-RoPE keys stored in mem_dtype (bf16-rounded for bfloat16, exact for float32),
 * local keys rotated relative to the cache start, and mem_positionals false leaving memory
 * layers unrotated (longllama.md §3, notes C1-C6). */
#include "policy_harness.h"

typedef struct planned {
    int32_t n_rows, first_pos, last_pos;
    uint32_t flags;
    int32_t expect_mem, expect_raw;
} planned;

/* Plan every step of a call pattern: `prompt` tokens, then `decode` single tokens. */
static int plan_calls(const brt_model_config *cfg, int64_t prompt, int64_t decode, planned *out, int cap,
                      int *n_prompt_steps, brt_plan *end)
{
    int32_t *tokens = calloc((size_t)(prompt + decode + 1), sizeof *tokens);
    assert_non_null(tokens);
    brt_plan p;
    brt_plan_init(&p, cfg);
    int n = 0;
    for (int64_t avail = prompt; avail <= prompt + decode; avail++) {
        brt_step st;
        brt_err err;
        for (;;) {
            memset(&st, 0, sizeof st);
            int r = brt_policy_ops_for(cfg->policy)->plan_next(&p, cfg, tokens, avail, 512, &st, &err);
            if (r < 0)
                fail_msg("plan_next: %s", err.msg);
            if (r == 0)
                break;
            assert_true(n < cap);
            for (int32_t j = 0; j < st.n_rows; j++) {
                assert_int_equal(st.kind[j], BRT_ROW_RAW);
                if (j > 0)
                    assert_int_equal(st.pos[j], st.pos[j - 1] + 1); /* consecutive relative positions */
            }
            out[n++] = (planned){st.n_rows, st.pos[0], st.pos[st.n_rows - 1], st.flags, st.expect_mem, st.expect_raw};
            brt_step_free_arrays(&st);
        }
        if (avail == prompt && n_prompt_steps)
            *n_prompt_steps = n;
    }
    if (end)
        *end = p;
    free(tokens);
    return n;
}

static void test_input_of_last_context_length_is_one_cache_window(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg_golden("longllama-tiny", &cfg);
    assert_int_equal(cfg.policy, BRT_POLICY_FOT);
    assert_int_equal(cfg.fot.last_context_length, 64);
    assert_int_equal(cfg.fot.window, 72);
    planned st[8];
    brt_plan p;
    int n = plan_calls(&cfg, 64, 0, st, 8, NULL, &p);
    assert_int_equal(n, 1);
    assert_int_equal(st[0].n_rows, 64);
    assert_int_equal(st[0].flags, 0); /* CACHE mode, no flush, nothing to memory */
    assert_int_equal(st[0].first_pos, 0);
    assert_int_equal(p.mem, 0);
    assert_int_equal(p.local, 64);
}

static void test_input_of_last_context_length_plus_one_sends_bos_alone_to_memory(void **s)
{
    (void)s;
    brt_model_config cfg;
    h_cfg_golden("longllama-tiny", &cfg);
    planned st[8];
    brt_plan p;
    int n = plan_calls(&cfg, 65, 0, st, 8, NULL, &p);
    assert_int_equal(n, 2);
    /* window 1: token 0 (BOS) alone, NO-CACHE: into memory after its attention */
    assert_int_equal(st[0].n_rows, 1);
    assert_int_equal(st[0].flags, BRT_STEP_NO_CACHE);
    assert_int_equal(st[0].first_pos, 0);
    assert_int_equal(st[0].expect_mem, 0);
    /* then the last 64 tokens in CACHE mode, positions from 0, seeing one memory slot */
    assert_int_equal(st[1].n_rows, 64);
    assert_int_equal(st[1].flags, 0);
    assert_int_equal(st[1].first_pos, 0);
    assert_int_equal(st[1].expect_mem, 1);
    assert_int_equal(st[1].expect_raw, 0);
    assert_int_equal(p.mem, 1);
    assert_int_equal(p.local, 64);
}

static void test_long_prompt_windows_aligned_last_prefix_short(void **s)
{
    (void)s;
    /* N = 700, W = 72, Lc = 64: [0,72) .. [504,576) then [576,636) (60) NO-CACHE, then the last
     * 64 in CACHE mode (notes C1) */
    brt_model_config cfg;
    h_cfg_golden("longllama-tiny", &cfg);
    planned st[32];
    brt_plan p;
    int n = plan_calls(&cfg, 700, 0, st, 32, NULL, &p);
    assert_int_equal(n, 10);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(st[i].n_rows, 72);
        assert_int_equal(st[i].flags, BRT_STEP_NO_CACHE);
        assert_int_equal(st[i].first_pos, 0);
        assert_int_equal(st[i].expect_mem, 72 * i);
    }
    assert_int_equal(st[8].n_rows, 60);
    assert_int_equal(st[8].flags, BRT_STEP_NO_CACHE);
    assert_int_equal(st[9].n_rows, 64);
    assert_int_equal(st[9].flags, 0);
    assert_int_equal(st[9].expect_mem, 636);
    assert_int_equal(p.mem, 636);
    assert_int_equal(p.local, 64);
}

static void test_generation_flushes_once_at_decode_step_9(void **s)
{
    (void)s;
    /* golden generation: 16 tokens = the prompt call + 15 single-token calls. The cache holds 64
     * after the prompt, 65..72 after decode calls 1..8; call 9 has 72 + 1 > 72: the whole cache
     * (72) is flushed into memory and the local context restarts at that token (position 0) */
    brt_model_config cfg;
    h_cfg_golden("longllama-tiny", &cfg);
    planned st[64];
    int np;
    brt_plan p;
    int n = plan_calls(&cfg, 700, 15, st, 64, &np, &p);
    assert_int_equal(np, 10);
    assert_int_equal(n, np + 15);
    int flushes = 0;
    for (int d = 1; d <= 15; d++) {
        const planned *x = &st[np + d - 1];
        assert_int_equal(x->n_rows, 1);
        assert_false(x->flags & BRT_STEP_NO_CACHE);
        if (x->flags & BRT_STEP_FLUSH) {
            flushes++;
            assert_int_equal(d, 9);
            assert_int_equal(x->expect_raw, 72);
            assert_int_equal(x->first_pos, 0);
        } else if (d < 9) {
            assert_int_equal(x->first_pos, 64 + d - 1);
            assert_int_equal(x->expect_raw, 64 + d - 1);
        } else
            assert_int_equal(x->first_pos, d - 9);
    }
    assert_int_equal(flushes, 1);
    assert_int_equal(p.mem, 636 + 72);
    assert_int_equal(p.local, 7);

    /* the short prompt (50) never fills the cache in 15 calls */
    n = plan_calls(&cfg, 50, 15, st, 64, &np, &p);
    assert_int_equal(np, 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(st[i].flags, 0);
    assert_int_equal(p.mem, 0);
    assert_int_equal(p.local, 65);
}

static void test_second_long_call_with_cache_runs_prefix_in_cache_mode(void **s)
{
    (void)s;
    /* after a 700-token prompt (cache 64), a call of 200 tokens: prefix windows [0,72), [72,136)
     * run in CACHE mode (a cache exists), each flushing the cache first; then the last 64 */
    brt_model_config cfg;
    h_cfg_golden("longllama-tiny", &cfg);
    int32_t *tokens = calloc(900, sizeof *tokens);
    brt_plan p;
    brt_plan_init(&p, &cfg);
    brt_step st;
    brt_err err;
    int n = 0;
    uint32_t flags[16];
    int32_t rows[16], pos0[16], em[16];
    for (int64_t avail = 700; avail <= 900; avail += 200)
        for (;;) {
            memset(&st, 0, sizeof st);
            int r = brt_policy_ops_for(cfg.policy)->plan_next(&p, &cfg, tokens, avail, 512, &st, &err);
            assert_true(r >= 0);
            if (r == 0)
                break;
            if (avail == 900) {
                flags[n] = st.flags;
                rows[n] = st.n_rows;
                pos0[n] = st.pos[0];
                em[n++] = st.expect_mem;
            }
            brt_step_free_arrays(&st);
        }
    assert_int_equal(n, 3);
    assert_int_equal(rows[0], 72);
    assert_int_equal(rows[1], 64);
    assert_int_equal(rows[2], 64);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(flags[i], BRT_STEP_FLUSH);
        assert_int_equal(pos0[i], 0);
    }
    assert_int_equal(em[0], 636);
    assert_int_equal(em[1], 636 + 64);
    assert_int_equal(em[2], 636 + 64 + 72);
    assert_int_equal(p.mem, 636 + 64 + 72 + 64);
    assert_int_equal(p.local, 64);
    free(tokens);
}

/* ---- state kept by the stage ------------------------------------------------------------- */

static float bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    float y;
    memcpy(&y, &u, 4);
    return y;
}

typedef struct memsnap {
    int32_t n_layers, kvd;
    int32_t m_old[H_MAX_LAYERS];
    int32_t n_new[H_MAX_LAYERS];
    float *k[H_MAX_LAYERS], *v[H_MAX_LAYERS]; /* values that must be appended to memory, f32 */
    int k_rotated_checked, k_unrotated_checked;
} memsnap;

/* after prepare: NO-CACHE rows go to memory after attention; check local rotation */
static void snap_after_prepare(harness *h, brt_layer_ctx *c, void *ud)
{
    memsnap *ms = ud;
    const brt_step *st = c->step;
    const int32_t l = c->layer, kvd = ms->kvd;
    const int mem_layer = h->cfg.fot.is_mem_layer[l];
    /* keys of this step: rotated at their relative positions, except in memory layers
     * without positionals */
    float *ref = malloc((size_t)kvd * 4), *kr = malloc((size_t)kvd * 4), *kp = malloc((size_t)kvd * 4);
    for (int32_t r = 0; r < st->n_rows; r++) {
        h_row(h, c->k, r, kr, kvd);
        h_row(h, c->kpre, r, kp, kvd);
        if (mem_layer && !h->cfg.fot.mem_positionals) {
            assert_memory_equal(kr, kp, (size_t)kvd * 4);
            ms->k_unrotated_checked++;
        } else {
            h_rope_ref(h, kp, ref, h->cfg.n_kv_heads, st->pos[r]);
            double d = h_maxdiff(kr, ref, kvd);
            if (d > 1e-5)
                fail_msg("layer %d step %u row %d: key not rotated at %d (diff %g)", l, st->index, r, st->pos[r], d);
            ms->k_rotated_checked++;
        }
    }
    free(ref);
    free(kr);
    free(kp);
    if (mem_layer && (st->flags & BRT_STEP_NO_CACHE)) {
        /* memory before this append: the flush (if any) already happened in prepare */
        ms->m_old[l] = c->ls->mem_k.n;
        ms->n_new[l] = st->n_rows;
        for (int32_t r = 0; r < st->n_rows; r++) {
            h_row(h, c->kpre, r, ms->k[l] + (int64_t)r * kvd, kvd);
            h_row(h, c->v, r, ms->v[l] + (int64_t)r * kvd, kvd);
        }
    }
}

static void check_memory_slots(const harness *h, int32_t l, int32_t from, int32_t n, const float *k, const float *v)
{
    const brt_layer_state *ls = &h->ls[l];
    const int32_t kvd = h->cfg.n_kv_heads * h->cfg.head_dim;
    const int bf = h->cfg.fot.mem_bf16;
    assert_int_equal(ls->mem_k.dtype, bf ? BRT_DT_BF16 : BRT_DT_F32);
    assert_int_equal(ls->mem_v.dtype, bf ? BRT_DT_BF16 : BRT_DT_F32);
    float *got = malloc((size_t)kvd * 4);
    for (int32_t i = 0; i < n; i++) {
        h_slot(h, &ls->mem_k, from + i, got);
        for (int32_t e = 0; e < kvd; e++) {
            float want = bf ? bf16_round(k[(int64_t)i * kvd + e]) : k[(int64_t)i * kvd + e];
            if (got[e] != want)
                fail_msg("layer %d memory slot %d K[%d] = %.9g, expected the %s pre-RoPE key %.9g", l, from + i, e,
                         got[e], bf ? "bf16-rounded" : "exact", want);
        }
        h_slot(h, &ls->mem_v, from + i, got);
        for (int32_t e = 0; e < kvd; e++) {
            float want = bf ? bf16_round(v[(int64_t)i * kvd + e]) : v[(int64_t)i * kvd + e];
            if (got[e] != want)
                fail_msg("layer %d memory slot %d V[%d] = %.9g, expected %.9g", l, from + i, e, got[e], want);
        }
    }
    free(got);
}

/* Run prompt + decode through the harness on every layer; check memory contents after every
 * NO-CACHE append and every flush. Returns the number of flushes. */
static int run_state(const char *set, const char *overrides, int64_t prompt, int64_t decode, harness **out)
{
    brt_model_config cfg;
    if (overrides) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/tests/data/golden/%s", BRT_SOURCE_DIR, set);
        json_error_t je;
        json_t *ov = json_loads(overrides, 0, &je);
        assert_non_null(ov);
        brt_err err;
        if (brt_config_load(dir, ov, &cfg, &err) != BRT_OK)
            fail_msg("%s", err.msg);
        json_decref(ov);
    } else
        h_cfg_golden(set, &cfg);
    harness *h = malloc(sizeof *h);
    assert_non_null(h);
    h_init(h, &cfg, prompt + decode);
    assert_int_equal(h->n_layers, cfg.n_layers);
    const int32_t kvd = cfg.n_kv_heads * cfg.head_dim;
    memsnap ms;
    memset(&ms, 0, sizeof ms);
    ms.kvd = kvd;
    for (int32_t l = 0; l < h->n_layers; l++) {
        ms.k[l] = malloc((size_t)(cfg.fot.window + cfg.fot.last_context_length + 8) * kvd * 4);
        ms.v[l] = malloc((size_t)(cfg.fot.window + cfg.fot.last_context_length + 8) * kvd * 4);
    }
    int flushes = 0;
    for (int64_t avail = prompt; avail <= prompt + decode; avail++) {
        brt_step st;
        while (h_plan(h, avail, &st) == 1) {
            /* a flush moves the whole local cache (unrotated keys) into memory before attention */
            int32_t flushed[H_MAX_LAYERS] = {0}, m_before[H_MAX_LAYERS] = {0};
            if (st.flags & BRT_STEP_FLUSH) {
                flushes++;
                for (int32_t l = 0; l < h->n_layers; l++) {
                    const brt_layer_state *ls = &h->ls[l];
                    m_before[l] = ls->mem_k.n;
                    flushed[l] = ls->raw_k.n;
                    if (!cfg.fot.is_mem_layer[l])
                        continue;
                    assert_int_equal(ls->raw_kpre.n, ls->raw_k.n);
                    for (int32_t i = 0; i < ls->raw_k.n; i++) {
                        h_slot(h, &ls->raw_kpre, i, ms.k[l] + (int64_t)i * kvd);
                        h_slot(h, &ls->raw_v, i, ms.v[l] + (int64_t)i * kvd);
                    }
                }
            }
            for (int32_t l = 0; l < h->n_layers; l++)
                ms.n_new[l] = 0;
            if (st.flags & BRT_STEP_FLUSH) {
                /* check the flush before the step's own rows can be appended (they are not:
                 * a flush step is CACHE mode) */
                h_apply(h, &st, -1, snap_after_prepare, &ms);
                for (int32_t l = 0; l < h->n_layers; l++) {
                    const brt_layer_state *ls = &h->ls[l];
                    if (cfg.fot.is_mem_layer[l]) {
                        assert_int_equal(ls->mem_k.n, m_before[l] + flushed[l]);
                        check_memory_slots(h, l, m_before[l], flushed[l], ms.k[l], ms.v[l]);
                    } else
                        assert_int_equal(ls->mem_k.n, 0);
                    assert_int_equal(ls->raw_k.n, st.n_rows); /* local restarts with the chunk */
                }
            } else {
                h_apply(h, &st, -1, snap_after_prepare, &ms);
                for (int32_t l = 0; l < h->n_layers; l++)
                    if (ms.n_new[l] > 0)
                        check_memory_slots(h, l, ms.m_old[l], ms.n_new[l], ms.k[l], ms.v[l]);
            }
            /* memory in memory layers only, as planned; the local cache as planned */
            for (int32_t l = 0; l < h->n_layers; l++) {
                assert_int_equal(h->ls[l].mem_k.n, cfg.fot.is_mem_layer[l] ? h->plan.mem : 0);
                assert_int_equal(h->ls[l].raw_k.n, h->plan.local);
            }
            brt_step_free_arrays(&st);
        }
    }
    assert_true(ms.k_rotated_checked > 0);
    for (int32_t l = 0; l < h->n_layers; l++) {
        free(ms.k[l]);
        free(ms.v[l]);
    }
    *out = h;
    return flushes;
}

static void test_memory_f32_holds_exact_unrotated_keys(void **s)
{
    (void)s;
    harness *h;
    int flushes = run_state("longllama-tiny", NULL, 700, 15, &h);
    assert_int_equal(flushes, 1);
    assert_int_equal(h->ls[1].mem_k.n, 708);
    assert_int_equal(h->ls[0].mem_k.n, 0);
    assert_int_equal(h->ls[2].mem_k.n, 0);
    h_free(h);
    free(h);
}

static void test_memory_bf16_rounded_in_both_memory_layers(void **s)
{
    (void)s;
    harness *h;
    int flushes = run_state("longllama-tiny-bf16mem", NULL, 700, 15, &h);
    assert_int_equal(flushes, 1);
    assert_true(h->cfg.fot.mem_bf16);
    assert_int_equal(h->cfg.fot.n_mem_layers, 2);
    assert_int_equal(h->ls[0].mem_k.n, 0);
    assert_int_equal(h->ls[1].mem_k.n, 708);
    assert_int_equal(h->ls[2].mem_k.n, 708);
    h_free(h);
    free(h);
}

static void test_memory_bf16_after_second_long_call_flushes(void **s)
{
    (void)s;
    harness *h;
    /* prompt 100 (36 to memory), then single tokens through two flushes */
    int flushes = run_state("longllama-tiny-bf16mem", NULL, 100, 100, &h);
    assert_int_equal(flushes, 2);
    h_free(h);
    free(h);
}

static void test_mem_positionals_false_leaves_memory_layers_unrotated(void **s)
{
    (void)s;
    harness *h;
    run_state("longllama-tiny-bf16mem", "{\"mem_positionals\": false}", 700, 15, &h);
    assert_false(h->cfg.fot.mem_positionals);
    /* local keys of memory layers are stored as given: raw_k == raw_kpre */
    const int32_t kvd = h->cfg.n_kv_heads * h->cfg.head_dim;
    float *a = malloc((size_t)kvd * 4), *b = malloc((size_t)kvd * 4);
    for (int32_t l = 1; l <= 2; l++) {
        assert_true(h->ls[l].raw_k.n > 0);
        for (int32_t i = 0; i < h->ls[l].raw_k.n; i++) {
            h_slot(h, &h->ls[l].raw_k, i, a);
            h_slot(h, &h->ls[l].raw_kpre, i, b);
            assert_memory_equal(a, b, (size_t)kvd * 4);
        }
    }
    free(a);
    free(b);
    h_free(h);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_input_of_last_context_length_is_one_cache_window),
        cmocka_unit_test(test_input_of_last_context_length_plus_one_sends_bos_alone_to_memory),
        cmocka_unit_test(test_long_prompt_windows_aligned_last_prefix_short),
        cmocka_unit_test(test_generation_flushes_once_at_decode_step_9),
        cmocka_unit_test(test_second_long_call_with_cache_runs_prefix_in_cache_mode),
        cmocka_unit_test(test_memory_f32_holds_exact_unrotated_keys),
        cmocka_unit_test(test_memory_bf16_rounded_in_both_memory_layers),
        cmocka_unit_test(test_memory_bf16_after_second_long_call_flushes),
        cmocka_unit_test(test_mem_positionals_false_leaves_memory_layers_unrotated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
