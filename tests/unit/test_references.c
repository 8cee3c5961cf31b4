/* TinyStories reference.json files, the tokenizer side, through the model folder as the CLI opens it
 * (brt_model_open with a tokenizer required): every prompt's input_ids are BOS + encode(text) and
 * n_tokens long; the pieces named in the top-k lists are the tokenizer's pieces for those ids; and the
 * continuation text `beaconrt generate` prints (token bytes joined, cmd_generate.c) relates to the
 * reference's greedy_text (sentencepiece decode) exactly by the leading-space rule the shell tests
 * (tests/models/stories*.sh via tests/tools/reference_json.py) rely on: decode drops the dummy-prefix
 * space(s) at the start of a text, generate keeps them. The numerical side (logits, greedy ids) is in
 * tests/models/stories260K.sh and stories_d64.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/tokenizer.h"

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s (line %d)", path, je.text, je.line);
    return j;
}

static size_t json_ids(const json_t *arr, int32_t **out)
{
    assert_true(json_is_array(arr));
    size_t n = json_array_size(arr);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        assert_true(json_is_integer(v));
        ids[i] = (int32_t)json_integer_value(v);
    }
    *out = ids;
    return n;
}

/* what cmd_generate prints for a continuation: brt_tokenizer_token_bytes of each id, joined */
static char *generate_text(const brt_tokenizer *tok, const int32_t *ids, size_t n, size_t *len)
{
    size_t cap = brt_tokenizer_max_token_bytes(tok) * (n + 1) + 1, at = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        at += brt_tokenizer_token_bytes(tok, ids[i], s + at, cap - at);
    s[at] = '\0';
    *len = at;
    return s;
}

static void check_dir(const char *rel, int want_entries)
{
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/%s", BRT_SOURCE_DIR, rel);
    snprintf(path, sizeof path, "%s/reference.json", dir);
    brt_model m;
    brt_err err = {0};
    if (brt_model_open(dir, NULL, 1, &m, &err) != BRT_OK)
        fail_msg("brt_model_open %s: %s", dir, err.msg);
    assert_non_null(m.tok);
    json_t *root = load_json(path);
    assert_int_equal(m.cfg.vocab_size, json_integer_value(json_object_get(json_object_get(root, "tokenizer"), "vocab_size")));
    assert_int_equal(m.cfg.bos_id, brt_tokenizer_bos_id(m.tok));

    const char *key;
    json_t *e;
    int n_entries = 0, n_text = 0;
    json_object_foreach(root, key, e)
    {
        json_t *input = json_object_get(e, "input_ids"), *gids = json_object_get(e, "greedy_new_ids");
        if (!json_is_object(e) || !input || !gids)
            continue;
        n_entries++;
        int32_t *want, *ids, *gen;
        size_t n_want = json_ids(input, &want), n_gen = json_ids(gids, &gen);
        assert_true(n_want >= 1);
        assert_int_equal(want[0], m.cfg.bos_id);

        /* the prompt text through the model's tokenizer, BOS added as the CLI does */
        json_t *text = json_object_get(e, "text");
        if (json_is_string(text)) {
            size_t n = 0;
            if (brt_tokenizer_encode(m.tok, json_string_value(text), json_string_length(text), 1, &ids, &n, &err) !=
                BRT_OK)
                fail_msg("%s: encode: %s", key, err.msg);
            assert_int_equal(n, (size_t)json_integer_value(json_object_get(e, "n_tokens")));
            assert_int_equal(n, n_want);
            for (size_t i = 0; i < n; i++)
                if (ids[i] != want[i])
                    fail_msg("%s: token %zu: encode gives %d, reference.json %d", key, i, ids[i], want[i]);
            free(ids);
            n_text++;
        }

        /* the top-k pieces are this tokenizer's pieces; the first is the first greedy token */
        json_t *top = json_object_get(e, "top5_last_logits");
        if (!top)
            top = json_object_get(e, "top10_last_logits");
        assert_true(json_array_size(top) >= 5);
        size_t i;
        json_t *row;
        json_array_foreach(top, i, row)
        {
            int32_t id = (int32_t)json_integer_value(json_array_get(row, 0));
            const char *piece = brt_tokenizer_piece(m.tok, id);
            assert_non_null(piece);
            assert_string_equal(piece, json_string_value(json_array_get(row, 2)));
        }
        assert_int_equal(json_integer_value(json_array_get(json_array_get(top, 0), 0)), gen[0]);

        /* generate's text vs sentencepiece decode (= greedy_text) */
        const char *gt = json_string_value(json_object_get(e, "greedy_text"));
        assert_non_null(gt);
        char *dec;
        size_t dec_len, gen_len;
        if (brt_tokenizer_decode(m.tok, gen, n_gen, &dec, &dec_len, &err) != BRT_OK)
            fail_msg("%s: decode: %s", key, err.msg);
        assert_int_equal(dec_len, strlen(gt));
        assert_memory_equal(dec, gt, dec_len);
        char *g = generate_text(m.tok, gen, n_gen, &gen_len);
        int leading_space = strncmp(brt_tokenizer_piece(m.tok, gen[0]), "\xE2\x96\x81", 3) == 0;
        /* exactly one space more when the first piece starts with U+2581, else identical */
        assert_int_equal(gen_len, dec_len + (size_t)leading_space);
        if (leading_space)
            assert_int_equal(g[0], ' ');
        assert_memory_equal(g + leading_space, gt, dec_len);
        free(g);
        free(dec);
        free(want);
        free(gen);
    }
    assert_int_equal(n_entries, want_entries);
    assert_true(n_text >= 1);
    json_decref(root);
    brt_model_close(&m);
}

static void stories260k_reference(void **state)
{
    (void)state;
    check_dir("models/stories260K", 2);
}

static void tinystories_d64_reference(void **state)
{
    (void)state;
    check_dir("tests/data/tinystories-d64-l5-hf", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stories260k_reference),
        cmocka_unit_test(tinystories_d64_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
