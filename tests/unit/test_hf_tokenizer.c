/* The tokenizer.json backend on small hand-written files: each supported option (model, added
 * tokens, normalizers, pre-tokenizers, decoders, post-processor, tokenizer_config.json), the
 * token limit, invalid UTF-8, and each refusal naming its field. The expected ids were checked
 * with the `tokenizers` library (0.23.3) on the same files; tests/tokenizer/hf_reference.sh
 * compares the two on real vocabularies. */
#define _GNU_SOURCE /* asprintf */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/tokenizer.h"

static char g_dir[64];

/* JSON is written with ' for " (the contents below have no apostrophes). */
static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    if (!text) {
        unlink(path);
        return;
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (const char *p = text; *p; p++)
        fputc(*p == '\'' ? '"' : *p, f);
    fclose(f);
}

typedef struct spec {
    const char *vocab, *merges, *model_extra, *normalizer, *pre, *decoder, *post, *added, *config;
} spec;

/* A tokenizer.json from its parts (NULL: a default) and a tokenizer_config.json (NULL: none). */
static brt_status load_spec(const spec *s, brt_tokenizer **tok, brt_err *err)
{
    char *j = NULL;
    int n = asprintf(&j,
                     "{'version': '1.0', 'truncation': null, 'padding': null, 'added_tokens': %s, 'normalizer': %s, "
                     "'pre_tokenizer': %s, 'post_processor': %s, 'decoder': %s, 'model': {'type': 'BPE', "
                     "'dropout': null, 'unk_token': null, 'fuse_unk': false, 'byte_fallback': false, "
                     "'ignore_merges': false, 'vocab': %s, 'merges': %s%s}}",
                     s->added ? s->added : "[]", s->normalizer ? s->normalizer : "null", s->pre ? s->pre : "null",
                     s->post ? s->post : "null", s->decoder ? s->decoder : "null",
                     s->vocab ? s->vocab : "{'a': 0, 'b': 1, 'c': 2, 'ab': 3, 'bc': 4, 'abc': 5, ' ': 6}",
                     s->merges ? s->merges : "['a b', 'ab c']", s->model_extra ? s->model_extra : "");
    assert_true(n > 0);
    write_file("tokenizer.json", j);
    free(j);
    write_file("tokenizer_config.json", s->config);
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", g_dir);
    *tok = NULL;
    return brt_tokenizer_load(path, tok, err);
}

static brt_tokenizer *load_ok(const spec *s)
{
    brt_tokenizer *tok = NULL;
    brt_err err = {0};
    if (load_spec(s, &tok, &err) != BRT_OK)
        fail_msg("load: %s", err.msg);
    return tok;
}

/* The load must fail with st and a message containing want. */
static void expect_refused(const spec *s, brt_status st, const char *want)
{
    brt_tokenizer *tok = NULL;
    brt_err err = {0};
    brt_status got = load_spec(s, &tok, &err);
    if (got == BRT_OK) {
        brt_tokenizer_free(tok);
        fail_msg("loaded, want an error containing '%s'", want);
    }
    if (got != st || !strstr(err.msg, want))
        fail_msg("got %s '%s', want %s containing '%s'", brt_status_name(got), err.msg, brt_status_name(st), want);
    assert_null(tok);
}

static void expect_ids(const brt_tokenizer *tok, const char *text, int add_bos, const int32_t *want, size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    if (brt_tokenizer_encode(tok, text, strlen(text), add_bos, &ids, &n, &err) != BRT_OK)
        fail_msg("encode '%s': %s", text, err.msg);
    int same = n == n_want;
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "encode '%s'\n  got :", text);
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

static void expect_decode(const brt_tokenizer *tok, const int32_t *ids, size_t n, const char *want)
{
    char *text = NULL;
    size_t len = 0;
    brt_err err = {0};
    if (brt_tokenizer_decode(tok, ids, n, &text, &len, &err) != BRT_OK)
        fail_msg("decode: %s", err.msg);
    if (len != strlen(want) || memcmp(text, want, len) != 0)
        fail_msg("decode: got '%.*s', want '%s'", (int)len, text, want);
    free(text);
}

static void expect_token_bytes(const brt_tokenizer *tok, int32_t id, const char *want, size_t want_len)
{
    char buf[64];
    size_t n = brt_tokenizer_token_bytes(tok, id, buf, sizeof buf);
    if (n != want_len || memcmp(buf, want, n) != 0)
        fail_msg("token_bytes(%d): got '%.*s' (%zu bytes), want %zu bytes", id, (int)n, buf, n, want_len);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (sizeof((const int32_t[]){__VA_ARGS__}) / 4)

/* GPT-2's byte characters: ids 0..255 are the bytes, then the given tokens. */
static char *byte_level_vocab(const char *extra)
{
    static char buf[16384];
    size_t o = 0;
    int next = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{");
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        unsigned cp = keep ? (unsigned)b : (unsigned)(256 + next++);
        o += (size_t)snprintf(buf + o, sizeof buf - o, "'\\u%04x': %d, ", cp, b); /* escaped: no ' or \\ */
    }
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%s}", extra);
    return buf;
}

static const char BYTE_LEVEL[] =
    "{'type': 'ByteLevel', 'add_prefix_space': false, 'trim_offsets': true, 'use_regex': true}";

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/brt-hf-tok.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    write_file("tokenizer.json", NULL);
    write_file("tokenizer_config.json", NULL);
    write_file("tokenizer.model", NULL);
    rmdir(g_dir);
    return 0;
}

/* ---- the BPE model ------------------------------------------------------------------------ */

static void bpe_merges_by_rank(void **state)
{
    (void)state;
    spec s = {0};
    brt_tokenizer *tok = load_ok(&s);
    assert_int_equal(brt_tokenizer_vocab_size(tok), 7);
    expect_ids(tok, "abc", 0, IDS(5));
    expect_ids(tok, "cab", 0, IDS(2, 3));
    expect_ids(tok, "abcabc", 0, IDS(5, 5));
    expect_ids(tok, "", 0, NULL, 0);
    /* no decoder: `tokenizers` joins the tokens with spaces */
    expect_decode(tok, IDS(5, 2), "abc c");
    assert_int_equal(brt_tokenizer_bos_id(tok), -1);
    assert_int_equal(brt_tokenizer_adds_bos(tok), 0);
    assert_string_equal(brt_tokenizer_piece(tok, 5), "abc");
    assert_int_equal(brt_tokenizer_piece_id(tok, "bc", 2), 4);
    assert_int_equal(brt_tokenizer_piece_type(tok, 4), BRT_PIECE_NORMAL);
    brt_tokenizer_free(tok);

    /* the lower rank wins: "b c" before "a b" leaves a + bc; the [a, b] form of merges */
    s.merges = "[['b', 'c'], ['a', 'b']]";
    tok = load_ok(&s);
    expect_ids(tok, "abc", 0, IDS(0, 4));
    expect_ids(tok, "abab", 0, IDS(3, 3));
    brt_tokenizer_free(tok);

    /* a character without a token and no unk_token is dropped, as `tokenizers` does */
    s.merges = NULL;
    tok = load_ok(&s);
    expect_ids(tok, "axb", 0, IDS(3));
    brt_tokenizer_free(tok);
}

static void bpe_ignore_merges_keeps_whole_words(void **state)
{
    (void)state;
    spec s = {.merges = "['a b']", .model_extra = ", 'ignore_merges': true"};
    brt_tokenizer *tok = load_ok(&s);
    expect_ids(tok, "abc", 0, IDS(5));
    brt_tokenizer_free(tok);
    s.model_extra = NULL;
    tok = load_ok(&s);
    expect_ids(tok, "abc", 0, IDS(3, 2));
    brt_tokenizer_free(tok);
}

static void bpe_unknown_tokens_fuse_or_not(void **state)
{
    (void)state;
    spec s = {
        .vocab = "{'<unk>': 0, 'a': 1}", .merges = "[]", .model_extra = ", 'unk_token': '<unk>', 'fuse_unk': true"};
    brt_tokenizer *tok = load_ok(&s);
    expect_ids(tok, "axyza", 0, IDS(1, 0, 1));
    assert_int_equal(brt_tokenizer_unk_id(tok), 0);
    assert_int_equal(brt_tokenizer_piece_type(tok, 0), BRT_PIECE_UNKNOWN);
    brt_tokenizer_free(tok);
    s.model_extra = ", 'unk_token': '<unk>', 'fuse_unk': false";
    tok = load_ok(&s);
    expect_ids(tok, "axyza", 0, IDS(1, 0, 0, 0, 1));
    brt_tokenizer_free(tok);
}

/* Llama/Mistral-style: byte fallback, Prepend + Replace, the SentencePiece decoder chain. */
static void sentencepiece_style_file(void **state)
{
    (void)state;
    static char vocab[8192];
    size_t o = (size_t)snprintf(vocab, sizeof vocab, "{'<unk>': 0, '<s>': 1, '</s>': 2");
    for (int b = 0; b < 256; b++)
        o += (size_t)snprintf(vocab + o, sizeof vocab - o, ", '<0x%02X>': %d", b, 3 + b);
    snprintf(vocab + o, sizeof vocab - o,
             ", '\\u2581': 259, 'a': 260, 'b': 261, '\\u2581a': 262, '\\u2581ab': 263, '\\u00e9': 264}");
    spec s = {.vocab = vocab,
              .merges = "['\\u2581 a', '\\u2581a b']",
              .model_extra = ", 'unk_token': '<unk>', 'fuse_unk': true, 'byte_fallback': true",
              .normalizer = "{'type': 'Sequence', 'normalizers': [{'type': 'Prepend', 'prepend': '\\u2581'}, "
                            "{'type': 'Replace', 'pattern': {'String': ' '}, 'content': '\\u2581'}]}",
              .decoder = "{'type': 'Sequence', 'decoders': [{'type': 'Replace', 'pattern': {'String': '\\u2581'}, "
                         "'content': ' '}, {'type': 'ByteFallback'}, {'type': 'Fuse'}, "
                         "{'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 0}]}",
              .added = "[{'id': 1, 'content': '<s>', 'single_word': false, 'lstrip': false, 'rstrip': false, "
                       "'normalized': false, 'special': true}, {'id': 2, 'content': '</s>', 'single_word': false, "
                       "'lstrip': false, 'rstrip': false, 'normalized': false, 'special': true}]",
              .config = "{'add_bos_token': true, 'add_eos_token': false, 'bos_token': {'content': '<s>'}, "
                        "'eos_token': '</s>'}"};
    brt_tokenizer *tok = load_ok(&s);
    assert_int_equal(brt_tokenizer_adds_bos(tok), 1);
    assert_int_equal(brt_tokenizer_bos_id(tok), 1);
    assert_int_equal(brt_tokenizer_eos_id(tok), 2);
    assert_int_equal(brt_tokenizer_piece_type(tok, 1), BRT_PIECE_CONTROL);
    assert_int_equal(brt_tokenizer_piece_type(tok, 3 + 0xC3), BRT_PIECE_BYTE);
    /* "ab a" -> "▁ab▁a"; "é" has a token, "ü" falls back to its bytes */
    expect_ids(tok, "ab a", 1, IDS(1, 263, 262));
    expect_ids(tok, "a\xC3\xBC\xC3\xA9", 0, IDS(262, 3 + 0xC3, 3 + 0xBC, 264));
    /* the text after an added token is normalized on its own: it gets its own "▁" */
    expect_ids(tok, "a</s>a", 0, IDS(262, 2, 262));
    expect_decode(tok, IDS(1, 263, 262, 2), "ab a");
    expect_decode(tok, IDS(262, 3 + 0xC3, 3 + 0xBC), "a\xC3\xBC");
    /* an unfinished byte sequence: one U+FFFD per byte, as ByteFallback does */
    expect_decode(tok, IDS(262, 3 + 0xE2, 3 + 0x82), "a\xEF\xBF\xBD\xEF\xBF\xBD");
    expect_token_bytes(tok, 263, " ab", 3);
    expect_token_bytes(tok, 3 + 0xC3, "\xC3", 1);
    expect_token_bytes(tok, 1, "", 0);
    brt_tokenizer_free(tok);
}

/* ---- byte-level BPE --------------------------------------------------------------------- */

static void byte_level_encode_decode_and_stream_bytes(void **state)
{
    (void)state;
    spec s = {.vocab = byte_level_vocab("'\\u0120a': 256, 'ab': 257, '\\u0120ab': 258, '<|x|>': 259"),
              .merges = "['\\u0120 a', 'a b', '\\u0120a b']",
              .pre = BYTE_LEVEL,
              .decoder = BYTE_LEVEL,
              .added = "[{'id': 259, 'content': '<|x|>', 'single_word': false, 'lstrip': false, 'rstrip': false, "
                       "'normalized': false, 'special': true}]"};
    brt_tokenizer *tok = load_ok(&s);
    expect_ids(tok, "ab ab", 0, IDS(257, 258));
    expect_ids(tok, "ab<|x|> ab", 0, IDS(257, 259, 258));
    expect_ids(tok, "\xC3\xA9\n", 0, IDS(0xC3, 0xA9, 0x0A));
    /* special tokens read as nothing; the rest round-trips byte for byte */
    expect_decode(tok, IDS(257, 259, 258), "ab ab");
    expect_decode(tok, IDS(0xC3, 0xA9, 0x0A), "\xC3\xA9\n");
    /* an incomplete character decodes to U+FFFD (from_utf8_lossy); token bytes stay raw */
    expect_decode(tok, IDS(0xE2, 0x82, 'x'), "\xEF\xBF\xBDx");
    expect_token_bytes(tok, 258, " ab", 3);
    expect_token_bytes(tok, 0xE2, "\xE2", 1);
    expect_token_bytes(tok, 0, "\0", 1);
    expect_token_bytes(tok, 259, "", 0);
    assert_int_equal(brt_tokenizer_piece_type(tok, 259), BRT_PIECE_CONTROL);
    assert_int_equal(brt_tokenizer_piece_id(tok, "<|x|>", 5), 259);
    brt_tokenizer_free(tok);

    /* add_prefix_space: every piece gets a leading space */
    s.pre = "{'type': 'ByteLevel', 'add_prefix_space': true, 'trim_offsets': true, 'use_regex': true}";
    tok = load_ok(&s);
    expect_ids(tok, "ab", 0, IDS(258));
    brt_tokenizer_free(tok);
}

/* ---- added tokens ------------------------------------------------------------------------- */

static void added_token_flags(void **state)
{
    (void)state;
    spec s = {.vocab = byte_level_vocab("'<m>': 256, '<n>': 257, 'hi': 258, '<r>': 259"),
              .merges = "[]",
              .pre = BYTE_LEVEL,
              .decoder = BYTE_LEVEL,
              .normalizer = "{'type': 'Lowercase'}",
              .added = "[{'id': 256, 'content': '<m>', 'single_word': false, 'lstrip': true, 'rstrip': false, "
                       "'normalized': false, 'special': true}, "
                       "{'id': 259, 'content': '<r>', 'single_word': false, 'lstrip': false, 'rstrip': true, "
                       "'normalized': false, 'special': false}, "
                       "{'id': 260, 'content': '<N>', 'single_word': false, 'lstrip': false, 'rstrip': false, "
                       "'normalized': true, 'special': false}, "
                       "{'id': 258, 'content': 'hi', 'single_word': true, 'lstrip': false, 'rstrip': false, "
                       "'normalized': false, 'special': false}]"};
    /* '<N>' (normalized=true) is matched as its normalized form "<n>" */
    brt_tokenizer *tok = load_ok(&s);
    /* lstrip takes the spaces before <m> */
    expect_ids(tok, "a  <m>b", 0, IDS('a', 256, 'b'));
    /* rstrip takes the whitespace after <r> */
    expect_ids(tok, "<r> \tb", 0, IDS(259, 'b'));
    /* matched after normalization: "<N>" and "<n>" both */
    expect_ids(tok, "<N><n>", 0, IDS(260, 260));
    /* single_word: only between non-word characters (there is no merge: "hi" is the added token) */
    expect_ids(tok, "hi", 0, IDS(258));
    expect_ids(tok, "x hi.", 0, IDS('x', 0x20, 258, '.'));
    expect_ids(tok, "hix", 0, IDS('h', 'i', 'x'));
    expect_ids(tok, "xhi", 0, IDS('x', 'h', 'i'));
    assert_int_equal(brt_tokenizer_piece_type(tok, 259), BRT_PIECE_USER_DEFINED);
    /* a normalized=true token decodes from its normalized form, as `tokenizers` 0.2x does */
    expect_decode(tok, IDS(258, 256, 259, 260), "hi<r><n>");
    brt_tokenizer_free(tok);
}

/* ---- normalizers and pre-tokenizers ------------------------------------------------------- */

static void normalizers(void **state)
{
    (void)state;
    spec s = {.vocab = "{'a': 0, 'b': 1, '\\u00e9': 2, 'e': 3, '\\u0301': 4, 'fi': 5, 'f': 6, 'i': 7, 'x': 8}",
              .merges = "['f i']"};
    s.normalizer = "{'type': 'NFC'}";
    brt_tokenizer *tok = load_ok(&s);
    expect_ids(tok, "e\xCC\x81", 0, IDS(2));
    brt_tokenizer_free(tok);
    s.normalizer = "{'type': 'NFD'}";
    tok = load_ok(&s);
    expect_ids(tok, "\xC3\xA9", 0, IDS(3, 4));
    brt_tokenizer_free(tok);
    s.normalizer = "{'type': 'NFKC'}"; /* U+FB01 ﬁ -> "fi" */
    tok = load_ok(&s);
    expect_ids(tok, "\xEF\xAC\x81", 0, IDS(5));
    brt_tokenizer_free(tok);
    s.normalizer = "{'type': 'NFKD'}";
    tok = load_ok(&s);
    expect_ids(tok, "\xEF\xAC\x81\xC3\xA9", 0, IDS(5, 3, 4));
    brt_tokenizer_free(tok);
    s.normalizer = "{'type': 'Sequence', 'normalizers': [{'type': 'Lowercase'}, "
                   "{'type': 'Replace', 'pattern': {'Regex': '[0-9]+'}, 'content': 'x'}, "
                   "{'type': 'Replace', 'pattern': {'String': 'B'}, 'content': 'a'}]}";
    tok = load_ok(&s);
    expect_ids(tok, "AB12b", 0, IDS(0, 1, 8, 1));
    brt_tokenizer_free(tok);
}

static void pre_tokenizers(void **state)
{
    (void)state;
    spec s = {.vocab = "{'a': 0, 'b': 1, '1': 2, '2': 3, 'ab': 4, '12': 5, 'a1': 6, ' ': 7, ' a': 8}",
              .merges = "[['a', 'b'], ['1', '2'], ['a', '1'], [' ', 'a']]"};
    s.pre = "{'type': 'Digits', 'individual_digits': true}";
    brt_tokenizer *tok = load_ok(&s);
    expect_ids(tok, "a12b", 0, IDS(0, 2, 3, 1));
    brt_tokenizer_free(tok);
    s.pre = "{'type': 'Digits', 'individual_digits': false}";
    tok = load_ok(&s);
    expect_ids(tok, "a12b", 0, IDS(0, 5, 1));
    brt_tokenizer_free(tok);
    /* Split on "b": Removed drops it, MergedWithPrevious keeps it on the piece before */
    s.pre = "{'type': 'Split', 'pattern': {'String': 'b'}, 'behavior': 'Removed', 'invert': false}";
    tok = load_ok(&s);
    expect_ids(tok, "abab", 0, IDS(0, 0));
    brt_tokenizer_free(tok);
    s.pre = "{'type': 'Split', 'pattern': {'String': 'b'}, 'behavior': 'MergedWithPrevious', 'invert': false}";
    tok = load_ok(&s);
    expect_ids(tok, "abab", 0, IDS(4, 4));
    brt_tokenizer_free(tok);
    s.pre = "{'type': 'Split', 'pattern': {'String': 'b'}, 'behavior': 'MergedWithNext', 'invert': false}";
    tok = load_ok(&s);
    expect_ids(tok, "abab", 0, IDS(0, 1, 0, 1));
    brt_tokenizer_free(tok);
    s.pre = "{'type': 'Sequence', 'pretokenizers': [{'type': 'Split', 'pattern': {'Regex': '\\\\s+'}, "
            "'behavior': 'Isolated', 'invert': false}, {'type': 'Split', 'pattern': {'Regex': '[0-9]'}, "
            "'behavior': 'Contiguous', 'invert': true}]}";
    tok = load_ok(&s);
    /* "a1", " ", "a12"; then runs of digits and of the rest, each its own piece */
    expect_ids(tok, "a1 a12", 0, IDS(0, 2, 7, 0, 5));
    brt_tokenizer_free(tok);
}

/* ---- BOS, the token limit, invalid UTF-8 -------------------------------------------------- */

static void bos_from_config_or_template(void **state)
{
    (void)state;
    const char *added = "[{'id': 7, 'content': '<bos>', 'single_word': false, 'lstrip': false, 'rstrip': false, "
                        "'normalized': false, 'special': true}]";
    const char *tmpl = "{'type': 'Sequence', 'processors': [{'type': 'ByteLevel', 'add_prefix_space': true, "
                       "'trim_offsets': false, 'use_regex': true}, "
                       "{'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': '<bos>', 'type_id': 0}}, "
                       "{'Sequence': {'id': 'A', 'type_id': 0}}], 'pair': [], 'special_tokens': {'<bos>': {'id': "
                       "'<bos>', 'ids': [7], 'tokens': ['<bos>']}}}]}";
    spec s = {.added = added, .post = tmpl};
    brt_tokenizer *tok = load_ok(&s);
    assert_int_equal(brt_tokenizer_adds_bos(tok), 1);
    assert_int_equal(brt_tokenizer_bos_id(tok), 7);
    expect_ids(tok, "ab", brt_tokenizer_adds_bos(tok), IDS(7, 3));
    brt_tokenizer_free(tok);
    /* add_bos_token in tokenizer_config.json decides over the template */
    s.config = "{'add_bos_token': false, 'bos_token': '<bos>', 'eos_token': null}";
    tok = load_ok(&s);
    assert_int_equal(brt_tokenizer_adds_bos(tok), 0);
    assert_int_equal(brt_tokenizer_bos_id(tok), 7);
    assert_int_equal(brt_tokenizer_eos_id(tok), -1);
    brt_tokenizer_free(tok);
    /* no template, no config: nothing added, no BOS to add */
    s.post = NULL;
    s.config = NULL;
    tok = load_ok(&s);
    assert_int_equal(brt_tokenizer_adds_bos(tok), 0);
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    assert_int_equal(brt_tokenizer_encode(tok, "ab", 2, 1, &ids, &n, &err), BRT_ERR_INVALID);
    brt_tokenizer_free(tok);
}

static void token_limit_and_invalid_utf8(void **state)
{
    (void)state;
    spec s = {.pre = "{'type': 'Split', 'pattern': {'String': ' '}, 'behavior': 'Isolated', 'invert': false}"};
    brt_tokenizer *tok = load_ok(&s);
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    assert_int_equal(brt_tokenizer_encode_max(tok, "abc abc abc", 11, 0, 5, &ids, &n, &err), BRT_OK);
    assert_int_equal(n, 5);
    free(ids);
    assert_int_equal(brt_tokenizer_encode_max(tok, "abc abc abc", 11, 0, 4, &ids, &n, &err), BRT_ERR_RANGE);
    assert_null(ids);
    /* a huge text stops soon after the limit */
    size_t big = (size_t)64 << 20;
    char *text = malloc(big);
    assert_non_null(text);
    for (size_t i = 0; i < big; i++)
        text[i] = "abc "[i % 4];
    assert_int_equal(brt_tokenizer_encode_max(tok, text, big, 0, 1000, &ids, &n, &err), BRT_ERR_RANGE);
    assert_non_null(strstr(err.msg, "more than 1000 tokens"));
    free(text);
    assert_int_equal(brt_tokenizer_encode(tok, "abc\x80", 4, 0, &ids, &n, &err), BRT_ERR_INVALID);
    assert_non_null(strstr(err.msg, "byte offset 3"));
    assert_int_equal(brt_tokenizer_encode(tok, "ab\xED\xA0\x80", 5, 0, &ids, &n, &err), BRT_ERR_INVALID);
    assert_non_null(strstr(err.msg, "byte offset 2"));
    int32_t bad[] = {0, 99};
    char *d = NULL;
    size_t dl = 0;
    assert_int_equal(brt_tokenizer_decode(tok, bad, 2, &d, &dl, &err), BRT_ERR_RANGE);
    assert_non_null(strstr(err.msg, "position 1"));
    brt_tokenizer_free(tok);
}

/* tokenizer.json wins over tokenizer.model in a model folder */
static void folder_prefers_tokenizer_json(void **state)
{
    (void)state;
    spec s = {0};
    brt_tokenizer *tok = load_ok(&s);
    brt_tokenizer_free(tok);
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.model", g_dir);
    assert_int_equal(symlink(BRT_SOURCE_DIR "/models/stories260K/tokenizer.model", path), 0);
    brt_err err = {0};
    assert_int_equal(brt_tokenizer_load_dir(g_dir, &tok, &err), BRT_OK);
    assert_int_equal(brt_tokenizer_vocab_size(tok), 7);
    brt_tokenizer_free(tok);
    write_file("tokenizer.json", NULL);
    assert_int_equal(brt_tokenizer_load_dir(g_dir, &tok, &err), BRT_OK);
    assert_int_equal(brt_tokenizer_vocab_size(tok), 512);
    assert_int_equal(brt_tokenizer_adds_bos(tok), 1);
    brt_tokenizer_free(tok);
    write_file("tokenizer.model", NULL);
    assert_int_equal(brt_tokenizer_load_dir(g_dir, &tok, &err), BRT_ERR_NOT_FOUND);
}

/* ---- refusals ----------------------------------------------------------------------------- */

static void unsupported_fields_are_refused_by_name(void **state)
{
    (void)state;
    spec s = {0};
    s.pre = "{'type': 'Metaspace', 'replacement': '\\u2581', 'prepend_scheme': 'first', 'split': false}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "pre_tokenizer.type \"Metaspace\" is not supported");
    s.pre = "{'type': 'Sequence', 'pretokenizers': [{'type': 'Digits'}, {'type': 'Whitespace'}]}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[1].type \"Whitespace\"");
    s.pre = "{'type': 'Sequence', 'pretokenizers': ["
            "{'type': 'ByteLevel'}, {'type': 'Digits'}]}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[1]: a pre-tokenizer after ByteLevel");
    s.pre = "{'type': 'Split', 'pattern': {'Regex': 'a'}, 'behavior': 'Sideways', 'invert': false}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "pre_tokenizer.behavior \"Sideways\"");
    s.pre = "{'type': 'Split', 'pattern': {'Regex': '(a'}, 'behavior': 'Isolated', 'invert': false}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "pre_tokenizer.pattern.Regex: regex \"(a\" is not supported by PCRE2");
    s.pre = "{'type': 'Split', 'pattern': {'Regex': '[\\\\Wa]'}, 'behavior': 'Isolated', 'invert': false}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "\\W inside a character class");
    s.pre = NULL;
    s.normalizer = "{'type': 'BertNormalizer', 'lowercase': true}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "normalizer.type \"BertNormalizer\" is not supported");
    s.normalizer = "{'type': 'Sequence', 'normalizers': [{'type': 'NFC'}, {'type': 'Precompiled', "
                   "'precompiled_charsmap': 'AAAA'}]}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "normalizer.normalizers[1].type \"Precompiled\"");
    s.normalizer = NULL;
    s.decoder = "{'type': 'Metaspace', 'replacement': '\\u2581'}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "decoder.type \"Metaspace\" is not supported");
    s.decoder = NULL;
    s.post = "{'type': 'RobertaProcessing', 'sep': ['</s>', 2], 'cls': ['<s>', 0]}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "post_processor.type \"RobertaProcessing\"");
    s.post = "{'type': 'TemplateProcessing', 'single': [{'Sequence': {'id': 'A', 'type_id': 0}}, "
             "{'SpecialToken': {'id': 'c', 'type_id': 0}}], 'special_tokens': {'c': {'id': 'c', 'ids': [2]}}}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "post_processor.single[1]: a special token after the text");
    s.post = NULL;
    s.config = "{'add_eos_token': true, 'eos_token': 'c'}";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "add_eos_token true is not supported");
    s.config = "{'bos_token': '<nope>'}";
    expect_refused(&s, BRT_ERR_FORMAT, "bos_token \"<nope>\" is not a token");
    s.config = NULL;
    s.model_extra = ", 'dropout': 0.1";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "model.dropout must be null");
    s.model_extra = ", 'continuing_subword_prefix': '##'";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "model.continuing_subword_prefix");
    s.model_extra = ", 'end_of_word_suffix': '</w>'";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "model.end_of_word_suffix");
    s.model_extra = ", 'type': 'WordPiece'";
    expect_refused(&s, BRT_ERR_UNSUPPORTED, "model.type \"WordPiece\" is not supported");
    s.model_extra = ", 'unk_token': '<unk>'";
    expect_refused(&s, BRT_ERR_FORMAT, "model.unk_token \"<unk>\" is not in model.vocab");
    s.model_extra = NULL;
    s.merges = "['a b c']";
    expect_refused(&s, BRT_ERR_FORMAT, "model.merges[0]");
    s.merges = "['a q']";
    expect_refused(&s, BRT_ERR_FORMAT, "model.merges[0]: \"q\" is not in model.vocab");
    s.merges = "['c a']";
    expect_refused(&s, BRT_ERR_FORMAT, "the merged token \"ca\" is not in model.vocab");
    s.merges = NULL;
    s.added = "[{'id': 3, 'content': 'abc', 'special': true}]";
    expect_refused(&s, BRT_ERR_FORMAT, "added_tokens[0]: \"abc\" has id 3, which model.vocab gives to \"ab\"");
    s.added = "[{'id': 7, 'content': ''}]";
    expect_refused(&s, BRT_ERR_FORMAT, "added_tokens[0].content");
    s.added = NULL;
    s.vocab = "{'a': 0, 'b': 0}";
    s.merges = "[]";
    expect_refused(&s, BRT_ERR_FORMAT, "both have id 0");
}

static void bad_files_are_errors_naming_the_file(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", g_dir);
    write_file("tokenizer.json", "{'model': {'type': 'BPE', 'vocab': {'a': 0}, 'merges': [}}");
    brt_tokenizer *tok = NULL;
    brt_err err = {0};
    assert_int_equal(brt_tokenizer_load(path, &tok, &err), BRT_ERR_FORMAT);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "line 1"));
    write_file("tokenizer.json", "[]");
    assert_int_equal(brt_tokenizer_load(path, &tok, &err), BRT_ERR_FORMAT);
    write_file("tokenizer.json", NULL);
    assert_int_equal(brt_tokenizer_load(path, &tok, &err), BRT_ERR_IO);
    assert_non_null(strstr(err.msg, "cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bpe_merges_by_rank),
        cmocka_unit_test(bpe_ignore_merges_keeps_whole_words),
        cmocka_unit_test(bpe_unknown_tokens_fuse_or_not),
        cmocka_unit_test(sentencepiece_style_file),
        cmocka_unit_test(byte_level_encode_decode_and_stream_bytes),
        cmocka_unit_test(added_token_flags),
        cmocka_unit_test(normalizers),
        cmocka_unit_test(pre_tokenizers),
        cmocka_unit_test(bos_from_config_or_template),
        cmocka_unit_test(token_limit_and_invalid_utf8),
        cmocka_unit_test(folder_prefers_tokenizer_json),
        cmocka_unit_test(unsupported_fields_are_refused_by_name),
        cmocka_unit_test(bad_files_are_errors_naming_the_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
