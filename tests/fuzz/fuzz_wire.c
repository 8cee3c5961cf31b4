/* The rank-to-rank messages (proto/brt.proto) as a receiving rank decodes them: a micro-batch
 * header (brt_wire_unpack_mb) or a results header with its logits payload
 * (brt_wire_unpack_results). What decodes is packed again and must decode to the same thing.
 *
 * Input: byte 0 picks the message. Even: the rest is a micro-batch header. Odd: results; the last
 * min(4 * (byte0 >> 1), rest) bytes are the payload (full-logits rows, f32), the bytes between are
 * the header. So "01 08 00" is a results header holding only version = 0. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/wire.h"
#include "fuzz_util.h"

static const int32_t k_src = 3; /* the sending rank named in messages */

static int same_f32(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

static void check_mb_equal(const brt_microbatch *a, const brt_microbatch *b)
{
    FUZZ_CHECK(a->id == b->id && a->pipeline == b->pipeline && a->n_rows == b->n_rows);
    FUZZ_CHECK(a->n_steps == b->n_steps && a->n_release == b->n_release && a->n_stats == b->n_stats);
    FUZZ_CHECK(!!a->device_payload == !!b->device_payload);
    FUZZ_CHECK(a->n_release == 0 || !memcmp(a->release, b->release, (size_t)a->n_release * sizeof *a->release));
    for (int32_t i = 0; i < a->n_steps; i++) {
        const brt_step *s = &a->steps[i], *t = &b->steps[i];
        FUZZ_CHECK(s->job == t->job && s->index == t->index && s->n_rows == t->n_rows && s->n_raw == t->n_raw);
        FUZZ_CHECK(s->k == t->k && s->keep == t->keep && s->flags == t->flags && s->top_k == t->top_k);
        FUZZ_CHECK(s->ratio == t->ratio && s->span == t->span && s->sink_take == t->sink_take);
        FUZZ_CHECK(s->expect_sink == t->expect_sink && s->expect_mem == t->expect_mem &&
                   s->expect_raw == t->expect_raw);
        FUZZ_CHECK(s->logits == t->logits && s->seed == t->seed && s->draw == t->draw);
        FUZZ_CHECK(same_f32(s->temperature, t->temperature) && same_f32(s->top_p, t->top_p));
        size_t n = (size_t)s->n_rows;
        FUZZ_CHECK(!memcmp(s->tokens, t->tokens, n * sizeof *s->tokens));
        FUZZ_CHECK(!memcmp(s->pos, t->pos, n * sizeof *s->pos));
        FUZZ_CHECK(!memcmp(s->target, t->target, n * sizeof *s->target));
        FUZZ_CHECK(!memcmp(s->kind, t->kind, n));
        FUZZ_CHECK(!strcmp(s->error, t->error));
    }
}

static void fuzz_mb(const uint8_t *hdr, size_t len)
{
    brt_microbatch *mb = NULL;
    int32_t hidden = 0;
    brt_err e;
    brt_err_clear(&e);
    if (brt_wire_unpack_mb(hdr, len, k_src, &mb, &hidden, &e) != BRT_OK) {
        FUZZ_CHECK(mb == NULL && e.msg[0] != '\0');
        return;
    }
    /* what the stages rely on: rows add up, and each step's row kinds match its counts */
    int32_t rows = 0;
    for (int32_t i = 0; i < mb->n_steps; i++) {
        const brt_step *s = &mb->steps[i];
        int32_t raw = 0;
        for (int32_t r = 0; r < s->n_rows; r++)
            raw += s->kind[r] == BRT_ROW_RAW;
        FUZZ_CHECK(s->n_rows >= 0 && s->n_raw == raw && s->top_k >= 0 && s->top_k <= 20);
        rows += s->n_rows;
    }
    FUZZ_CHECK(rows == mb->n_rows);

    void *buf = NULL;
    size_t blen = 0;
    FUZZ_CHECK(brt_wire_pack_mb(mb, hidden, &buf, &blen, &e) == BRT_OK);
    brt_microbatch *again = NULL;
    int32_t hidden2 = 0;
    FUZZ_CHECK(brt_wire_unpack_mb(buf, blen, k_src, &again, &hidden2, &e) == BRT_OK);
    FUZZ_CHECK(hidden2 == hidden);
    check_mb_equal(mb, again);
    brt_wire_free_mb(again);
    free(buf);
    brt_wire_free_mb(mb);
}

static void free_results(brt_step_result *res, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        brt_step_result_free(&res[i]);
    free(res);
}

static void fuzz_results(const uint8_t *hdr, size_t hdr_len, const uint8_t *payload, size_t payload_len)
{
    uint64_t mb_id = 0;
    brt_step_result *res = NULL;
    int32_t n = 0, n_stats = 0;
    brt_stage_stat stats[BRT_MB_STATS];
    brt_cache_report *reps = NULL, *reps2 = NULL;
    int32_t n_reps = 0, n_reps2 = 0;
    brt_err e;
    brt_err_clear(&e);
    if (brt_wire_unpack_results(hdr, hdr_len, payload, payload_len, k_src, &mb_id, &res, &n, stats, &n_stats, &reps,
                                &n_reps, &e) != BRT_OK) {
        FUZZ_CHECK(res == NULL && n == 0 && reps == NULL && e.msg[0] != '\0');
        return;
    }
    FUZZ_CHECK(n >= 0 && n_stats >= 0 && n_stats <= BRT_MB_STATS);
    size_t full = 0;
    for (int32_t i = 0; i < n; i++) {
        const brt_step_result *r = &res[i];
        FUZZ_CHECK(r->top_k >= 0 && r->top_k <= 20 && r->n_scored >= 0 && r->n_full >= 0 && r->vocab >= 0);
        full += (size_t)r->n_full * (size_t)r->vocab * sizeof(float);
    }
    FUZZ_CHECK(full <= payload_len); /* every logits row was in the payload */

    void *hdr2 = NULL, *payload2 = NULL;
    size_t hdr2_len = 0, payload2_len = 0;
    FUZZ_CHECK(brt_wire_pack_results(mb_id, k_src, res, n, stats, n_stats, reps, n_reps, &hdr2, &hdr2_len, &payload2,
                                     &payload2_len, &e) == BRT_OK);
    uint64_t mb_id2 = 0;
    brt_step_result *res2 = NULL;
    int32_t n2 = 0, n_stats2 = 0;
    brt_stage_stat stats2[BRT_MB_STATS];
    FUZZ_CHECK(brt_wire_unpack_results(hdr2, hdr2_len, payload2, payload2_len, k_src, &mb_id2, &res2, &n2, stats2,
                                       &n_stats2, &reps2, &n_reps2, &e) == BRT_OK);
    FUZZ_CHECK(mb_id2 == mb_id && n2 == n && n_stats2 == n_stats && payload2_len == full && n_reps2 == n_reps);
    FUZZ_CHECK(n_reps == 0 || !memcmp(reps, reps2, (size_t)n_reps * sizeof *reps));
    for (int32_t i = 0; i < n; i++) {
        const brt_step_result *a = &res[i], *b = &res2[i];
        FUZZ_CHECK(a->job == b->job && a->index == b->index && !!a->failed == !!b->failed);
        FUZZ_CHECK(a->sampled == b->sampled && a->top_k == b->top_k && a->n_scored == b->n_scored);
        FUZZ_CHECK(a->n_full == b->n_full && a->vocab == b->vocab && !strcmp(a->error, b->error));
        size_t nf = (size_t)a->n_full * (size_t)a->vocab;
        FUZZ_CHECK(nf == 0 || !memcmp(a->full, b->full, nf * sizeof(float)));
    }
    free_results(res2, n2);
    free(hdr2);
    free(payload2);
    free_results(res, n);
    free(reps);
    free(reps2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        size_t pl = (size_t)(data[0] >> 1) * 4;
        if (pl > n)
            pl = n;
        fuzz_results(rest, n - pl, rest + n - pl, pl);
    } else
        fuzz_mb(rest, n);
    return 0;
}
