/* Tokenizer tests: encode/decode pinned to sentencepiece 0.1.97 outputs (Llama-2 and the 512-piece
 * TinyStories model), round trips, every Llama-2 id decodable, synthetic models for the paths the
 * real ones never take (UNUSED pieces, user-defined pieces, no byte fallback), and the errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "model/tokenizer.h"
#include "sentencepiece_model.pb-c.h"

#define LLAMA2_MODEL BRT_SOURCE_DIR "/tests/data/llama2-tokenizer/tokenizer.model"
#define STORIES_MODEL BRT_SOURCE_DIR "/models/stories260K/tokenizer.model"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static brt_tokenizer *load_ok(const char *path)
{
    brt_tokenizer *tok = NULL;
    brt_err err = {0};
    brt_status st = brt_tokenizer_load(path, &tok, &err);
    if (st != BRT_OK)
        fail_msg("load %s: %s", path, err.msg);
    assert_non_null(tok);
    return tok;
}

/* Encode without BOS and compare with the expected ids, printing both on mismatch. */
static void expect_encode(const brt_tokenizer *tok, const char *text, size_t len, int add_bos,
                          const int32_t *want, size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    if (brt_tokenizer_encode(tok, text, len, add_bos, &ids, &n, &err) != BRT_OK)
        fail_msg("encode '%.*s': %s", (int)len, text, err.msg);
    int same = (n == n_want);
    for (size_t i = 0; same && i < n; i++)
        same = (ids[i] == want[i]);
    if (!same) {
        fprintf(stderr, "encode '%.*s'\n  got :", (int)len, text);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  want:");
        for (size_t i = 0; i < n_want; i++)
            fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    assert_true(same);
}

static void expect_decode(const brt_tokenizer *tok, const int32_t *ids, size_t n, const char *want,
                          size_t want_len)
{
    char *text = NULL;
    size_t len = 0;
    brt_err err = {0};
    if (brt_tokenizer_decode(tok, ids, n, &text, &len, &err) != BRT_OK)
        fail_msg("decode: %s", err.msg);
    assert_int_equal(text[len], '\0');
    if (len != want_len || memcmp(text, want, len) != 0)
        fail_msg("decode: got '%.*s' (%zu bytes), want '%.*s' (%zu bytes)", (int)len, text, len,
                 (int)want_len, want, want_len);
    free(text);
}

static void expect_roundtrip(const brt_tokenizer *tok, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    if (brt_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err) != BRT_OK)
        fail_msg("encode '%s': %s", text, err.msg);
    expect_decode(tok, ids, n, text, strlen(text));
    free(ids);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (sizeof((const int32_t[]){__VA_ARGS__}) / 4)

/* ---- Llama-2 ---------------------------------------------------------------------------- */

static void llama2_encode_matches_sentencepiece(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    assert_int_equal(brt_tokenizer_vocab_size(tok), 32000);
    assert_int_equal(brt_tokenizer_bos_id(tok), 1);
    assert_int_equal(brt_tokenizer_eos_id(tok), 2);
    assert_int_equal(brt_tokenizer_unk_id(tok), 0);
    assert_int_equal(brt_tokenizer_pad_id(tok), -1);

    const char *t;
    t = "Hello world!";
    expect_encode(tok, t, strlen(t), 0, IDS(15043, 3186, 29991));
    t = "Once upon a time";
    expect_encode(tok, t, strlen(t), 0, IDS(9038, 2501, 263, 931));
    t = "I believe the meaning of life is";
    expect_encode(tok, t, strlen(t), 0, IDS(306, 4658, 278, 6593, 310, 2834, 338));
    /* remove_extra_whitespaces is off for Llama-2: the leading and doubled spaces survive. */
    t = "  two  spaces";
    expect_encode(tok, t, strlen(t), 0, IDS(259, 1023, 29871, 8162));
    t = "naïve café 日本語 🦙";
    expect_encode(tok, t, strlen(t), 0,
                  IDS(1055, 30085, 345, 274, 28059, 29871, 30325, 30346, 30968, 29871, 243, 162, 169,
                      156));
    t = "Hello world!";
    expect_encode(tok, t, strlen(t), 1, IDS(1, 15043, 3186, 29991));
    expect_decode(tok, IDS(15043, 3186, 29991), "Hello world!", 12);
    /* BOS produces no text, so the piece after it is still the first and loses its space. */
    expect_decode(tok, IDS(1, 15043, 3186, 29991, 2), "Hello world!", 12);
    brt_tokenizer_free(tok);
}

static void llama2_empty_and_space_only_text(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    int32_t *ids = NULL;
    size_t n = 99;
    brt_err err = {0};
    assert_int_equal(brt_tokenizer_encode(tok, "", 0, 0, &ids, &n, &err), BRT_OK);
    assert_non_null(ids);
    assert_int_equal(n, 0);
    free(ids);
    expect_encode(tok, "", 0, 1, IDS(1));
    expect_roundtrip(tok, " ");
    expect_roundtrip(tok, "   ");
    /* " leading" is [▁, ▁leading]: only the first ▁ is the dummy prefix, the second a real space
     * (Llama-2 keeps leading spaces). */
    const char *leading = "\xE2\x96\x81leading";
    int32_t id_leading = brt_tokenizer_piece_id(tok, leading, strlen(leading));
    assert_true(id_leading > 0);
    expect_encode(tok, " leading", 8, 0, IDS(29871, id_leading));
    expect_decode(tok, IDS(29871, id_leading), " leading", 8);
    expect_decode(tok, IDS(1, 29871, id_leading), " leading", 8);
    brt_tokenizer_free(tok);
}

static void llama2_roundtrips_every_kind_of_text(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    static const char *const texts[] = {
        "Hello world!",
        "  two  spaces",
        " leading space and trailing space ",
        "many     spaces      here   ",
        "line one\nline two\n\nend\n",
        "\n\nstarts with newlines",
        "tabs\tand\t\tmore\ttabs\t",
        "\ttab first",
        "windows\r\nline\r\nends",
        "naïve café 日本語 🦙",
        "emoji 🦙🦙 🤖👍🏽 flags 🇫🇷 zwj 👨‍👩‍👧",
        "Ελληνικά, русский, עברית, العربية, हिन्दी, 한국어",
        "combining e\xCC\x81 vs \xC3\xA9",
        "code: for (int i = 0; i < n; i++) { x[i] = y[i] * 2; }",
        "numbers 1234567890 3.14159 -42 1e-9",
        "<s> and </s> and <unk> as plain text",
        "punctuation!!! ??? ... --- ___ ~~~ ```",
        "a",
        "\xEF\xBF\xBD replacement char and \xF4\x8F\xBF\xBF max code point",
        "nul-free control chars \x01\x02\x1B[0m\x7F",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        expect_roundtrip(tok, texts[i]);
    /* Embedded NUL: lengths, not strings. */
    static const char nul[] = "a\0b";
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    assert_int_equal(brt_tokenizer_encode(tok, nul, 3, 0, &ids, &n, &err), BRT_OK);
    expect_decode(tok, ids, n, nul, 3);
    free(ids);
    brt_tokenizer_free(tok);
}

static void llama2_every_id_decodes_alone(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    int32_t n = brt_tokenizer_vocab_size(tok);
    size_t max_bytes = brt_tokenizer_max_token_bytes(tok);
    char *buf = malloc(max_bytes);
    assert_non_null(buf);
    for (int32_t id = 0; id < n; id++) {
        char *text = NULL;
        size_t len = 0;
        brt_err err = {0};
        if (brt_tokenizer_decode(tok, &id, 1, &text, &len, &err) != BRT_OK)
            fail_msg("decode id %d: %s", id, err.msg);
        assert_int_equal(text[len], '\0');
        free(text);
        assert_non_null(brt_tokenizer_piece(tok, id));
        size_t nb = brt_tokenizer_token_bytes(tok, id, buf, max_bytes);
        assert_true(nb <= max_bytes);
        assert_int_equal(brt_tokenizer_piece_id(tok, brt_tokenizer_piece(tok, id),
                                                strlen(brt_tokenizer_piece(tok, id))),
                         id);
    }
    free(buf);
    assert_null(brt_tokenizer_piece(tok, -1));
    assert_null(brt_tokenizer_piece(tok, n));
    brt_tokenizer_free(tok);
}

static void token_bytes_are_the_stream_bytes(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    char buf[64];
    size_t n;
    n = brt_tokenizer_token_bytes(tok, 15043, buf, sizeof buf); /* "▁Hello" */
    assert_int_equal(n, 6);
    assert_memory_equal(buf, " Hello", 6);
    n = brt_tokenizer_token_bytes(tok, 13, buf, sizeof buf); /* <0x0A> */
    assert_int_equal(n, 1);
    assert_int_equal(buf[0], '\n');
    n = brt_tokenizer_token_bytes(tok, 243, buf, sizeof buf); /* <0xF0>: one raw byte */
    assert_int_equal(n, 1);
    assert_int_equal((unsigned char)buf[0], 0xF0);
    assert_int_equal(brt_tokenizer_token_bytes(tok, 1, buf, sizeof buf), 0); /* <s> */
    assert_int_equal(brt_tokenizer_token_bytes(tok, 2, buf, sizeof buf), 0); /* </s> */
    n = brt_tokenizer_token_bytes(tok, 0, buf, sizeof buf);                  /* <unk> */
    assert_int_equal(n, 5);
    assert_memory_equal(buf, " \xE2\x81\x87 ", 5);
    assert_int_equal(brt_tokenizer_token_bytes(tok, 15043, buf, 3), 3); /* truncated to cap */
    assert_memory_equal(buf, " He", 3);
    assert_int_equal(brt_tokenizer_token_bytes(tok, 32000, buf, sizeof buf), 0);
    assert_string_equal(brt_tokenizer_piece(tok, 15043), "\xE2\x96\x81Hello");
    assert_string_equal(brt_tokenizer_piece(tok, 13), "<0x0A>");
    assert_int_equal(brt_tokenizer_piece_type(tok, 13), BRT_PIECE_BYTE);
    assert_int_equal(brt_tokenizer_piece_type(tok, 1), BRT_PIECE_CONTROL);
    assert_int_equal(brt_tokenizer_piece_type(tok, 0), BRT_PIECE_UNKNOWN);
    assert_int_equal(brt_tokenizer_piece_type(tok, 15043), BRT_PIECE_NORMAL);
    brt_tokenizer_free(tok);
}

static void decode_reassembles_byte_runs(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    /* 🦙 split over four byte pieces after "▁" */
    expect_decode(tok, IDS(29871, 243, 162, 169, 156), "\xF0\x9F\xA6\x99", 4);
    /* A truncated sequence and a stray continuation byte: U+FFFD per invalid byte, as
     * sentencepiece; the valid character after them is kept. */
    expect_decode(tok, IDS(230, 133, 29874), "\xEF\xBF\xBD\xEF\xBF\xBD" "a", 7);
    expect_decode(tok, IDS(131, 243, 162, 169, 156), "\xEF\xBF\xBD\xF0\x9F\xA6\x99", 7);
    /* Bytes interrupted by a normal piece are two runs. */
    expect_decode(tok, IDS(243, 162, 29874, 169, 156),
                  "\xEF\xBF\xBD\xEF\xBF\xBD" "a\xEF\xBF\xBD\xEF\xBF\xBD", 13);
    /* Unknown keeps its surface even in first position. */
    expect_decode(tok, IDS(0, 3186), " \xE2\x81\x87  world", 11);
    brt_tokenizer_free(tok);
}

/* ---- TinyStories reference.json --------------------------------------------------------- */

static size_t json_ids(json_t *arr, int32_t **out)
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

static void check_reference_json(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer.model", BRT_SOURCE_DIR, dir);
    brt_tokenizer *tok = load_ok(path);
    snprintf(path, sizeof path, "%s/%s/reference.json", BRT_SOURCE_DIR, dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        fail_msg("%s: %s", path, jerr.text);

    json_t *tj = json_object_get(root, "tokenizer");
    assert_int_equal(brt_tokenizer_vocab_size(tok), json_integer_value(json_object_get(tj, "vocab_size")));
    assert_int_equal(brt_tokenizer_bos_id(tok), json_integer_value(json_object_get(tj, "bos_id")));
    assert_int_equal(brt_tokenizer_eos_id(tok), json_integer_value(json_object_get(tj, "eos_id")));
    assert_int_equal(brt_tokenizer_unk_id(tok), json_integer_value(json_object_get(tj, "unk_id")));
    assert_int_equal(brt_tokenizer_pad_id(tok), json_integer_value(json_object_get(tj, "pad_id")));

    json_t *cases = json_object_get(tj, "cases");
    assert_true(json_array_size(cases) >= 8);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        const char *decoded = json_string_value(json_object_get(c, "decoded"));
        json_t *pieces = json_object_get(c, "pieces");
        assert_non_null(text);
        assert_non_null(decoded);
        int32_t *want;
        size_t n_want = json_ids(json_object_get(c, "ids"), &want);
        expect_encode(tok, text, strlen(text), 0, want, n_want);
        assert_int_equal(json_array_size(pieces), n_want);
        for (size_t k = 0; k < n_want; k++)
            assert_string_equal(brt_tokenizer_piece(tok, want[k]),
                                json_string_value(json_array_get(pieces, k)));
        expect_decode(tok, want, n_want, decoded, strlen(decoded));
        assert_int_equal(strcmp(decoded, text) == 0,
                         json_is_true(json_object_get(c, "roundtrip_equal")));
        free(want);
    }

    /* Every prompt with text is [BOS] + encode(text); every greedy continuation decodes to its
     * reference text. */
    const char *key;
    json_t *obj;
    int n_prompts = 0, n_greedy = 0;
    json_object_foreach(root, key, obj) {
        if (!json_is_object(obj))
            continue;
        json_t *text = json_object_get(obj, "text");
        json_t *input_ids = json_object_get(obj, "input_ids");
        if (json_is_string(text) && input_ids) {
            int32_t *want;
            size_t n_want = json_ids(input_ids, &want);
            expect_encode(tok, json_string_value(text), json_string_length(text), 1, want, n_want);
            free(want);
            n_prompts++;
        }
        json_t *gids = json_object_get(obj, "greedy_new_ids");
        json_t *gtext = json_object_get(obj, "greedy_text");
        if (gids && json_is_string(gtext)) {
            int32_t *ids;
            size_t n = json_ids(gids, &ids);
            expect_decode(tok, ids, n, json_string_value(gtext), json_string_length(gtext));
            free(ids);
            n_greedy++;
        }
    }
    assert_true(n_prompts >= 1);
    assert_true(n_greedy >= 2);
    json_decref(root);
    brt_tokenizer_free(tok);
}

static void stories260k_matches_reference_json(void **state)
{
    (void)state;
    check_reference_json("models/stories260K");
}

static void tinystories_d64_matches_reference_json(void **state)
{
    (void)state;
    check_reference_json("tests/data/tinystories-d64-l5-hf");
}

static void tinystories_normalizer_and_roundtrips(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(STORIES_MODEL);
    /* remove_extra_whitespaces: text that is only spaces encodes to nothing. */
    expect_encode(tok, "   ", 3, 0, NULL, 0);
    expect_encode(tok, "   ", 3, 1, IDS(1));
    /* Tab and newline are not whitespace to the normalizer: bytes, and not collapsed. */
    expect_encode(tok, "\t", 1, 0, IDS(410, 12));
    /* This model's trainer_spec.unk_surface holds the escaped text " \\342\\201\\207 " (octal
     * escapes written literally when it was trained); sentencepiece decodes <unk> to exactly
     * that, so do we. */
    char buf[32];
    size_t nb = brt_tokenizer_token_bytes(tok, 0, buf, sizeof buf);
    assert_int_equal(nb, 14);
    assert_memory_equal(buf, " \\342\\201\\207 ", 14);
    expect_decode(tok, IDS(0), " \\342\\201\\207 ", 14);
    /* With remove_extra_whitespaces no leading space is real: decode drops them all. */
    expect_decode(tok, IDS(410, 403), "Once", 4);
    expect_decode(tok, IDS(1, 410, 410, 403), "Once", 4);
    expect_roundtrip(tok, "a \n b");
    expect_roundtrip(tok, "a\t \tb\n");
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "line one\nline two\n\nend",
        "tabs\tin\t\tthe\tmiddle",
        "naïve café 日本語 🦙 🤖",
        "In 2024 she had 3 cats.",
        "Wow!!! \"Yes,\" she said... (really?) [ok] {x} #1 @home & 50% off; a-b_c/d\\e",
        "x",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        expect_roundtrip(tok, texts[i]);
    brt_tokenizer_free(tok);
}

/* ---- synthetic models ------------------------------------------------------------------- */

typedef struct spec_piece {
    const char *piece;
    float score;
    int type;
} spec_piece;

enum { N_ = 1, UNK_ = 2, CTL_ = 3, USR_ = 4, UNU_ = 5, BYT_ = 6 };

/* Writes a model to a temp file; returns its path (static buffer). */
static const char *write_model(const spec_piece *ps, size_t n, int model_type, int add_dummy_prefix,
                               const char *charsmap)
{
    static char path[256];
    Sentencepiece__ModelProto m = SENTENCEPIECE__MODEL_PROTO__INIT;
    Sentencepiece__TrainerSpec ts = SENTENCEPIECE__TRAINER_SPEC__INIT;
    Sentencepiece__NormalizerSpec ns = SENTENCEPIECE__NORMALIZER_SPEC__INIT;
    Sentencepiece__ModelProto__SentencePiece sp[32], *spp[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        Sentencepiece__ModelProto__SentencePiece init = SENTENCEPIECE__MODEL_PROTO__SENTENCE_PIECE__INIT;
        sp[i] = init;
        sp[i].piece = (char *)ps[i].piece;
        sp[i].has_score = 1;
        sp[i].score = ps[i].score;
        sp[i].has_type = 1;
        sp[i].type = (Sentencepiece__ModelProto__SentencePiece__Type)ps[i].type;
        spp[i] = &sp[i];
    }
    m.n_pieces = n;
    m.pieces = spp;
    ts.has_model_type = 1;
    ts.model_type = (Sentencepiece__TrainerSpec__ModelType)model_type;
    m.trainer_spec = &ts;
    ns.name = (char *)"identity";
    ns.has_add_dummy_prefix = 1;
    ns.add_dummy_prefix = add_dummy_prefix;
    if (charsmap) {
        ns.has_precompiled_charsmap = 1;
        ns.precompiled_charsmap.data = (uint8_t *)charsmap;
        ns.precompiled_charsmap.len = strlen(charsmap);
    }
    m.normalizer_spec = &ns;
    size_t size = sentencepiece__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(size ? size : 1);
    assert_non_null(buf);
    assert_int_equal(sentencepiece__model_proto__pack(&m, buf), size);
    snprintf(path, sizeof path, "/tmp/brt_test_tok_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    close(fd);
    free(buf);
    return path;
}

static const spec_piece toy_pieces[] = {
    {"<unk>", 0, UNK_},         /* 0 */
    {"<s>", 0, CTL_},           /* 1 */
    {"</s>", 0, CTL_},          /* 2 */
    {"a", -1, N_},              /* 3 */
    {"b", -2, N_},              /* 4 */
    {"c", -3, N_},              /* 5 */
    {"ab", 10, UNU_},           /* 6: a merge step only, never output */
    {"abc", 5, N_},             /* 7 */
    {"<sep>", 0, USR_},         /* 8 */
    {"x", -4, N_},              /* 9 */
    {"xa", 20, N_},             /* 10 */
    {"<sep>a", 30, N_},         /* 11: unreachable, user-defined symbols never merge */
    {"\xE2\x96\x81", -5, N_},   /* 12 */
    {"aa", 1, N_},              /* 13 */
};

static void unused_user_defined_and_unknown_runs(void **state)
{
    (void)state;
    const char *path = write_model(toy_pieces, sizeof toy_pieces / sizeof toy_pieces[0], 2, 0, NULL);
    brt_tokenizer *tok = load_ok(path);
    unlink(path);
    assert_int_equal(brt_tokenizer_bos_id(tok), 1);
    /* "ab" is UNUSED: formed, then split back into its parts. */
    expect_encode(tok, "ab", 2, 0, IDS(3, 4));
    /* ...but it still leads to "abc". */
    expect_encode(tok, "abc", 3, 0, IDS(7));
    expect_encode(tok, "xab", 3, 0, IDS(10, 4));
    /* User-defined pieces match whole and stay whole. */
    expect_encode(tok, "a<sep>a", 7, 0, IDS(3, 8, 3));
    expect_encode(tok, "<sep><sep", 9, 0, IDS(8, 0));
    /* Equal scores: the leftmost pair first. */
    expect_encode(tok, "aaa", 3, 0, IDS(13, 3));
    /* No byte fallback: a run of unknown characters is one <unk>. */
    expect_encode(tok, "qqq", 3, 0, IDS(0));
    expect_encode(tok, "aqéqa", 6, 0, IDS(3, 0, 3));
    expect_encode(tok, "q q", 3, 0, IDS(0, 12, 0));
    expect_decode(tok, IDS(3, 0, 3), "a \xE2\x81\x87 a", 7);
    /* remove_extra_whitespaces (default on) drops the leading space; without a dummy prefix,
     * decode keeps a leading space. */
    expect_encode(tok, " a", 2, 0, IDS(3));
    expect_decode(tok, IDS(12, 3), " a", 2);
    brt_tokenizer_free(tok);
}

static void expect_load_error(const char *path, brt_status want, const char *needle)
{
    brt_tokenizer *tok = (brt_tokenizer *)1;
    brt_err err = {0};
    brt_status st = brt_tokenizer_load(path, &tok, &err);
    if (st != want)
        fail_msg("load %s: status %s (%s), want %s", path, brt_status_name(st), err.msg,
                 brt_status_name(want));
    assert_null(tok);
    assert_int_equal(err.status, want);
    if (!strstr(err.msg, path))
        fail_msg("message does not name the file: %s", err.msg);
    if (needle && !strstr(err.msg, needle))
        fail_msg("message lacks '%s': %s", needle, err.msg);
}

static void unsupported_models_are_refused(void **state)
{
    (void)state;
    size_t n = sizeof toy_pieces / sizeof toy_pieces[0];
    const char *path = write_model(toy_pieces, n, 1, 1, NULL);
    expect_load_error(path, BRT_ERR_UNSUPPORTED, "UNIGRAM");
    unlink(path);
    path = write_model(toy_pieces, n, 2, 1, "\x01\x02\x03");
    expect_load_error(path, BRT_ERR_UNSUPPORTED, "precompiled_charsmap");
    unlink(path);
    path = write_model(toy_pieces, 0, 2, 1, NULL);
    expect_load_error(path, BRT_ERR_FORMAT, "no pieces");
    unlink(path);
    path = write_model(toy_pieces + 1, n - 1, 2, 1, NULL); /* no <unk> */
    expect_load_error(path, BRT_ERR_FORMAT, "UNKNOWN");
    unlink(path);
    spec_piece dup[] = {{"<unk>", 0, UNK_}, {"a", 0, N_}, {"a", 0, N_}};
    path = write_model(dup, 3, 2, 1, NULL);
    expect_load_error(path, BRT_ERR_FORMAT, "duplicates");
    unlink(path);
    spec_piece byte[] = {{"<unk>", 0, UNK_}, {"<0x41>", 0, BYT_}};
    path = write_model(byte, 2, 2, 1, NULL); /* byte piece without byte_fallback */
    expect_load_error(path, BRT_ERR_FORMAT, "byte_fallback");
    unlink(path);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void bad_files_are_errors_naming_the_file(void **state)
{
    (void)state;
    expect_load_error("/nonexistent/dir/tokenizer.model", BRT_ERR_IO, NULL);

    /* The first 1000 bytes of the Llama-2 model: cut inside the piece list. */
    FILE *f = fopen(LLAMA2_MODEL, "rb");
    assert_non_null(f);
    char head[1000];
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    char path[] = "/tmp/brt_test_tok_trunc_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, head, sizeof head), (ssize_t)sizeof head);
    close(fd);
    expect_load_error(path, BRT_ERR_FORMAT, "truncated or corrupt");
    unlink(path);

    char gpath[] = "/tmp/brt_test_tok_garbage_XXXXXX";
    fd = mkstemp(gpath);
    assert_true(fd >= 0);
    static const char garbage[] = "{\"this is\": \"not a sentencepiece model\"}\n";
    assert_int_equal(write(fd, garbage, sizeof garbage - 1), (ssize_t)(sizeof garbage - 1));
    close(fd);
    expect_load_error(gpath, BRT_ERR_FORMAT, NULL);
    unlink(gpath);

    /* Llama-3's original tokenizer.model is tiktoken's format: named, with what to use instead */
    char tpath[] = "/tmp/brt_test_tok_tiktoken_XXXXXX";
    fd = mkstemp(tpath);
    assert_true(fd >= 0);
    static const char tiktoken[] = "IQ== 0\nIg== 1\nIw== 2\n";
    assert_int_equal(write(fd, tiktoken, sizeof tiktoken - 1), (ssize_t)(sizeof tiktoken - 1));
    close(fd);
    expect_load_error(tpath, BRT_ERR_UNSUPPORTED, "tiktoken BPE file");
    unlink(tpath);

    char epath[] = "/tmp/brt_test_tok_empty_XXXXXX";
    fd = mkstemp(epath);
    assert_true(fd >= 0);
    close(fd);
    expect_load_error(epath, BRT_ERR_FORMAT, "no pieces");
    unlink(epath);
}

static void invalid_utf8_is_an_error_naming_the_offset(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    static const struct {
        const char *text;
        size_t len;
        const char *offset;
    } bad[] = {
        {"abc\x80", 4, "offset 3"},          /* stray continuation byte */
        {"ab\xC3", 3, "offset 2"},           /* truncated at the end */
        {"\xC0\x80", 2, "offset 0"},         /* overlong NUL */
        {"x \xED\xA0\x80", 5, "offset 2"},   /* surrogate */
        {"\xF4\x90\x80\x80", 4, "offset 0"}, /* above U+10FFFF */
        {"caf\xC3\xA9\xFF", 6, "offset 5"},  /* after a valid 2-byte character */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = (int32_t *)1;
        size_t n = 7;
        brt_err err = {0};
        assert_int_equal(brt_tokenizer_encode(tok, bad[i].text, bad[i].len, 0, &ids, &n, &err),
                         BRT_ERR_INVALID);
        assert_null(ids);
        assert_int_equal(n, 0);
        if (!strstr(err.msg, bad[i].offset))
            fail_msg("case %zu: message lacks '%s': %s", i, bad[i].offset, err.msg);
    }
    brt_tokenizer_free(tok);
}

static void out_of_range_ids_are_errors_naming_id_and_position(void **state)
{
    (void)state;
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    char *text = (char *)1;
    size_t len = 5;
    brt_err err = {0};
    const int32_t ids[] = {15043, 3186, 32000};
    assert_int_equal(brt_tokenizer_decode(tok, ids, 3, &text, &len, &err), BRT_ERR_RANGE);
    assert_null(text);
    assert_non_null(strstr(err.msg, "32000"));
    assert_non_null(strstr(err.msg, "position 2"));
    const int32_t neg[] = {-7};
    assert_int_equal(brt_tokenizer_decode(tok, neg, 1, &text, &len, &err), BRT_ERR_RANGE);
    assert_non_null(strstr(err.msg, "-7"));
    assert_non_null(strstr(err.msg, "position 0"));
    /* An empty sequence is an empty string. */
    expect_decode(tok, NULL, 0, "", 0);
    brt_tokenizer_free(tok);
}

/* ---- speed ------------------------------------------------------------------------------ */

static void load_and_megabyte_encode_are_fast(void **state)
{
    (void)state;
    double t0 = now_s();
    brt_tokenizer *tok = load_ok(LLAMA2_MODEL);
    double t_load = now_s() - t0;

    /* 1 MiB of mixed prose, whitespace runs, digits and multi-byte text. */
    static const char *const parts[] = {
        "Once upon a time, in a small town, there lived a kind girl named Mia. ",
        "The   quick brown fox\tjumps over\n\nthe lazy dog 1234567890. ",
        "naïve café 日本語 🦙 Ελληνικά русский ",
        "supercalifragilisticexpialidocious antidisestablishmentarianism ",
    };
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (size_t k = 0;; k++) {
        const char *p = parts[k % 4];
        size_t l = strlen(p);
        if (len + l > cap)
            break;
        memcpy(text + len, p, l);
        len += l;
    }
    /* One long word without any merge-friendly boundary stresses the heap. */
    memset(text, 'a', 4096);

    t0 = now_s();
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    if (brt_tokenizer_encode(tok, text, len, 0, &ids, &n, &err) != BRT_OK)
        fail_msg("encode: %s", err.msg);
    double t_enc = now_s() - t0;

    char *back = NULL;
    size_t back_len = 0;
    t0 = now_s();
    assert_int_equal(brt_tokenizer_decode(tok, ids, n, &back, &back_len, &err), BRT_OK);
    double t_dec = now_s() - t0;
    assert_int_equal(back_len, len);
    assert_memory_equal(back, text, len);
    print_message("llama2 load %.1f ms; encode %zu bytes -> %zu ids %.1f ms; decode %.1f ms\n",
                  1e3 * t_load, len, n, 1e3 * t_enc, 1e3 * t_dec);
    if (!UNDER_SANITIZER) {
        assert_true(t_load < 0.2);
        assert_true(t_enc < 1.0);
        assert_true(t_dec < 0.5);
    }
    free(back);
    free(ids);
    free(text);
    brt_tokenizer_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama2_encode_matches_sentencepiece),
        cmocka_unit_test(llama2_empty_and_space_only_text),
        cmocka_unit_test(llama2_roundtrips_every_kind_of_text),
        cmocka_unit_test(llama2_every_id_decodes_alone),
        cmocka_unit_test(token_bytes_are_the_stream_bytes),
        cmocka_unit_test(decode_reassembles_byte_runs),
        cmocka_unit_test(stories260k_matches_reference_json),
        cmocka_unit_test(tinystories_d64_matches_reference_json),
        cmocka_unit_test(tinystories_normalizer_and_roundtrips),
        cmocka_unit_test(unused_user_defined_and_unknown_runs),
        cmocka_unit_test(unsupported_models_are_refused),
        cmocka_unit_test(bad_files_are_errors_naming_the_file),
        cmocka_unit_test(invalid_utf8_is_an_error_naming_the_offset),
        cmocka_unit_test(out_of_range_ids_are_errors_naming_id_and_position),
        cmocka_unit_test(load_and_megabyte_encode_are_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
