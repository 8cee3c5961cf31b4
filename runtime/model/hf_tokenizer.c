/* Hugging Face `tokenizers` files (tokenizer.json + tokenizer_config.json): byte-level BPE
 * (GPT-2, Llama-3, Qwen2, SmolLM) and the SentencePiece-style BPE that Llama/Mistral files
 * describe. Written from the file format's documentation and the `tokenizers` library's observable
 * behaviour (tests/tokenizer/hf_reference.sh compares both on real vocabularies); every part of a
 * file this code does not implement is refused by name at load time, never approximated.
 *
 * Encoding follows `tokenizers`' pipeline for encode(text, add_special_tokens=False):
 *   1. added tokens with normalized=false are split out of the raw text (leftmost-longest, with
 *      their lstrip/rstrip/single_word rules);
 *   2. each remaining segment is normalized on its own, then added tokens with normalized=true are
 *      split out of the normalized text;
 *   3. the pre-tokenizer splits each remaining piece (Split/Digits/ByteLevel, regexes through PCRE2);
 *   4. BPE runs on each pre-token ("word") with a merge-rank hash map and a heap.
 * Steps 3 and 4 stream: each word is merged and emitted as soon as the pre-tokenizer yields it, so
 * memory is the normalized text plus one word, and the token limit stops a huge text early. */
#define _GNU_SOURCE /* memmem */
#include "model/tokenizer_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <utf8proc.h>

#include "base/buf.h"
#include "base/utf8.h"
#include "base/hash.h"
#include "base/heap.h"
#include "base/piece_index.h"
#include "model/tokenizer.h"

/* Texts above this are refused: offsets are 32-bit in places (as in the sentencepiece backend). */
#define MAX_TEXT_BYTES ((size_t)1 << 29)
/* Ids above this are refused at load: every per-id array is sized by the largest id. */
#define MAX_ID (1 << 24)
#define SPM_SPACE "\xE2\x96\x81" /* U+2581 */

/* ---- small utilities -------------------------------------------------------------------- */

/* The code point of the (well-formed) character at s; *n gets its length. */
static uint32_t utf8_cp(const unsigned char *s, size_t avail, size_t *n)
{
    size_t l = brt_utf8_seq_len(s, avail);
    if (l == 0) {
        *n = 1;
        return 0xFFFD;
    }
    *n = l;
    if (l == 1)
        return s[0];
    uint32_t cp = s[0] & (0x7F >> l);
    for (size_t i = 1; i < l; i++)
        cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Byte offset of the first invalid UTF-8 sequence, or len if the text is well-formed. */
static size_t utf8_check(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = brt_utf8_seq_len(s + i, len - i);
        if (l == 0)
            return i;
        i += l;
    }
    return len;
}


/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s test). */
static int is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Rust's char::is_numeric: general categories Nd, Nl, No (the Digits pre-tokenizer's test). */
static int is_numeric(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* GPT-2's byte <-> unicode map (the ByteLevel pre-tokenizer and decoder): printable Latin-1
 * bytes stand for themselves, the other 68 bytes for U+0100.. in byte order. */
static void byte_level_map(uint32_t cp[256])
{
    int next = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + next++);
    }
}

/* ---- data structures --------------------------------------------------------------------- */


/* A regex (Oniguruma syntax in the file, compiled by PCRE2) or a literal string. */
typedef struct hf_pattern {
    pcre2_code *re; /* NULL for a literal */
    char *str;
    size_t str_len;
} hf_pattern;

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWER, NORM_PREPEND, NORM_REPLACE };
typedef struct norm_op {
    int kind;
    hf_pattern pat; /* NORM_REPLACE */
    char *str;      /* NORM_PREPEND's prefix, NORM_REPLACE's content */
    size_t str_len;
} norm_op;

enum { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PRE_SPLIT, PRE_DIGITS, PRE_PREFIX_SPACE };
typedef struct pre_stage {
    int kind;
    hf_pattern pat; /* PRE_SPLIT */
    int behavior;   /* SPLIT_* (PRE_SPLIT, PRE_DIGITS) */
    int invert;
} pre_stage;

enum { DEC_BYTE_LEVEL, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP, DEC_REPLACE };
typedef struct dec_op {
    int kind;
    hf_pattern pat; /* DEC_REPLACE */
    char *str;      /* DEC_REPLACE's content, DEC_STRIP's character */
    size_t str_len;
    size_t start, stop; /* DEC_STRIP */
} dec_op;

typedef struct added_tok {
    int32_t id;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} added_tok;

/* Byte trie of added-token contents: leftmost-longest matching as `tokenizers`' Aho-Corasick. */
typedef struct trie_node {
    int32_t child, sibling; /* -1 = none */
    int32_t term;           /* index into atok, or -1 */
    uint8_t byte;
} trie_node;

typedef struct trie {
    trie_node *nodes;
    size_t n, cap;
    uint8_t first[256]; /* bytes that start some token */
    int any;
} trie;

struct brt_hf_tokenizer {
    char *path;
    int32_t n;           /* ids 0 .. n-1 (ids no token holds read as UNUSED) */
    char *pool;          /* piece strings, NUL-terminated, back to back */
    uint32_t *off, *len; /* [n] */
    uint8_t *type;       /* [n] BRT_PIECE_* */
    /* The string each id decodes from: its piece, except that an added token with normalized=true
     * decodes from its normalized content, as `tokenizers` 0.2x does (e.g. "\u2581\u2581" under
     * Llama's Prepend+Replace normalizer reads as "\u2581\u2581\u2581"). */
    const char **dstr; /* [n] into pool or nform */
    uint32_t *dlen;
    char *nform;
    char *bpool; /* brt_hf_token_bytes of every id */
    uint32_t *boff, *blen;
    size_t max_token_bytes;
    brt_piece_index vocab; /* the BPE model's vocabulary */
    brt_piece_index added; /* added-token contents */

    /* BPE: merges as (left id, right id) -> (rank, merged id) */
    uint64_t *mkey; /* [mmask + 1], UINT64_MAX = empty */
    uint32_t *mrank;
    int32_t *mnew;
    size_t mmask;
    int32_t unk_id;
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t fb_id[256];    /* "<0xAB>" pieces, -1 if absent */
    int32_t ascii_id[128]; /* vocabulary id of each ASCII character as a word's symbol */
    int byte_level;        /* a ByteLevel pre-tokenizer maps each byte to one character */
    uint32_t bl_cp[256];
    char bl_utf8[256][2]; /* the mapped characters (1 or 2 UTF-8 bytes) */
    uint8_t bl_len[256];
    int32_t bl_id[256];       /* vocabulary id of each mapped character, -1 if absent */
    int16_t bl_rev[324];      /* mapped code point -> byte, -1 */
    size_t max_cover;         /* most input bytes one token stands for (0: unbounded, fused unk) */
    size_t max_syms_per_byte; /* initial BPE symbols per input byte: 2 under ByteLevel with
                               * a byte whose character is only in byte-fallback pieces */
    int split_spm;            /* no pre-tokenizer: words split before each U+2581 run (see load) */

    norm_op *norm;
    int n_norm;
    pre_stage *pre;
    int n_pre;
    dec_op *dec;
    int n_dec, has_decoder;

    added_tok *atok;
    int n_atok;
    trie raw_trie, norm_trie;
    pcre2_code *word_re; /* single_word: the Rust regex crate's \w, at the start of a subject */

    int32_t bos_id, eos_id, pad_id;
    int adds_bos;
};

/* ---- string tables ------------------------------------------------------------------------ */

static brt_pieces pieces_of(const brt_hf_tokenizer *t) { return (brt_pieces){t->pool, t->off, t->len}; }

static int32_t strtab_find(const brt_hf_tokenizer *t, const brt_piece_index *tab, const char *s, size_t n)
{
    return brt_piece_index_find(tab, pieces_of(t), s, n);
}

/* ---- merges ------------------------------------------------------------------------------- */

static inline uint64_t merge_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

/* Slot of the pair, or -1. */
static inline int64_t merge_find(const brt_hf_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t k = merge_key(a, b);
    size_t i = (size_t)mix64(k) & t->mmask;
    for (;;) {
        uint64_t cur = t->mkey[i];
        if (cur == k)
            return (int64_t)i;
        if (cur == UINT64_MAX)
            return -1;
        i = (i + 1) & t->mmask;
    }
}

/* A later merge of the same pair replaces the earlier one, as `tokenizers`' map of merges does. */
static void merge_put(brt_hf_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t k = merge_key(a, b);
    size_t i = (size_t)mix64(k) & t->mmask;
    while (t->mkey[i] != UINT64_MAX && t->mkey[i] != k)
        i = (i + 1) & t->mmask;
    t->mkey[i] = k;
    t->mrank[i] = rank;
    t->mnew[i] = id;
}

/* ---- tries -------------------------------------------------------------------------------- */

static int trie_add(trie *tr, const char *s, size_t n, int32_t term)
{
    if (tr->n == 0) {
        tr->cap = 64;
        tr->nodes = malloc(tr->cap * sizeof *tr->nodes);
        if (!tr->nodes)
            return -1;
        tr->nodes[0] = (trie_node){-1, -1, -1, 0};
        tr->n = 1;
    }
    int32_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->nodes[at].child;
        while (c >= 0 && tr->nodes[c].byte != b)
            c = tr->nodes[c].sibling;
        if (c < 0) {
            if (tr->n == tr->cap) {
                trie_node *nn = realloc(tr->nodes, 2 * tr->cap * sizeof *nn);
                if (!nn)
                    return -1;
                tr->nodes = nn;
                tr->cap *= 2;
            }
            c = (int32_t)tr->n++;
            tr->nodes[c] = (trie_node){-1, tr->nodes[at].child, -1, b};
            tr->nodes[at].child = c;
        }
        at = c;
    }
    if (tr->nodes[at].term < 0) /* the same content twice: the first one matches */
        tr->nodes[at].term = term;
    tr->first[(uint8_t)s[0]] = 1;
    tr->any = 1;
    return 0;
}

/* Longest token starting at s[0]: its atok index (and *mlen), or -1. */
static int32_t trie_longest(const trie *tr, const char *s, size_t n, size_t *mlen)
{
    int32_t at = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->nodes[at].child;
        while (c >= 0 && tr->nodes[c].byte != b)
            c = tr->nodes[c].sibling;
        if (c < 0)
            break;
        at = c;
        if (tr->nodes[at].term >= 0) {
            best = tr->nodes[at].term;
            *mlen = i + 1;
        }
    }
    return best;
}

/* ---- regexes ------------------------------------------------------------------------------ */

/* The character classes of Oniguruma (which `tokenizers` compiles the file's regexes with) where
 * PCRE2's differ: \s is White_Space there (PCRE2's lacks U+0085), \w is L|M|N|Pc (PCRE2's
 * lacks marks), \h is a hex digit (PCRE2's is horizontal space). */
#define ONIG_WORD "\\p{L}\\p{M}\\p{N}\\p{Pc}"

/* Rewrites those classes into PCRE2 syntax; constructs that cannot be rewritten inside a class
 * (or that mean something else in PCRE2) set *why and return NULL. */
static char *onig_to_pcre2(const char *src, size_t n, const char **why)
{
    brt_buf o = {0};
    int in_class = 0, fail = 0;
    *why = NULL;
    for (size_t i = 0; i < n && !fail && !*why; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            char d = src[++i];
            const char *rep = NULL;
            switch (d) {
            case 's':
                rep = "\\p{White_Space}";
                break;
            case 'S':
                rep = "\\P{White_Space}";
                break;
            case 'w':
                rep = in_class ? ONIG_WORD : "[" ONIG_WORD "]";
                break;
            case 'W':
                rep = in_class ? NULL : "[^" ONIG_WORD "]";
                if (in_class)
                    *why = "\\W inside a character class is not supported";
                break;
            case 'h':
                rep = in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
                break;
            case 'H':
                rep = in_class ? NULL : "[^0-9a-fA-F]";
                if (in_class)
                    *why = "\\H inside a character class is not supported";
                break;
            case 'b':
                if (!in_class)
                    rep = "(?:(?<=[" ONIG_WORD "])(?![" ONIG_WORD "])|(?<![" ONIG_WORD "])(?=[" ONIG_WORD "]))";
                break;
            case 'B':
                if (!in_class)
                    rep = "(?:(?<=[" ONIG_WORD "])(?=[" ONIG_WORD "])|(?<![" ONIG_WORD "])(?![" ONIG_WORD "]))";
                break;
            default:
                break;
            }
            if (*why)
                break;
            if (rep)
                fail = brt_buf_append(&o, rep, strlen(rep));
            else
                fail = brt_buf_append(&o, src + i - 1, 2);
            continue;
        }
        if (in_class) {
            if (c == '[' && i + 1 < n && src[i + 1] == ':') { /* POSIX class [:alpha:] */
                const char *end = NULL;
                for (size_t k = i + 2; k + 1 < n; k++)
                    if (src[k] == ':' && src[k + 1] == ']') {
                        end = src + k + 2;
                        break;
                    }
                if (!end) {
                    *why = "an unterminated [: in a character class";
                    break;
                }
                fail = brt_buf_append(&o, src + i, (size_t)(end - (src + i)));
                i = (size_t)(end - src) - 1;
                continue;
            }
            if (c == '[') {
                *why = "nested character classes are not supported";
                break;
            }
            if (c == '&' && i + 1 < n && src[i + 1] == '&') {
                *why = "character class intersection (&&) is not supported";
                break;
            }
            if (c == ']')
                in_class = 0;
            fail = brt_buf_append(&o, &c, 1);
            continue;
        }
        if (c == '[') {
            /* a ']' right after '[' or '[^' is a literal in both syntaxes */
            size_t k = i + 1;
            if (k < n && src[k] == '^')
                k++;
            if (k < n && src[k] == ']')
                k++;
            fail = brt_buf_append(&o, src + i, k - i);
            i = k - 1;
            in_class = 1;
            continue;
        }
        if (c == '(' && i + 1 < n && src[i + 1] == '?') {
            /* Oniguruma's (?m) is PCRE2's (?s) (dot matches newline); only i and x mean the same */
            for (size_t k = i + 2; k < n && strchr("imxsu-", src[k]) && src[k]; k++)
                if (src[k] == 'm' || src[k] == 's' || src[k] == 'u') {
                    *why = "inline options other than i and x are not supported";
                    break;
                }
        }
        fail = brt_buf_append(&o, &c, 1);
    }
    if (!fail && !*why)
        fail = brt_buf_append(&o, "", 0);
    if (fail || *why) {
        if (fail)
            *why = "out of memory";
        brt_buf_free(&o);
        return NULL;
    }
    return o.data;
}

/* Compile a file's regex: Oniguruma's meaning (Ruby syntax: ^ and $ match at line breaks, . does
 * not match \n), Unicode properties, JIT when the platform has it. */
static brt_status compile_regex(const char *file, const char *field, const char *src, size_t n, pcre2_code **out,
                                brt_err *err)
{
    const char *why = NULL;
    char *pat = onig_to_pcre2(src, n, &why);
    if (!pat)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s: regex \"%.*s\": %s", file, field, (int)(n < 200 ? n : 200),
                        src, why);
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) {
        free(pat);
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int ec = 0;
    PCRE2_SIZE eoff = 0;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &ec, &eoff, cc);
    pcre2_compile_context_free(cc);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s: regex \"%.*s\" is not supported by PCRE2: %s", file, field,
                        (int)(n < 200 ? n : 200), src, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter gives the same matches */
    *out = re;
    return BRT_OK;
}

static void pattern_free(hf_pattern *p)
{
    if (p->re)
        pcre2_code_free(p->re);
    free(p->str);
    memset(p, 0, sizeof *p);
}

/* ---- JSON helpers ------------------------------------------------------------------------- */

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* A string member: 1 and its bytes when present and a string, 0 when absent or null, -1 when it
 * has another type. */
static int get_str(const json_t *o, const char *key, const char **s, size_t *n)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 1;
}

/* A boolean member (absent or null: def); -1 when it has another type. */
static int get_bool(const json_t *o, const char *key, int def)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_boolean(v))
        return -1;
    return json_is_true(v);
}

static const char *type_of(const json_t *o)
{
    const json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* {"Regex": "..."} or {"String": "..."} */
static brt_status parse_pattern(const char *file, const char *field, const json_t *o, hf_pattern *p, brt_err *err)
{
    const char *s;
    size_t n;
    if (!json_is_object(o))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: %s must be {\"Regex\": ...} or {\"String\": ...}", file, field);
    if (get_str(o, "Regex", &s, &n) == 1) {
        char f[256];
        snprintf(f, sizeof f, "%s.Regex", field);
        return compile_regex(file, f, s, n, &p->re, err);
    }
    if (get_str(o, "String", &s, &n) == 1) {
        p->str = dup_bytes(s, n);
        p->str_len = n;
        return p->str ? BRT_OK : brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
    }
    return brt_errf(err, BRT_ERR_FORMAT, "%s: %s must be {\"Regex\": ...} or {\"String\": ...}", file, field);
}

/* ---- loading: normalizer, pre-tokenizer, decoder ------------------------------------------- */

/* The "type" of a normalizer, pre-tokenizer, decoder or post-processor object; *type NULL (and
 * BRT_OK) for null, an error for anything else without one or for Sequences nested too deeply. */
static brt_status component_type(const brt_hf_tokenizer *t, const json_t *o, const char *field, int depth,
                                 const char **type, brt_err *err)
{
    *type = NULL;
    if (json_is_null(o))
        return BRT_OK;
    *type = json_is_object(o) ? type_of(o) : NULL;
    if (!*type)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: %s must be an object with a \"type\"", t->path, field);
    if (depth > 8)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s: Sequences nested too deeply", t->path, field);
    return BRT_OK;
}

static brt_status push_norm(brt_hf_tokenizer *t, norm_op op, brt_err *err)
{
    norm_op *p = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *p);
    if (!p)
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", t->path);
    t->norm = p;
    t->norm[t->n_norm++] = op;
    return BRT_OK;
}

static brt_status parse_normalizer(brt_hf_tokenizer *t, const json_t *o, const char *field, int depth, brt_err *err)
{
    const char *file = t->path, *type;
    BRT_TRY(component_type(t, o, field, depth, &type, err));
    if (!type)
        return BRT_OK;
    norm_op op = {0};
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(o, "normalizers");
        if (!json_is_array(list))
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.normalizers must be an array", file, field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char f[256];
            snprintf(f, sizeof f, "%s.normalizers[%zu]", field, i);
            BRT_TRY(parse_normalizer(t, json_array_get(list, i), f, depth + 1, err));
        }
        return BRT_OK;
    }
    if (!strcmp(type, "NFC"))
        op.kind = NORM_NFC;
    else if (!strcmp(type, "NFD"))
        op.kind = NORM_NFD;
    else if (!strcmp(type, "NFKC"))
        op.kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD"))
        op.kind = NORM_NFKD;
    else if (!strcmp(type, "Lowercase"))
        op.kind = NORM_LOWER;
    else if (!strcmp(type, "Prepend")) {
        const char *s;
        size_t n;
        if (get_str(o, "prepend", &s, &n) != 1)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.prepend must be a string", file, field);
        op.kind = NORM_PREPEND;
        op.str = dup_bytes(s, n);
        op.str_len = n;
        if (!op.str)
            return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
    } else if (!strcmp(type, "Replace")) {
        const char *s;
        size_t n;
        char f[256];
        op.kind = NORM_REPLACE;
        if (get_str(o, "content", &s, &n) != 1)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.content must be a string", file, field);
        snprintf(f, sizeof f, "%s.pattern", field);
        brt_status st = parse_pattern(file, f, json_object_get(o, "pattern"), &op.pat, err);
        if (st == BRT_OK && !op.pat.re && op.pat.str_len == 0)
            st = brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s.pattern: an empty string is not supported", file, field);
        if (st == BRT_OK && !(op.str = dup_bytes(s, n)))
            st = brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
        op.str_len = n;
        if (st != BRT_OK) {
            pattern_free(&op.pat);
            free(op.str);
            return st;
        }
    } else {
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "%s: %s.type \"%s\" is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, "
                        "Replace, Sequence)",
                        file, field, type);
    }
    brt_status st = push_norm(t, op, err);
    if (st != BRT_OK) {
        pattern_free(&op.pat);
        free(op.str);
    }
    return st;
}

static brt_status push_pre(brt_hf_tokenizer *t, pre_stage ps, brt_err *err)
{
    pre_stage *p = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *p);
    if (!p) {
        pattern_free(&ps.pat);
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", t->path);
    }
    t->pre = p;
    t->pre[t->n_pre++] = ps;
    return BRT_OK;
}

/* GPT-2's pre-tokenizer regex, which ByteLevel with use_regex runs itself. */
static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static brt_status parse_pre_tokenizer(brt_hf_tokenizer *t, const json_t *o, const char *field, int depth, brt_err *err)
{
    const char *file = t->path, *type;
    BRT_TRY(component_type(t, o, field, depth, &type, err));
    if (!type)
        return BRT_OK;
    /* ByteLevel turns the text into its byte characters: a stage after it would see those */
    if (t->byte_level)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s: a pre-tokenizer after ByteLevel is not supported", file,
                        field);
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(o, "pretokenizers");
        if (!json_is_array(list))
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.pretokenizers must be an array", file, field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char f[256];
            snprintf(f, sizeof f, "%s.pretokenizers[%zu]", field, i);
            BRT_TRY(parse_pre_tokenizer(t, json_array_get(list, i), f, depth + 1, err));
        }
        return BRT_OK;
    }
    pre_stage ps = {0};
    if (!strcmp(type, "Split")) {
        char f[256];
        const char *b;
        size_t bn;
        int inv = get_bool(o, "invert", 0);
        if (inv < 0)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.invert must be a boolean", file, field);
        if (get_str(o, "behavior", &b, &bn) != 1)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.behavior must be a string", file, field);
        static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
                                            "Contiguous"};
        ps.behavior = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(b, names[i]))
                ps.behavior = i;
        if (ps.behavior < 0)
            return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s.behavior \"%s\" is not supported", file, field, b);
        ps.kind = PRE_SPLIT;
        ps.invert = inv;
        snprintf(f, sizeof f, "%s.pattern", field);
        BRT_TRY(parse_pattern(file, f, json_object_get(o, "pattern"), &ps.pat, err));
        return push_pre(t, ps, err);
    }
    if (!strcmp(type, "Digits")) {
        int ind = get_bool(o, "individual_digits", 0);
        if (ind < 0)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.individual_digits must be a boolean", file, field);
        ps.kind = PRE_DIGITS;
        ps.behavior = ind ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
        return push_pre(t, ps, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        /* `tokenizers`' defaults: add_prefix_space and use_regex true; trim_offsets only moves
         * offsets */
        int aps = get_bool(o, "add_prefix_space", 1), rx = get_bool(o, "use_regex", 1);
        if (aps < 0 || rx < 0)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.add_prefix_space and .use_regex must be booleans", file,
                            field);
        if (aps) {
            ps.kind = PRE_PREFIX_SPACE;
            BRT_TRY(push_pre(t, ps, err));
        }
        if (rx) {
            pre_stage sp = {.kind = PRE_SPLIT, .behavior = SPLIT_ISOLATED};
            char f[256];
            snprintf(f, sizeof f, "%s (ByteLevel's GPT-2 regex)", field);
            BRT_TRY(compile_regex(file, f, GPT2_REGEX, strlen(GPT2_REGEX), &sp.pat.re, err));
            BRT_TRY(push_pre(t, sp, err));
        }
        t->byte_level = 1;
        return BRT_OK;
    }
    return brt_errf(err, BRT_ERR_UNSUPPORTED,
                    "%s: %s.type \"%s\" is not supported (supported: ByteLevel, Split, Digits, Sequence)", file, field,
                    type);
}

static brt_status push_dec(brt_hf_tokenizer *t, dec_op d, brt_err *err)
{
    dec_op *p = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *p);
    if (!p) {
        pattern_free(&d.pat);
        free(d.str);
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", t->path);
    }
    t->dec = p;
    t->dec[t->n_dec++] = d;
    return BRT_OK;
}

static brt_status parse_decoder(brt_hf_tokenizer *t, const json_t *o, const char *field, int depth, brt_err *err)
{
    const char *file = t->path, *type;
    BRT_TRY(component_type(t, o, field, depth, &type, err));
    if (!type)
        return BRT_OK;
    t->has_decoder = 1;
    dec_op d = {0};
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(o, "decoders");
        if (!json_is_array(list))
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.decoders must be an array", file, field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char f[256];
            snprintf(f, sizeof f, "%s.decoders[%zu]", field, i);
            BRT_TRY(parse_decoder(t, json_array_get(list, i), f, depth + 1, err));
        }
        return BRT_OK;
    }
    if (!strcmp(type, "ByteLevel")) { /* its options only move offsets */
        d.kind = DEC_BYTE_LEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        d.kind = DEC_BYTE_FALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d.kind = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *s;
        size_t n, cl = 0;
        const json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
        if (get_str(o, "content", &s, &n) != 1 || n == 0 || (cl = brt_utf8_seq_len((const unsigned char *)s, n)) != n)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.content must be one character", file, field);
        if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 || json_integer_value(b) < 0)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.start and .stop must be non-negative integers", file, field);
        d.kind = DEC_STRIP;
        d.str = dup_bytes(s, n);
        d.str_len = n;
        d.start = (size_t)json_integer_value(a);
        d.stop = (size_t)json_integer_value(b);
        if (!d.str)
            return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
    } else if (!strcmp(type, "Replace")) {
        const char *s;
        size_t n;
        char f[256];
        if (get_str(o, "content", &s, &n) != 1)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.content must be a string", file, field);
        snprintf(f, sizeof f, "%s.pattern", field);
        d.kind = DEC_REPLACE;
        BRT_TRY(parse_pattern(file, f, json_object_get(o, "pattern"), &d.pat, err));
        if (!d.pat.re && d.pat.str_len == 0) {
            pattern_free(&d.pat);
            return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s.pattern: an empty string is not supported", file, field);
        }
        d.str = dup_bytes(s, n);
        d.str_len = n;
        if (!d.str) {
            pattern_free(&d.pat);
            return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
        }
    } else {
        return brt_errf(
            err, BRT_ERR_UNSUPPORTED,
            "%s: %s.type \"%s\" is not supported (supported: ByteLevel, ByteFallback, Fuse, Strip, Replace, "
            "Sequence)",
            file, field, type);
    }
    return push_dec(t, d, err);
}

/* ---- regex matching ----------------------------------------------------------------------- */

/* Per-call matching state: a bigger JIT stack is made only when a match needs one. */
typedef struct rx_ctx {
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
    int rc; /* the PCRE2 error that stopped a search */
} rx_ctx;

static void rx_free(rx_ctx *x)
{
    if (x->mc)
        pcre2_match_context_free(x->mc);
    if (x->js)
        pcre2_jit_stack_free(x->js);
}

static int rx_match(rx_ctx *x, const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t start)
{
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, x->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !x->js) {
            x->mc = pcre2_match_context_create(NULL);
            x->js = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
            if (!x->mc || !x->js)
                return rc;
            pcre2_jit_stack_assign(x->mc, NULL, x->js);
            continue;
        }
        return rc;
    }
}

typedef struct finder {
    size_t last_end, last_match_end; /* SIZE_MAX: no match yet */
} finder;

/* The next match of p in s[0, n), iterating as `tokenizers` does: Oniguruma's find_iter for a
 * regex (an empty match right where the previous match ended is skipped by one character), a
 * plain left-to-right non-overlapping search for a string. 1: [*a, *b); 0: no more; -1: a PCRE2
 * error (in x->rc). */
static int find_next(rx_ctx *x, const hf_pattern *p, pcre2_match_data *md, const char *s, size_t n, finder *f,
                     size_t *a, size_t *b)
{
    if (!p->re) {
        if (p->str_len == 0 || f->last_end >= n)
            return 0;
        const char *hit = memmem(s + f->last_end, n - f->last_end, p->str, p->str_len);
        if (!hit)
            return 0;
        *a = (size_t)(hit - s);
        *b = *a + p->str_len;
        f->last_end = *b;
        return 1;
    }
    for (;;) {
        if (f->last_end > n)
            return 0;
        int rc = rx_match(x, p->re, md, s, n, f->last_end);
        if (rc == PCRE2_ERROR_NOMATCH)
            return 0;
        if (rc < 0) {
            x->rc = rc;
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me < ms) /* \K can end a match before its start: treat as empty at the end */
            ms = me;
        if (ms == me && f->last_match_end == me) {
            size_t step = 1;
            if (f->last_end < n)
                step = brt_utf8_seq_len((const unsigned char *)s + f->last_end, n - f->last_end);
            f->last_end += step ? step : 1;
            continue;
        }
        f->last_end = me;
        f->last_match_end = me;
        *a = ms;
        *b = me;
        return 1;
    }
}

static brt_status rx_error(brt_err *err, const char *what, int rc)
{
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return brt_errf(err, rc == PCRE2_ERROR_NOMEMORY ? BRT_ERR_NOMEM : BRT_ERR_INTERNAL, "tokenizer: %s: PCRE2: %s",
                    what, (const char *)msg);
}

/* ---- normalization ------------------------------------------------------------------------ */

static int is_ascii(const char *s, size_t n)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= (unsigned char)s[i];
    return acc < 0x80;
}

/* Unicode normalization form of s appended to o. utf8proc's work buffer is 4 bytes per character,
 * so long texts go in chunks cut before an ASCII byte: an ASCII character has combining class 0
 * and never composes with what precedes it, so no composition or reordering crosses the cut. */
static int unicode_normalize(int kind, const char *s, size_t n, brt_buf *o)
{
    int opts = UTF8PROC_STABLE;
    if (kind == NORM_NFC || kind == NORM_NFKC)
        opts |= UTF8PROC_COMPOSE;
    else
        opts |= UTF8PROC_DECOMPOSE;
    if (kind == NORM_NFKC || kind == NORM_NFKD)
        opts |= UTF8PROC_COMPAT;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > 65536 ? i + 65536 : n;
        while (end < n && (unsigned char)s[end] >= 0x80)
            end++;
        if (is_ascii(s + i, end - i)) {
            if (brt_buf_append(o, s + i, end - i))
                return -1;
        } else {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(end - i), &dst,
                                              (utf8proc_option_t)opts);
            if (r < 0) {
                free(dst);
                return -1;
            }
            int bad = brt_buf_append(o, dst, (size_t)r);
            free(dst);
            if (bad)
                return -1;
        }
        i = end;
    }
    return 0;
}

/* Rust's char::to_lowercase per character (no final-sigma rule, as `tokenizers`' Lowercase):
 * the simple mapping, and U+0130 to "i" + U+0307, the one unconditional multi-character one. */
static int lowercase(const char *s, size_t n, brt_buf *o)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            char l = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
            if (brt_buf_append(o, &l, 1))
                return -1;
            i++;
            continue;
        }
        size_t cl;
        uint32_t cp = utf8_cp((const unsigned char *)s + i, n - i, &cl);
        char u[8];
        size_t k;
        if (cp == 0x130) {
            memcpy(u, "i\xCC\x87", 3);
            k = 3;
        } else {
            k = utf8_put((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), u);
        }
        if (brt_buf_append(o, u, k))
            return -1;
        i += cl;
    }
    return 0;
}

/* Every match of p in s replaced by content (the Replace normalizer and decoder). Returns -1 out
 * of memory, -2 on a PCRE2 error. */
static int replace_all(rx_ctx *x, pcre2_match_data *md, const hf_pattern *p, const char *content, size_t content_len,
                       const char *s, size_t n, brt_buf *o)
{
    finder f = {0, SIZE_MAX};
    size_t prev = 0, a, b;
    int r;
    while ((r = find_next(x, p, md, s, n, &f, &a, &b)) == 1) {
        if (brt_buf_append(o, s + prev, a - prev) || brt_buf_append(o, content, content_len))
            return -1;
        prev = b;
    }
    if (r < 0)
        return -2;
    return brt_buf_append(o, s + prev, n - prev);
}

/* Runs the normalizer over s[0, n). *out points into bufs[0] or bufs[1] (or at s itself when
 * there is no normalizer). Returns 0, -1 out of memory, -2 on a PCRE2 error. */
static int normalize(const brt_hf_tokenizer *t, rx_ctx *x, pcre2_match_data **mds, const char *s, size_t n,
                     brt_buf bufs[2], const char **out, size_t *out_n)
{
    const char *cur = s;
    size_t cur_n = n;
    int which = 0;
    for (int k = 0; k < t->n_norm; k++) {
        const norm_op *op = &t->norm[k];
        brt_buf *o = &bufs[which];
        o->len = 0;
        int r = 0;
        switch (op->kind) {
        case NORM_NFC:
        case NORM_NFD:
        case NORM_NFKC:
        case NORM_NFKD:
            r = unicode_normalize(op->kind, cur, cur_n, o);
            break;
        case NORM_LOWER:
            r = lowercase(cur, cur_n, o);
            break;
        case NORM_PREPEND: /* only a non-empty text gets the prefix */
            if (cur_n > 0)
                r = brt_buf_append(o, op->str, op->str_len);
            if (!r)
                r = brt_buf_append(o, cur, cur_n);
            break;
        case NORM_REPLACE:
            r = replace_all(x, mds ? mds[k] : NULL, &op->pat, op->str, op->str_len, cur, cur_n, o);
            break;
        }
        if (r == 0)
            r = brt_buf_append(o, "", 0); /* a buffer that stayed empty still gets its storage */
        if (r)
            return r;
        cur = o->data;
        cur_n = o->len;
        which ^= 1;
    }
    *out = cur;
    *out_n = cur_n;
    return 0;
}

/* Match data for each regex of the normalizer (indexed like t->norm; NULL for the others). */
static pcre2_match_data **norm_match_data(const brt_hf_tokenizer *t, int *oom)
{
    *oom = 0;
    if (t->n_norm == 0)
        return NULL;
    pcre2_match_data **mds = calloc((size_t)t->n_norm, sizeof *mds);
    if (!mds) {
        *oom = 1;
        return NULL;
    }
    for (int k = 0; k < t->n_norm; k++)
        if (t->norm[k].pat.re && !(mds[k] = pcre2_match_data_create_from_pattern(t->norm[k].pat.re, NULL)))
            *oom = 1;
    return mds;
}

static void free_match_data(pcre2_match_data **mds, int n)
{
    if (!mds)
        return;
    for (int k = 0; k < n; k++)
        if (mds[k])
            pcre2_match_data_free(mds[k]);
    free(mds);
}

/* ---- loading: vocabulary, merges, added tokens ---------------------------------------------- */

/* A piece string per id while loading (pointers into the parsed JSON). */
typedef struct id_str {
    const char *s;
    size_t n;
    uint8_t vocab, added;
} id_str;

/* "<0xAB>" the way `tokenizers` reads a byte token (Rust's u8::from_str_radix on the two
 * characters: either case, and a '+' sign); -1 if not that form. */
static int byte_token_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (i == 3 && c == '+')
            continue;
        if (d < 0)
            return -1;
        v = v * 16 + d;
        digits++;
    }
    return digits ? v : -1;
}

static brt_status parse_vocab(brt_hf_tokenizer *t, const json_t *vocab, id_str **ids, int32_t *max_id, brt_err *err)
{
    const char *file = t->path;
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.vocab must be a non-empty object", file);
    const char *key;
    json_t *v;
    *max_id = -1;
    json_object_foreach((json_t *)vocab, key, v)
    {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= MAX_ID)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: model.vocab[\"%s\"]: the id must be an integer in [0, %d)", file,
                            key, MAX_ID);
        if (id > *max_id)
            *max_id = (int32_t)id;
    }
    *ids = calloc((size_t)*max_id + 1, sizeof **ids);
    if (!*ids)
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
    json_object_foreach((json_t *)vocab, key, v)
    {
        id_str *e = &(*ids)[json_integer_value(v)];
        if (e->vocab)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: model.vocab: \"%s\" and \"%s\" both have id %lld", file, e->s,
                            key, (long long)json_integer_value(v));
        size_t n = strlen(key);
        if (n == 0)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: model.vocab: an empty token", file);
        *e = (id_str){key, n, 1, 0};
    }
    return BRT_OK;
}

static brt_status parse_added(brt_hf_tokenizer *t, const json_t *list, id_str **ids, int32_t *max_id, int32_t vocab_max,
                              brt_err *err)
{
    const char *file = t->path;
    if (!list || json_is_null(list))
        return BRT_OK;
    if (!json_is_array(list))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: added_tokens must be an array", file);
    size_t n = json_array_size(list);
    t->atok = calloc(n ? n : 1, sizeof *t->atok);
    if (!t->atok)
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(list, i);
        const char *s;
        size_t sl;
        const json_t *jid = json_is_object(a) ? json_object_get(a, "id") : NULL;
        if (!json_is_integer(jid) || json_integer_value(jid) < 0 || json_integer_value(jid) >= MAX_ID)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: added_tokens[%zu].id must be an integer in [0, %d)", file, i,
                            MAX_ID);
        if (get_str(a, "content", &s, &sl) != 1 || sl == 0)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: added_tokens[%zu].content must be a non-empty string", file, i);
        int special = get_bool(a, "special", 0), lstrip = get_bool(a, "lstrip", 0), rstrip = get_bool(a, "rstrip", 0),
            single = get_bool(a, "single_word", 0), normalized = get_bool(a, "normalized", !special);
        if (special < 0 || lstrip < 0 || rstrip < 0 || single < 0 || normalized < 0)
            return brt_errf(
                err, BRT_ERR_FORMAT,
                "%s: added_tokens[%zu]: special, lstrip, rstrip, single_word and normalized must be booleans", file, i);
        int32_t id = (int32_t)json_integer_value(jid);
        t->atok[i] =
            (added_tok){id, (uint8_t)special, (uint8_t)lstrip, (uint8_t)rstrip, (uint8_t)single, (uint8_t)normalized};
        t->n_atok = (int)i + 1;
        if (id > *max_id) {
            id_str *grown = realloc(*ids, ((size_t)id + 1) * sizeof *grown);
            if (!grown)
                return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
            memset(grown + *max_id + 1, 0, ((size_t)id - (size_t)*max_id) * sizeof *grown);
            *ids = grown;
            *max_id = id;
        }
        id_str *e = &(*ids)[id];
        if (e->added)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: added_tokens[%zu]: id %d is already added token \"%s\"", file, i,
                            id, e->s);
        /* `tokenizers` gives an added token that is in the model's vocabulary the vocabulary's id,
         * and any other one an id past the vocabulary; a file that says otherwise would encode
         * differently from what it claims */
        if (e->vocab && (e->n != sl || memcmp(e->s, s, sl) != 0))
            return brt_errf(err, BRT_ERR_FORMAT,
                            "%s: added_tokens[%zu]: \"%s\" has id %d, which model.vocab gives to \"%s\"", file, i, s,
                            id, e->s);
        if (!e->vocab && id <= vocab_max)
            return brt_errf(err, BRT_ERR_FORMAT,
                            "%s: added_tokens[%zu]: \"%s\" (id %d) is not in model.vocab but its id is within it", file,
                            i, s, id);
        e->s = s;
        e->n = sl;
        e->added = 1;
    }
    return BRT_OK;
}

/* The pool of piece strings and the two string tables. */
static brt_status build_pieces(brt_hf_tokenizer *t, const id_str *ids, int32_t n, brt_err *err)
{
    size_t pool = 1;
    for (int32_t i = 0; i < n; i++)
        pool += ids[i].n + 1;
    if (pool > UINT32_MAX)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: the tokens are too large", t->path);
    t->n = n;
    t->pool = malloc(pool);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->type = calloc((size_t)n, 1);
    if (!t->pool || !t->off || !t->len || !t->type || brt_piece_index_init(&t->vocab, (size_t)n) ||
        brt_piece_index_init(&t->added, (size_t)t->n_atok))
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory for %d tokens", t->path, n);
    size_t at = 0;
    t->pool[at++] = '\0'; /* ids no token holds point here */
    for (int32_t i = 0; i < n; i++) {
        if (!ids[i].s) {
            t->off[i] = 0;
            t->len[i] = 0;
            continue;
        }
        memcpy(t->pool + at, ids[i].s, ids[i].n);
        t->pool[at + ids[i].n] = '\0';
        t->off[i] = (uint32_t)at;
        t->len[i] = (uint32_t)ids[i].n;
        at += ids[i].n + 1;
    }
    for (int32_t i = 0; i < n; i++)
        if (ids[i].vocab)
            (void)brt_piece_index_add(&t->vocab, pieces_of(t), i); /* duplicates were refused */
    for (int k = 0; k < t->n_atok; k++) {
        int32_t dup = brt_piece_index_add(&t->added, pieces_of(t), t->atok[k].id);
        if (dup >= 0)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: added_tokens: \"%s\" is there twice (ids %d and %d)", t->path,
                            t->pool + t->off[dup], dup, t->atok[k].id);
    }
    return BRT_OK;
}

/* One merge "a b" or ["a", "b"]: both parts and their concatenation must be tokens. */
static brt_status add_merge(brt_hf_tokenizer *t, const json_t *m, size_t rank, brt_buf *tmp, brt_err *err)
{
    const char *a = NULL, *b = NULL;
    size_t an = 0, bn = 0;
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
            return brt_errf(err, BRT_ERR_FORMAT,
                            "%s: model.merges[%zu] \"%s\" is not two tokens separated by one space", t->path, rank, s);
        a = s, an = (size_t)(sp - s), b = sp + 1, bn = n - an - 1;
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
        a = json_string_value(json_array_get(m, 0));
        an = json_string_length(json_array_get(m, 0));
        b = json_string_value(json_array_get(m, 1));
        bn = json_string_length(json_array_get(m, 1));
    } else {
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", t->path, rank);
    }
    int32_t ia = strtab_find(t, &t->vocab, a, an), ib = strtab_find(t, &t->vocab, b, bn);
    if (ia < 0 || ib < 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.merges[%zu]: \"%.*s\" is not in model.vocab", t->path, rank,
                        (int)(ia < 0 ? an : bn), ia < 0 ? a : b);
    tmp->len = 0;
    if (brt_buf_append(tmp, a, an) || brt_buf_append(tmp, b, bn))
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", t->path);
    int32_t im = strtab_find(t, &t->vocab, tmp->data, tmp->len);
    if (im < 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.merges[%zu]: the merged token \"%s\" is not in model.vocab",
                        t->path, rank, tmp->data);
    merge_put(t, ia, ib, (uint32_t)rank, im);
    return BRT_OK;
}

static brt_status parse_merges(brt_hf_tokenizer *t, const json_t *merges, brt_err *err)
{
    if (!merges || json_is_null(merges))
        merges = NULL;
    else if (!json_is_array(merges))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.merges must be an array", t->path);
    size_t n = merges ? json_array_size(merges) : 0;
    if (n >= UINT32_MAX / 4)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.merges: %zu merges is too many", t->path, n);
    size_t cap = 16;
    while (cap < 2 * n + 1)
        cap <<= 1;
    t->mkey = malloc(cap * sizeof *t->mkey);
    t->mrank = malloc(cap * sizeof *t->mrank);
    t->mnew = malloc(cap * sizeof *t->mnew);
    if (!t->mkey || !t->mrank || !t->mnew)
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory for %zu merges", t->path, n);
    memset(t->mkey, 0xFF, cap * sizeof *t->mkey);
    t->mmask = cap - 1;
    brt_buf tmp = {0};
    for (size_t i = 0; i < n; i++) {
        brt_status st = add_merge(t, json_array_get(merges, i), i, &tmp, err);
        if (st != BRT_OK) {
            brt_buf_free(&tmp);
            return st;
        }
    }
    brt_buf_free(&tmp);
    return BRT_OK;
}

/* The model's options; the vocabulary and merges are read by the caller. */
static brt_status parse_model_options(brt_hf_tokenizer *t, const json_t *m, brt_err *err)
{
    const char *file = t->path;
    const char *type = type_of(m);
    if (!type)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: model.type is missing (only \"BPE\" is supported)", file);
    if (strcmp(type, "BPE") != 0)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported, only BPE", file, type);
    const json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: model.dropout must be null (BPE dropout is random)", file);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s;
        size_t n;
        int r = get_str(m, affixes[i], &s, &n);
        if (r < 0 || (r == 1 && n > 0))
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "%s: model.%s must be null or \"\" (subword affixes are not supported)", file, affixes[i]);
    }
    t->fuse_unk = get_bool(m, "fuse_unk", 0);
    t->byte_fallback = get_bool(m, "byte_fallback", 0);
    t->ignore_merges = get_bool(m, "ignore_merges", 0);
    if (t->fuse_unk < 0 || t->byte_fallback < 0 || t->ignore_merges < 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.fuse_unk, .byte_fallback and .ignore_merges must be booleans",
                        file);
    return BRT_OK;
}

/* ---- loading: post-processor and tokenizer_config.json -------------------------------------- */

static int32_t lookup_piece(const brt_hf_tokenizer *t, const char *s, size_t n)
{
    int32_t id = strtab_find(t, &t->added, s, n);
    return id >= 0 ? id : strtab_find(t, &t->vocab, s, n);
}

/* TemplateProcessing's `single` (ByteLevel and Sequence around it): *tmpl_bos is the token it puts
 * before the text (-1: none). Only [SpecialToken?, Sequence A] is supported: beaconrt's encode
 * adds at most a BOS. */
static brt_status parse_post(brt_hf_tokenizer *t, const json_t *o, const char *field, int depth, int32_t *tmpl_bos,
                             int *has_tmpl, brt_err *err)
{
    const char *file = t->path, *type;
    if (!o)
        return BRT_OK;
    BRT_TRY(component_type(t, o, field, depth, &type, err));
    if (!type)
        return BRT_OK;
    if (!strcmp(type, "ByteLevel")) /* offsets only */
        return BRT_OK;
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(o, "processors");
        if (!json_is_array(list))
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.processors must be an array", file, field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char f[256];
            snprintf(f, sizeof f, "%s.processors[%zu]", field, i);
            BRT_TRY(parse_post(t, json_array_get(list, i), f, depth + 1, tmpl_bos, has_tmpl, err));
        }
        return BRT_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "%s: %s.type \"%s\" is not supported (supported: TemplateProcessing, ByteLevel, Sequence)",
                        file, field, type);
    if (*has_tmpl)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s: a second TemplateProcessing is not supported", file, field);
    *has_tmpl = 1;
    const json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
    if (!json_is_array(single))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.single must be an array", file, field);
    int seen_text = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *item = json_array_get(single, i);
        const json_t *sp = json_object_get(item, "SpecialToken"), *seq = json_object_get(item, "Sequence");
        if (json_is_object(seq)) {
            const char *sid;
            size_t sn;
            if (get_str(seq, "id", &sid, &sn) != 1 || strcmp(sid, "A") != 0 || seen_text)
                return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: %s.single[%zu]: only one Sequence \"A\" is supported",
                                file, field, i);
            seen_text = 1;
            continue;
        }
        if (!json_is_object(sp))
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.single[%zu] must be a SpecialToken or a Sequence", file, field,
                            i);
        if (seen_text)
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "%s: %s.single[%zu]: a special token after the text (e.g. EOS) is not supported", file,
                            field, i);
        if (i > 0)
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "%s: %s.single[%zu]: more than one special token before the text is not supported", file,
                            field, i);
        const char *name;
        size_t nn;
        if (get_str(sp, "id", &name, &nn) != 1)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.single[%zu].SpecialToken.id must be a string", file, field, i);
        const json_t *def = json_is_object(specials) ? json_object_get(specials, name) : NULL;
        const json_t *dids = json_is_object(def) ? json_object_get(def, "ids") : NULL;
        if (!json_is_array(dids) || json_array_size(dids) != 1 || !json_is_integer(json_array_get(dids, 0)))
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "%s: %s.special_tokens[\"%s\"].ids must be one id (multi-token specials are not supported)",
                            file, field, name);
        json_int_t id = json_integer_value(json_array_get(dids, 0));
        if (id < 0 || id >= t->n)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.special_tokens[\"%s\"]: id %lld is not a token", file, field,
                            name, (long long)id);
        *tmpl_bos = (int32_t)id;
    }
    if (!seen_text)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: %s.single has no Sequence \"A\"", file, field);
    return BRT_OK;
}

/* bos_token and the like: "<s>", {"content": "<s>", ...} or null. -2: absent, -1: null. */
static brt_status config_token(const brt_hf_tokenizer *t, const char *cfg, const json_t *c, const char *key,
                               int32_t *id, brt_err *err)
{
    const json_t *v = json_object_get(c, key);
    *id = -2;
    if (!v)
        return BRT_OK;
    *id = -1;
    if (json_is_null(v))
        return BRT_OK;
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: %s must be a string, {\"content\": ...} or null", cfg, key);
    *id = lookup_piece(t, json_string_value(v), json_string_length(v));
    if (*id < 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: %s \"%s\" is not a token of %s", cfg, key, json_string_value(v),
                        t->path);
    return BRT_OK;
}

static brt_status parse_config(brt_hf_tokenizer *t, const char *cfg_path, int32_t tmpl_bos, int has_tmpl, brt_err *err)
{
    int32_t bos = -2, eos = -2, pad = -2;
    int add_bos = -1;
    json_t *c = NULL;
    if (cfg_path) {
        json_error_t je;
        c = json_load_file(cfg_path, JSON_ALLOW_NUL, &je);
        if (!c)
            return brt_errf(err, BRT_ERR_FORMAT, "%s: line %d: %s", cfg_path, je.line, je.text);
        brt_status st = BRT_OK;
        if (!json_is_object(c))
            st = brt_errf(err, BRT_ERR_FORMAT, "%s: not a JSON object", cfg_path);
        if (st == BRT_OK)
            st = config_token(t, cfg_path, c, "bos_token", &bos, err);
        if (st == BRT_OK)
            st = config_token(t, cfg_path, c, "eos_token", &eos, err);
        if (st == BRT_OK)
            st = config_token(t, cfg_path, c, "pad_token", &pad, err);
        if (st == BRT_OK) {
            const json_t *ab = json_object_get(c, "add_bos_token"), *ae = json_object_get(c, "add_eos_token");
            if (ab && !json_is_null(ab) && !json_is_boolean(ab))
                st = brt_errf(err, BRT_ERR_FORMAT, "%s: add_bos_token must be a boolean", cfg_path);
            else if (ab && json_is_boolean(ab))
                add_bos = json_is_true(ab);
            if (st == BRT_OK && ae && !json_is_null(ae) && !json_is_boolean(ae))
                st = brt_errf(err, BRT_ERR_FORMAT, "%s: add_eos_token must be a boolean", cfg_path);
            else if (st == BRT_OK && json_is_true(ae))
                st = brt_errf(err, BRT_ERR_UNSUPPORTED,
                              "%s: add_eos_token true is not supported (a prompt that ends in EOS)", cfg_path);
        }
        json_decref(c);
        BRT_TRY(st);
    }
    /* add_bos_token, when the config says, decides (transformers' Llama tokenizers rebuild the
     * post-processor from it); otherwise the post-processor's template does */
    t->adds_bos = add_bos >= 0 ? add_bos : (has_tmpl && tmpl_bos >= 0);
    t->bos_id = bos >= 0 ? bos : (bos == -2 && tmpl_bos >= 0 ? tmpl_bos : -1);
    t->eos_id = eos >= 0 ? eos : -1;
    t->pad_id = pad >= 0 ? pad : -1;
    if (t->adds_bos && t->bos_id < 0)
        return brt_errf(err, BRT_ERR_FORMAT,
                        "%s: BOS is added (add_bos_token or post_processor) but there is no bos_token",
                        cfg_path ? cfg_path : t->path);
    if (t->adds_bos && add_bos < 0 && tmpl_bos != t->bos_id)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "%s: post_processor adds \"%s\" but bos_token is \"%s\"", t->path,
                        t->pool + t->off[tmpl_bos], t->pool + t->off[t->bos_id]);
    return BRT_OK;
}

/* ---- loading: derived tables ---------------------------------------------------------------- */

/* Whether a token has a character other than U+2581 right before a U+2581. */
static int has_word_start_inside(const char *s, size_t n)
{
    for (size_t k = 1; k + 3 <= n; k++)
        if (memcmp(s + k, SPM_SPACE, 3) == 0 && !(k >= 3 && memcmp(s + k - 3, SPM_SPACE, 3) == 0))
            return 1;
    return 0;
}

/* The bytes a token stands for in a stream: the decoder's per-token steps (Replace, ByteFallback
 * to its byte, ByteLevel back to bytes) without the steps that join tokens (Fuse, Strip's cut of
 * the first piece). Without a decoder, the token's own text. */
static int stream_bytes(const brt_hf_tokenizer *t, rx_ctx *x, pcre2_match_data **dmds, int32_t id, brt_buf bufs[2],
                        const char **out, size_t *out_n)
{
    const char *s = t->dstr[id];
    size_t n = t->dlen[id];
    int which = 0;
    if (t->type[id] == BRT_PIECE_CONTROL || t->type[id] == BRT_PIECE_UNUSED)
        n = 0;
    for (int k = 0; k < t->n_dec && n > 0; k++) {
        const dec_op *d = &t->dec[k];
        brt_buf *o = &bufs[which];
        o->len = 0;
        if (d->kind == DEC_REPLACE) {
            int r = replace_all(x, dmds[k], &d->pat, d->str, d->str_len, s, n, o);
            if (r == 0)
                r = brt_buf_append(o, "", 0);
            if (r)
                return r;
        } else if (d->kind == DEC_BYTE_FALLBACK) {
            int v = byte_token_value(s, n);
            if (v < 0)
                continue;
            char c = (char)v;
            if (brt_buf_append(o, &c, 1))
                return -1;
            *out = o->data, *out_n = 1;
            return 0; /* a raw byte: nothing after it reads it as text */
        } else if (d->kind == DEC_BYTE_LEVEL) {
            int all = 1;
            for (size_t i = 0; i < n && all;) {
                size_t cl;
                uint32_t cp = utf8_cp((const unsigned char *)s + i, n - i, &cl);
                if (cp < 324 && t->bl_rev[cp] >= 0) {
                    char c = (char)t->bl_rev[cp];
                    if (brt_buf_append(o, &c, 1))
                        return -1;
                } else {
                    all = 0;
                }
                i += cl;
            }
            if (!all) { /* a token with a character outside the map stands for its own bytes */
                o->len = 0;
                if (brt_buf_append(o, s, n))
                    return -1;
            }
            *out = o->data, *out_n = o->len;
            return 0;
        } else {
            continue;
        }
        s = o->data;
        n = o->len;
        which ^= 1;
    }
    *out = s;
    *out_n = n;
    return 0;
}

static brt_status derive(brt_hf_tokenizer *t, brt_err *err)
{
    const char *file = t->path;
    /* piece types */
    for (int32_t i = 0; i < t->n; i++)
        t->type[i] = BRT_PIECE_UNUSED;
    for (int32_t i = 0; i < t->n; i++)
        if (strtab_find(t, &t->vocab, t->pool + t->off[i], t->len[i]) == i && t->len[i] > 0) {
            int v = byte_token_value(t->pool + t->off[i], t->len[i]);
            t->type[i] = (t->byte_fallback && v >= 0) ? BRT_PIECE_BYTE : BRT_PIECE_NORMAL;
        }
    if (t->unk_id >= 0)
        t->type[t->unk_id] = BRT_PIECE_UNKNOWN;
    for (int k = 0; k < t->n_atok; k++)
        t->type[t->atok[k].id] = t->atok[k].special ? BRT_PIECE_CONTROL : BRT_PIECE_USER_DEFINED;

    /* symbol lookups that encode makes per character, done once */
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->fb_id[b] = strtab_find(t, &t->vocab, name, 6);
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        t->ascii_id[c] = strtab_find(t, &t->vocab, &ch, 1);
    }
    byte_level_map(t->bl_cp);
    for (int i = 0; i < 324; i++)
        t->bl_rev[i] = -1;
    for (int b = 0; b < 256; b++) {
        t->bl_len[b] = (uint8_t)utf8_put(t->bl_cp[b], t->bl_utf8[b]);
        t->bl_id[b] = strtab_find(t, &t->vocab, t->bl_utf8[b], t->bl_len[b]);
        t->bl_rev[t->bl_cp[b]] = (int16_t)b;
    }

    /* The most input bytes one token stands for bounds a word's tokens from below (encode_max
     * refuses a word that alone is past the limit before merging it); a fused unknown token
     * stands for any number. */
    t->max_cover = 4;
    for (int32_t i = 0; i < t->n; i++) {
        if (strtab_find(t, &t->vocab, t->pool + t->off[i], t->len[i]) != i)
            continue;
        size_t c = t->len[i];
        if (t->byte_level) {
            c = 0;
            for (size_t k = 0; k < t->len[i]; k++)
                c += ((unsigned char)t->pool[t->off[i] + k] & 0xC0) != 0x80;
        }
        if (c > t->max_cover)
            t->max_cover = c;
    }
    if (t->unk_id >= 0 && t->fuse_unk)
        t->max_cover = 0;
    t->max_syms_per_byte = 1;
    for (int b = 0; b < 256 && t->byte_level; b++)
        if (t->bl_id[b] < 0 && t->bl_len[b] > 1)
            t->max_syms_per_byte = 2;

    /* Without a pre-tokenizer (the SentencePiece-style files) a whole segment is one word. BPE
     * gives the same tokens word by word when no merge can join a character other than U+2581 to
     * a U+2581 after it, and U+2581 is itself a token (so unknown characters never fuse across
     * it): then words split before each U+2581 run stream like pre-tokens. */
    int32_t space = strtab_find(t, &t->vocab, SPM_SPACE, 3);
    t->split_spm = t->n_pre == 0 && !t->ignore_merges && space >= 0;
    for (size_t i = 0; t->split_spm && i <= t->mmask; i++)
        if (t->mkey[i] != UINT64_MAX) {
            int32_t m = t->mnew[i];
            if (has_word_start_inside(t->pool + t->off[m], t->len[m]))
                t->split_spm = 0;
        }

    /* added-token tries: normalized=false on the raw text, normalized=true on the normalized text
     * (their content normalized the same way, as `tokenizers` does) */
    rx_ctx x = {0};
    brt_buf bufs[2] = {{0}, {0}}, nform = {0};
    int oom = 0, need_word = 0;
    pcre2_match_data **mds = norm_match_data(t, &oom);
    brt_status st = BRT_OK;
    size_t *nf_off = calloc((size_t)t->n_atok + 1, sizeof *nf_off),
           *nf_len = calloc((size_t)t->n_atok + 1, sizeof *nf_len);
    t->dstr = malloc((size_t)t->n * sizeof *t->dstr);
    t->dlen = malloc((size_t)t->n * sizeof *t->dlen);
    oom |= !nf_off || !nf_len || !t->dstr || !t->dlen;
    for (int k = 0; k < t->n_atok && st == BRT_OK && !oom; k++) {
        const added_tok *a = &t->atok[k];
        const char *s = t->pool + t->off[a->id];
        size_t n = t->len[a->id];
        need_word |= a->single_word;
        if (a->normalized) {
            int r = normalize(t, &x, mds, s, n, bufs, &s, &n);
            if (r == -2)
                st = rx_error(err, "normalizing an added token", x.rc);
            oom |= r == -1;
            if (r)
                continue;
            nf_off[k] = nform.len;
            nf_len[k] = n;
            oom |= brt_buf_append(&nform, s, n) != 0;
            if (n == 0)
                continue; /* a token that normalizes to nothing never matches */
        }
        oom |= trie_add(a->normalized ? &t->norm_trie : &t->raw_trie, s, n, k) != 0;
    }
    free_match_data(mds, t->n_norm);
    if (st == BRT_OK && !oom) {
        oom |= brt_buf_append(&nform, "", 0) != 0;
        t->nform = nform.data;
        for (int32_t i = 0; !oom && i < t->n; i++) {
            t->dstr[i] = t->pool + t->off[i];
            t->dlen[i] = t->len[i];
        }
        for (int k = 0; !oom && k < t->n_atok; k++)
            if (t->atok[k].normalized) {
                t->dstr[t->atok[k].id] = t->nform + nf_off[k];
                t->dlen[t->atok[k].id] = (uint32_t)nf_len[k];
            }
    } else {
        brt_buf_free(&nform);
    }
    free(nf_off);
    free(nf_len);
    if (st == BRT_OK && !oom && need_word) {
        int ec;
        PCRE2_SIZE eo;
        static const char word[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]";
        t->word_re = pcre2_compile((PCRE2_SPTR)word, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!t->word_re)
            st = brt_errf(err, BRT_ERR_INTERNAL, "%s: cannot compile the word-character class", file);
    }

    /* every token's stream bytes */
    pcre2_match_data **dmds = NULL;
    if (st == BRT_OK && !oom && t->n_dec > 0) {
        dmds = calloc((size_t)t->n_dec, sizeof *dmds);
        oom |= !dmds;
        for (int k = 0; dmds && k < t->n_dec; k++)
            if (t->dec[k].pat.re && !(dmds[k] = pcre2_match_data_create_from_pattern(t->dec[k].pat.re, NULL)))
                oom = 1;
    }
    brt_buf pool = {0};
    t->boff = malloc((size_t)t->n * sizeof *t->boff);
    t->blen = malloc((size_t)t->n * sizeof *t->blen);
    oom |= !t->boff || !t->blen;
    for (int32_t i = 0; i < t->n && st == BRT_OK && !oom; i++) {
        const char *s;
        size_t n;
        int r = stream_bytes(t, &x, dmds, i, bufs, &s, &n);
        if (r == -2) {
            st = rx_error(err, "decoding a token", x.rc);
            break;
        }
        if (r || pool.len + n > UINT32_MAX || brt_buf_append(&pool, s, n)) {
            oom = 1;
            break;
        }
        t->boff[i] = (uint32_t)(pool.len - n);
        t->blen[i] = (uint32_t)n;
        if (n > t->max_token_bytes)
            t->max_token_bytes = n;
    }
    if (st == BRT_OK && !oom && !pool.data)
        oom = brt_buf_append(&pool, "", 0) != 0;
    t->bpool = pool.data;
    free_match_data(dmds, t->n_dec);
    brt_buf_free(&bufs[0]);
    brt_buf_free(&bufs[1]);
    rx_free(&x);
    if (st == BRT_OK && oom)
        st = brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", file);
    return st;
}

/* ---- load / free ---------------------------------------------------------------------------- */

static brt_status load(brt_hf_tokenizer *t, const json_t *root, const char *config_path, brt_err *err)
{
    const char *file = t->path;
    if (!json_is_object(root))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: not a JSON object", file);
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model must be an object", file);
    /* truncation and padding are ignored, as transformers does (it sets both per call) */
    BRT_TRY(parse_model_options(t, model, err));
    BRT_TRY(parse_normalizer(t, json_object_get(root, "normalizer") ? json_object_get(root, "normalizer") : json_null(),
                             "normalizer", 0, err));
    const json_t *pre = json_object_get(root, "pre_tokenizer"), *dec = json_object_get(root, "decoder");
    BRT_TRY(parse_pre_tokenizer(t, pre ? pre : json_null(), "pre_tokenizer", 0, err));
    BRT_TRY(parse_decoder(t, dec ? dec : json_null(), "decoder", 0, err));

    id_str *ids = NULL;
    int32_t vocab_max = -1;
    brt_status st = parse_vocab(t, json_object_get(model, "vocab"), &ids, &vocab_max, err);
    int32_t max_id = vocab_max;
    if (st == BRT_OK)
        st = parse_added(t, json_object_get(root, "added_tokens"), &ids, &max_id, vocab_max, err);
    if (st == BRT_OK)
        st = build_pieces(t, ids, max_id + 1, err);
    free(ids);
    BRT_TRY(st);

    t->unk_id = -1;
    const char *unk;
    size_t unk_n;
    int r = get_str(model, "unk_token", &unk, &unk_n);
    if (r < 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.unk_token must be a string or null", file);
    if (r == 1 && (t->unk_id = strtab_find(t, &t->vocab, unk, unk_n)) < 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in model.vocab", file, unk);
    BRT_TRY(parse_merges(t, json_object_get(model, "merges"), err));

    int32_t tmpl_bos = -1;
    int has_tmpl = 0;
    BRT_TRY(parse_post(t, json_object_get(root, "post_processor"), "post_processor", 0, &tmpl_bos, &has_tmpl, err));
    BRT_TRY(parse_config(t, config_path, tmpl_bos, has_tmpl, err));
    return derive(t, err);
}

brt_status brt_hf_load(const char *json_path, const char *config_path, brt_hf_tokenizer **out, brt_err *err)
{
    *out = NULL;
    FILE *f = fopen(json_path, "rb");
    if (!f)
        return brt_errf(err, BRT_ERR_IO, "%s: cannot open: %s", json_path, strerror(errno));
    json_error_t je;
    json_t *root = json_loadf(f, JSON_ALLOW_NUL, &je);
    fclose(f);
    if (!root)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: line %d: %s", json_path, je.line, je.text);
    brt_hf_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(json_path))) {
        free(t);
        json_decref(root);
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", json_path);
    }
    brt_status st = load(t, root, config_path, err);
    json_decref(root);
    if (st != BRT_OK) {
        brt_hf_free(t);
        return st;
    }
    *out = t;
    return BRT_OK;
}

void brt_hf_free(brt_hf_tokenizer *t)
{
    if (!t)
        return;
    for (int k = 0; k < t->n_norm; k++) {
        pattern_free(&t->norm[k].pat);
        free(t->norm[k].str);
    }
    for (int k = 0; k < t->n_pre; k++)
        pattern_free(&t->pre[k].pat);
    for (int k = 0; k < t->n_dec; k++) {
        pattern_free(&t->dec[k].pat);
        free(t->dec[k].str);
    }
    free(t->norm);
    free(t->pre);
    free(t->dec);
    free(t->atok);
    free(t->raw_trie.nodes);
    free(t->norm_trie.nodes);
    if (t->word_re)
        pcre2_code_free(t->word_re);
    free(t->mkey);
    free(t->mrank);
    free(t->mnew);
    brt_piece_index_free(&t->vocab);
    brt_piece_index_free(&t->added);
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->type);
    free(t->bpool);
    free(t->dstr);
    free(t->dlen);
    free(t->nform);
    free(t->boff);
    free(t->blen);
    free(t->path);
    free(t);
}

/* ---- encode --------------------------------------------------------------------------------- */

typedef struct bsym {
    int32_t id; /* -1: merged into the symbol on its left */
    int32_t prev, next;
} bsym;

/* A candidate merge of the symbol at pos with the one after it. The rank alone identifies the
 * pair (each rank is one merge), so a stale entry is one whose rank is no longer the current
 * pair's: the same test as `tokenizers`' comparison of the merged ids. */
typedef struct bmerge {
    uint32_t rank;
    int32_t pos;
} bmerge;

enum { STOP_LIMIT = 1, STOP_NOMEM, STOP_REGEX };

typedef struct hf_enc {
    const brt_hf_tokenizer *t;
    rx_ctx x;
    pcre2_match_data **pre_md;  /* [n_pre], NULL where a stage has no regex */
    pcre2_match_data **norm_md; /* [n_norm] */
    pcre2_match_data *word_md;  /* single_word's test */
    brt_buf nbuf[2];            /* the normalized segment */
    brt_buf *pre_buf;           /* [n_pre] a piece with the prefix space */
    brt_buf wbuf;               /* a byte-level word as its mapped characters */
    bsym *syms;
    size_t cap_syms;
    bmerge *heap;
    size_t n_heap, cap_heap;
    int32_t *ids;
    size_t n_ids, cap_ids, max_ids;
    int stop; /* STOP_*: stop encoding */
} hf_enc;

static void push_id(hf_enc *e, int32_t id)
{
    if (e->n_ids == e->cap_ids) {
        size_t cap = e->cap_ids ? 2 * e->cap_ids : 256;
        int32_t *p = realloc(e->ids, cap * sizeof *p);
        if (!p) {
            e->stop = STOP_NOMEM;
            return;
        }
        e->ids = p;
        e->cap_ids = cap;
    }
    e->ids[e->n_ids++] = id;
}

/* Min-heap on (rank, position), as `tokenizers` orders its merges. */
static inline int merge_before(const bmerge *a, const bmerge *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

BRT_HEAP_DEFINE(merge_heap, bmerge, merge_before)

static inline void try_merge(hf_enc *e, int32_t left)
{
    const brt_hf_tokenizer *t = e->t;
    int32_t right = e->syms[left].next;
    if (right < 0)
        return;
    int64_t slot = merge_find(t, e->syms[left].id, e->syms[right].id);
    if (slot >= 0)
        merge_heap_push(e->heap, &e->n_heap, (bmerge){t->mrank[slot], left});
}

static inline void add_sym(hf_enc *e, size_t *ns, int32_t id)
{
    e->syms[*ns] = (bsym){id, (int32_t)*ns - 1, (int32_t)*ns + 1};
    (*ns)++;
}

/* BPE on one word (a pre-token): its characters (bytes under ByteLevel) become symbols, unknown
 * ones byte-fallback pieces or the unknown token, then the lowest-ranked adjacent pair merges
 * first (leftmost among equals) until none is in the merges; the ids are appended. */
static void bpe_word(hf_enc *e, const char *s, size_t n)
{
    const brt_hf_tokenizer *t = e->t;
    if (e->stop || n == 0)
        return;
    if (t->ignore_merges) { /* a word that is a token stays whole */
        const char *w = s;
        size_t wn = n;
        if (t->byte_level) {
            e->wbuf.len = 0;
            for (size_t i = 0; i < n; i++)
                if (brt_buf_append(&e->wbuf, t->bl_utf8[(uint8_t)s[i]], t->bl_len[(uint8_t)s[i]])) {
                    e->stop = STOP_NOMEM;
                    return;
                }
            w = e->wbuf.data, wn = e->wbuf.len;
        }
        int32_t id = strtab_find(t, &t->vocab, w, wn);
        if (id >= 0) {
            push_id(e, id);
            return;
        }
    }
    if (t->max_cover && e->n_ids + (n + t->max_cover - 1) / t->max_cover > e->max_ids) {
        e->stop = STOP_LIMIT; /* this word alone passes the limit: no need to merge it */
        return;
    }
    /* Symbols: at most one per byte, two under ByteLevel when a byte's character falls back to
     * its 2 UTF-8 bytes. Heap: the initial pairs, then each merge pops one entry and pushes at
     * most two, so it never holds more than symbols + merges < 2 * symbols entries. */
    size_t need = t->max_syms_per_byte * n + 1;
    if (need > e->cap_syms) {
        size_t cap = e->cap_syms ? e->cap_syms : 64;
        while (cap < need)
            cap *= 2;
        bsym *sy = realloc(e->syms, cap * sizeof *sy);
        if (sy)
            e->syms = sy;
        bmerge *h = realloc(e->heap, 2 * cap * sizeof *h);
        if (h)
            e->heap = h;
        if (!sy || !h) {
            e->stop = STOP_NOMEM;
            return;
        }
        e->cap_syms = cap;
    }
    size_t ns = 0;
    int unk_pending = 0;
    for (size_t i = 0; i < n;) {
        const char *cs; /* the character as the model sees it */
        size_t cl, step;
        int32_t id;
        unsigned char c = (unsigned char)s[i];
        if (t->byte_level) {
            id = t->bl_id[c];
            cs = t->bl_utf8[c];
            cl = t->bl_len[c];
            step = 1;
        } else if (c < 0x80) {
            id = t->ascii_id[c];
            cs = s + i;
            cl = step = 1;
        } else {
            cs = s + i;
            cl = step = brt_utf8_seq_len((const unsigned char *)s + i, n - i);
            id = strtab_find(t, &t->vocab, cs, cl);
        }
        i += step;
        if (id >= 0) {
            if (unk_pending)
                add_sym(e, &ns, t->unk_id);
            unk_pending = 0;
            add_sym(e, &ns, id);
            continue;
        }
        if (t->byte_fallback) {
            int all = 1;
            for (size_t k = 0; k < cl; k++)
                all &= t->fb_id[(uint8_t)cs[k]] >= 0;
            if (all) { /* as `tokenizers`: a pending unknown token stays pending across these */
                for (size_t k = 0; k < cl; k++)
                    add_sym(e, &ns, t->fb_id[(uint8_t)cs[k]]);
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (unk_pending && !t->fuse_unk)
                add_sym(e, &ns, t->unk_id);
            unk_pending = 1;
        }
        /* no unknown token: `tokenizers` drops the character */
    }
    if (unk_pending)
        add_sym(e, &ns, t->unk_id);
    if (ns == 0)
        return;
    e->syms[ns - 1].next = -1;
    e->n_heap = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        try_merge(e, (int32_t)i);
    while (e->n_heap > 0) {
        bmerge m = merge_heap_pop(e->heap, &e->n_heap);
        bsym *l = &e->syms[m.pos];
        if (l->id < 0 || l->next < 0)
            continue;
        /* stale: the pair at this position changed since it was pushed */
        int64_t slot = merge_find(t, l->id, e->syms[l->next].id);
        if (slot < 0 || t->mrank[slot] != m.rank)
            continue;
        bsym *r = &e->syms[l->next];
        l->id = t->mnew[slot];
        l->next = r->next;
        if (r->next >= 0)
            e->syms[r->next].prev = m.pos;
        r->id = -1;
        if (l->prev >= 0)
            try_merge(e, l->prev);
        try_merge(e, m.pos);
    }
    for (int32_t i = 0; i >= 0 && !e->stop; i = e->syms[i].next)
        push_id(e, e->syms[i].id);
}

/* The model's input: one pre-token, or (no pre-tokenizer) a whole segment, split into words
 * before each U+2581 run when that gives the same tokens (see derive). */
static void model_piece(hf_enc *e, const char *s, size_t n)
{
    const brt_hf_tokenizer *t = e->t;
    if (t->split_spm) {
        size_t w = 0, k = 1;
        while (k < n && !e->stop) {
            const char *hit = memmem(s + k, n - k, SPM_SPACE, 3);
            if (!hit)
                break;
            k = (size_t)(hit - s);
            if (!(k >= 3 && memcmp(s + k - 3, SPM_SPACE, 3) == 0)) {
                bpe_word(e, s + w, k - w);
                w = k;
                if (e->n_ids > e->max_ids)
                    e->stop = STOP_LIMIT;
            }
            k += 3;
        }
        bpe_word(e, s + w, n - w);
    } else {
        bpe_word(e, s, n);
    }
    if (!e->stop && e->n_ids > e->max_ids)
        e->stop = STOP_LIMIT;
}

static void run_pre(hf_enc *e, int stage, const char *s, size_t n);

/* One stage's split behaviour over its stream of (piece, is-match) items, as `tokenizers`'
 * SplitDelimiterBehavior; merged pieces are held until the next item decides. */
typedef struct split_state {
    size_t a, b;
    int have, prev_match;
} split_state;

static void split_item(hf_enc *e, int stage, int behavior, split_state *st, const char *s, size_t a, size_t b,
                       int is_match)
{
    switch (behavior) {
    case SPLIT_ISOLATED:
        if (b > a)
            run_pre(e, stage + 1, s + a, b - a);
        break;
    case SPLIT_REMOVED:
        if (!is_match && b > a)
            run_pre(e, stage + 1, s + a, b - a);
        break;
    case SPLIT_MERGED_PREV:
    case SPLIT_CONTIGUOUS: {
        int join = behavior == SPLIT_MERGED_PREV ? (is_match && !st->prev_match) : (is_match == st->prev_match);
        if (join && st->have) {
            st->b = b;
        } else {
            if (st->have && st->b > st->a)
                run_pre(e, stage + 1, s + st->a, st->b - st->a);
            st->a = a, st->b = b, st->have = 1;
        }
        break;
    }
    case SPLIT_MERGED_NEXT: /* a match joins the piece after it when that one is not a match */
        if (!is_match) {
            size_t from = st->have ? st->a : a;
            st->have = 0;
            if (b > from)
                run_pre(e, stage + 1, s + from, b - from);
        } else {
            if (st->have && st->b > st->a)
                run_pre(e, stage + 1, s + st->a, st->b - st->a);
            st->a = a, st->b = b, st->have = 1;
        }
        break;
    }
    st->prev_match = is_match;
}

static void split_flush(hf_enc *e, int stage, split_state *st, const char *s)
{
    if (st->have && st->b > st->a && !e->stop)
        run_pre(e, stage + 1, s + st->a, st->b - st->a);
    st->have = 0;
}

static void run_pre(hf_enc *e, int stage, const char *s, size_t n)
{
    const brt_hf_tokenizer *t = e->t;
    if (e->stop || n == 0)
        return;
    if (stage == t->n_pre) {
        model_piece(e, s, n);
        return;
    }
    const pre_stage *p = &t->pre[stage];
    split_state st = {0, 0, 0, 0};
    if (p->kind == PRE_PREFIX_SPACE) {
        if (s[0] == ' ') {
            run_pre(e, stage + 1, s, n);
            return;
        }
        brt_buf *b = &e->pre_buf[stage];
        b->len = 0;
        if (brt_buf_append(b, " ", 1) || brt_buf_append(b, s, n)) {
            e->stop = STOP_NOMEM;
            return;
        }
        run_pre(e, stage + 1, b->data, b->len);
        return;
    }
    if (p->kind == PRE_DIGITS) {
        size_t prev = 0;
        for (size_t i = 0; i < n && !e->stop;) {
            size_t cl = 1;
            uint32_t cp =
                (unsigned char)s[i] < 0x80 ? (unsigned char)s[i] : utf8_cp((const unsigned char *)s + i, n - i, &cl);
            if (is_numeric(cp)) {
                if (prev < i)
                    split_item(e, stage, p->behavior, &st, s, prev, i, 0);
                split_item(e, stage, p->behavior, &st, s, i, i + cl, 1);
                prev = i + cl;
            }
            i += cl;
        }
        if (prev < n && !e->stop)
            split_item(e, stage, p->behavior, &st, s, prev, n, 0);
        split_flush(e, stage, &st, s);
        return;
    }
    /* PRE_SPLIT */
    finder f = {0, SIZE_MAX};
    size_t prev = 0, a, b;
    int r = 0;
    while (!e->stop && (r = find_next(&e->x, &p->pat, e->pre_md[stage], s, n, &f, &a, &b)) == 1) {
        if (prev != a)
            split_item(e, stage, p->behavior, &st, s, prev, a, p->invert);
        if (!e->stop)
            split_item(e, stage, p->behavior, &st, s, a, b, !p->invert);
        prev = b;
    }
    if (e->stop)
        return;
    if (r < 0) {
        e->stop = STOP_REGEX;
        return;
    }
    if (prev != n)
        split_item(e, stage, p->behavior, &st, s, prev, n, p->invert);
    split_flush(e, stage, &st, s);
}

/* Rust's regex \w on the character before s[at] / at s[0] (single_word added tokens). */
static int word_char_at(const brt_hf_tokenizer *t, rx_ctx *x, pcre2_match_data *md, const char *s, size_t n)
{
    size_t cl = brt_utf8_seq_len((const unsigned char *)s, n);
    if (cl == 0)
        return 0;
    return rx_match(x, t->word_re, md, s, cl, 0) >= 0;
}

typedef void (*text_fn)(hf_enc *e, const char *s, size_t n);

/* Splits added tokens out of s[0, n) like `tokenizers`' AddedVocabulary: leftmost-longest
 * matches; a single_word token only between non-word characters; lstrip/rstrip take the
 * whitespace beside the token into it. Text between tokens goes to on_text. */
static void added_split(hf_enc *e, const trie *tr, pcre2_match_data *wmd, const char *s, size_t n, text_fn on_text)
{
    const brt_hf_tokenizer *t = e->t;
    if (!tr->any) {
        if (n > 0)
            on_text(e, s, n);
        return;
    }
    size_t start_offset = 0, p = 0;
    while (p < n && !e->stop) {
        size_t ml = 0;
        int32_t k = tr->first[(uint8_t)s[p]] ? trie_longest(tr, s + p, n - p, &ml) : -1;
        if (k < 0) {
            p++;
            continue;
        }
        size_t start = p, stop = p + ml;
        p = stop; /* the search goes on after the match, whatever the strips below take */
        const added_tok *a = &t->atok[k];
        if (a->single_word) {
            size_t prev = start > 0 ? start - 1 : 0; /* the character before the match */
            while (prev > 0 && ((unsigned char)s[prev] & 0xC0) == 0x80)
                prev--;
            int start_space = start == 0 || !word_char_at(t, &e->x, wmd, s + prev, start - prev);
            int stop_space = stop == n || !word_char_at(t, &e->x, wmd, s + stop, n - stop);
            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t q = ns - 1, cl;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80)
                    q--;
                if (!is_white_space(utf8_cp((const unsigned char *)s + q, ns - q, &cl)))
                    break;
                ns = q;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                size_t cl;
                if (!is_white_space(utf8_cp((const unsigned char *)s + stop, n - stop, &cl)))
                    break;
                stop += cl;
            }
        }
        if (start_offset < start)
            on_text(e, s + start_offset, start - start_offset);
        if (!e->stop)
            push_id(e, a->id);
        if (!e->stop && e->n_ids > e->max_ids)
            e->stop = STOP_LIMIT;
        start_offset = stop;
    }
    if (!e->stop && start_offset < n)
        on_text(e, s + start_offset, n - start_offset);
}

static void on_normalized_text(hf_enc *e, const char *s, size_t n) { run_pre(e, 0, s, n); }

static void on_raw_text(hf_enc *e, const char *s, size_t n)
{
    const char *ns;
    size_t nn;
    int r = normalize(e->t, &e->x, e->norm_md, s, n, e->nbuf, &ns, &nn);
    if (r) {
        e->stop = r == -1 ? STOP_NOMEM : STOP_REGEX;
        return;
    }
    added_split(e, &e->t->norm_trie, e->word_md, ns, nn, on_normalized_text);
}

static void enc_free(hf_enc *e)
{
    const brt_hf_tokenizer *t = e->t;
    free_match_data(e->pre_md, t->n_pre);
    free_match_data(e->norm_md, t->n_norm);
    if (e->word_md)
        pcre2_match_data_free(e->word_md);
    for (int k = 0; e->pre_buf && k < t->n_pre; k++)
        brt_buf_free(&e->pre_buf[k]);
    free(e->pre_buf);
    brt_buf_free(&e->nbuf[0]);
    brt_buf_free(&e->nbuf[1]);
    brt_buf_free(&e->wbuf);
    free(e->syms);
    free(e->heap);
    rx_free(&e->x);
}

brt_status brt_hf_encode_max(const brt_hf_tokenizer *t, const char *text, size_t len, int add_bos, size_t max_ids,
                             int32_t **ids, size_t *n_ids, brt_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (len > MAX_TEXT_BYTES)
        return brt_errf(err, BRT_ERR_RANGE, "tokenizer: text of %zu bytes exceeds the %zu limit", len, MAX_TEXT_BYTES);
    if (add_bos && t->bos_id < 0)
        return brt_errf(err, BRT_ERR_INVALID, "tokenizer: BOS requested but the model has none");
    size_t bad = utf8_check(text, len);
    if (bad < len)
        return brt_errf(err, BRT_ERR_INVALID, "tokenizer: invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                        (unsigned char)text[bad]);

    hf_enc e = {.t = t, .max_ids = max_ids};
    int oom = 0;
    e.norm_md = norm_match_data(t, &oom);
    if (t->n_pre > 0 && !oom) {
        e.pre_md = calloc((size_t)t->n_pre, sizeof *e.pre_md);
        e.pre_buf = calloc((size_t)t->n_pre, sizeof *e.pre_buf);
        oom = !e.pre_md || !e.pre_buf;
        for (int k = 0; !oom && k < t->n_pre; k++)
            if (t->pre[k].pat.re && !(e.pre_md[k] = pcre2_match_data_create_from_pattern(t->pre[k].pat.re, NULL)))
                oom = 1;
    }
    if (t->word_re && !oom)
        oom = !(e.word_md = pcre2_match_data_create_from_pattern(t->word_re, NULL));
    if (oom)
        e.stop = STOP_NOMEM;
    if (add_bos && !e.stop)
        push_id(&e, t->bos_id);
    if (!e.stop && e.n_ids > max_ids)
        e.stop = STOP_LIMIT;
    if (!e.stop)
        added_split(&e, &t->raw_trie, e.word_md, text, len, on_raw_text);
    if (!e.stop && !e.ids) /* never NULL on success */
        push_id(&e, 0), e.n_ids = 0;
    brt_status st = BRT_OK;
    if (e.stop == STOP_NOMEM)
        st = brt_errf(err, BRT_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    else if (e.stop == STOP_REGEX)
        st = rx_error(err, "a pre-tokenizer or normalizer regex failed", e.x.rc);
    else if (e.stop == STOP_LIMIT)
        st = brt_errf(err, BRT_ERR_RANGE, "the text (%zu bytes) is more than %zu tokens", len, max_ids);
    enc_free(&e);
    if (st != BRT_OK) {
        free(e.ids);
        return st;
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return BRT_OK;
}

/* ---- decode --------------------------------------------------------------------------------- */

/* A list of token strings (offsets into one buffer), what `tokenizers`' decoders pass along. */
typedef struct tlist {
    brt_buf buf;
    size_t *off, *len;
    size_t n, cap;
} tlist;

static int tl_push(tlist *l, const char *s, size_t n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (o)
            l->off = o;
        size_t *ln = realloc(l->len, cap * sizeof *ln);
        if (ln)
            l->len = ln;
        if (!o || !ln)
            return -1;
        l->cap = cap;
    }
    size_t at = l->buf.len;
    if (brt_buf_append(&l->buf, s, n))
        return -1;
    l->off[l->n] = at;
    l->len[l->n++] = n;
    return 0;
}

/* Extends the last token by s (it was pushed last). */
static int tl_extend(tlist *l, const char *s, size_t n)
{
    if (brt_buf_append(&l->buf, s, n))
        return -1;
    l->len[l->n - 1] += n;
    return 0;
}

static void tl_free(tlist *l)
{
    brt_buf_free(&l->buf);
    free(l->off);
    free(l->len);
}

/* ByteFallback: runs of <0xAB> tokens become their bytes when those are UTF-8, else one U+FFFD
 * per byte. */
static int flush_bytes(tlist *o, brt_buf *bytes)
{
    int r = 0;
    if (bytes->len == 0)
        return 0;
    if (utf8_check(bytes->data, bytes->len) == bytes->len)
        r = tl_push(o, bytes->data, bytes->len);
    else
        for (size_t i = 0; i < bytes->len && !r; i++)
            r = tl_push(o, "\xEF\xBF\xBD", 3);
    bytes->len = 0;
    return r;
}

/* One decoder step over the list. Returns 0, -1 out of memory, -2 on a PCRE2 error. */
static int dec_step(const brt_hf_tokenizer *t, rx_ctx *x, pcre2_match_data *md, const dec_op *d, const tlist *in,
                    tlist *o)
{
    const char *base = in->buf.data;
    int r = 0;
    switch (d->kind) {
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n && !r; i++) {
            r = tl_push(o, "", 0);
            if (!r) {
                size_t before = o->buf.len;
                r = replace_all(x, md, &d->pat, d->str, d->str_len, base + in->off[i], in->len[i], &o->buf);
                o->len[o->n - 1] = o->buf.len - before;
            }
        }
        return r;
    case DEC_BYTE_FALLBACK: {
        brt_buf bytes = {0};
        for (size_t i = 0; i < in->n && !r; i++) {
            int v = byte_token_value(base + in->off[i], in->len[i]);
            if (v >= 0) {
                char c = (char)v;
                r = brt_buf_append(&bytes, &c, 1);
            } else {
                r = flush_bytes(o, &bytes);
                if (!r)
                    r = tl_push(o, base + in->off[i], in->len[i]);
            }
        }
        if (!r)
            r = flush_bytes(o, &bytes);
        brt_buf_free(&bytes);
        return r;
    }
    case DEC_FUSE:
        r = tl_push(o, "", 0);
        for (size_t i = 0; i < in->n && !r; i++)
            r = tl_extend(o, base + in->off[i], in->len[i]);
        return r;
    case DEC_STRIP:
        for (size_t i = 0; i < in->n && !r; i++) {
            const char *s = base + in->off[i];
            size_t n = in->len[i], a = 0, b = n, c = d->str_len;
            for (size_t k = 0; k < d->start && n - a >= c && memcmp(s + a, d->str, c) == 0; k++)
                a += c;
            for (size_t k = 0; k < d->stop && b >= c && b - c >= a && memcmp(s + b - c, d->str, c) == 0; k++)
                b -= c;
            r = tl_push(o, s + a, b - a);
        }
        return r;
    case DEC_BYTE_LEVEL: {
        /* every token's bytes, then one string read as UTF-8 (invalid parts -> U+FFFD) */
        brt_buf raw = {0};
        for (size_t i = 0; i < in->n && !r; i++) {
            const char *s = base + in->off[i];
            size_t n = in->len[i], before = raw.len;
            int all = 1;
            for (size_t k = 0; k < n && all && !r;) {
                size_t cl;
                uint32_t cp = utf8_cp((const unsigned char *)s + k, n - k, &cl);
                if (cp < 324 && t->bl_rev[cp] >= 0) {
                    char c = (char)t->bl_rev[cp];
                    r = brt_buf_append(&raw, &c, 1);
                } else {
                    all = 0;
                }
                k += cl;
            }
            if (!all && !r) {
                raw.len = before;
                r = brt_buf_append(&raw, s, n);
            }
        }
        if (!r)
            r = tl_push(o, "", 0);
        if (!r && raw.len) {
            size_t before = o->buf.len;
            r = brt_utf8_lossy(&o->buf, raw.data, raw.len);
            o->len[o->n - 1] = o->buf.len - before;
        }
        brt_buf_free(&raw);
        return r;
    }
    }
    return 0;
}

brt_status brt_hf_decode(const brt_hf_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
                         brt_err *err)
{
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n)
            return brt_errf(err, BRT_ERR_RANGE, "tokenizer: token id %d at position %zu is out of range [0, %d)",
                            ids[i], i, t->n);
    tlist a = {0}, b = {0};
    rx_ctx x = {0};
    int r = 0;
    /* skip_special_tokens: special added tokens, and ids no token holds, read as nothing */
    for (size_t i = 0; i < n && !r; i++) {
        int ty = t->type[ids[i]];
        if (ty != BRT_PIECE_CONTROL && ty != BRT_PIECE_UNUSED)
            r = tl_push(&a, t->dstr[ids[i]], t->dlen[ids[i]]);
    }
    for (int k = 0; k < t->n_dec && !r; k++) {
        pcre2_match_data *md = NULL;
        if (t->dec[k].pat.re && !(md = pcre2_match_data_create_from_pattern(t->dec[k].pat.re, NULL)))
            r = -1;
        b.n = 0;
        b.buf.len = 0;
        if (!r)
            r = dec_step(t, &x, md, &t->dec[k], &a, &b);
        if (md)
            pcre2_match_data_free(md);
        tlist tmp = a;
        a = b;
        b = tmp;
    }
    /* the decoder's strings joined; without a decoder `tokenizers` joins the tokens with spaces */
    brt_buf out = {0};
    for (size_t i = 0; i < a.n && !r; i++) {
        if (i > 0 && !t->has_decoder)
            r = brt_buf_append(&out, " ", 1);
        if (!r)
            r = brt_buf_append(&out, a.buf.data + a.off[i], a.len[i]);
    }
    if (!r)
        r = brt_buf_append(&out, "", 0);
    tl_free(&a);
    tl_free(&b);
    rx_free(&x);
    if (r) {
        brt_buf_free(&out);
        if (r == -2)
            return rx_error(err, "a decoder regex failed", x.rc);
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer: out of memory decoding %zu tokens", n);
    }
    *text = out.data;
    *len = out.len;
    return BRT_OK;
}

/* ---- per-id queries ------------------------------------------------------------------------- */

int32_t brt_hf_vocab_size(const brt_hf_tokenizer *t) { return t->n; }
int32_t brt_hf_bos_id(const brt_hf_tokenizer *t) { return t->bos_id; }
int32_t brt_hf_eos_id(const brt_hf_tokenizer *t) { return t->eos_id; }
int32_t brt_hf_unk_id(const brt_hf_tokenizer *t) { return t->unk_id; }
int32_t brt_hf_pad_id(const brt_hf_tokenizer *t) { return t->pad_id; }
int brt_hf_adds_bos(const brt_hf_tokenizer *t) { return t->adds_bos; }
size_t brt_hf_max_token_bytes(const brt_hf_tokenizer *t) { return t->max_token_bytes; }

size_t brt_hf_token_bytes(const brt_hf_tokenizer *t, int32_t id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n || cap == 0)
        return 0;
    size_t n = t->blen[id] < cap ? t->blen[id] : cap;
    memcpy(buf, t->bpool + t->boff[id], n);
    return n;
}

const char *brt_hf_piece(const brt_hf_tokenizer *t, int32_t id)
{
    return (id >= 0 && id < t->n) ? t->pool + t->off[id] : NULL;
}

int brt_hf_piece_type(const brt_hf_tokenizer *t, int32_t id) { return (id >= 0 && id < t->n) ? t->type[id] : 0; }

int32_t brt_hf_piece_id(const brt_hf_tokenizer *t, const char *piece, size_t len)
{
    return lookup_piece(t, piece, len);
}
