/* SentencePiece BPE tokenizer. The algorithm follows the behaviour of sentencepiece 0.1.97 (its
 * BPE model, identity normalizer and processor's encode/decode), re-implemented from the
 * algorithm's description; the unit test pins it to reference outputs of that version.
 *
 * The same public brt_tokenizer also fronts the Hugging Face backend (hf_tokenizer.c): a
 * tokenizer loaded from a tokenizer.json holds only `hf`, and every public function below
 * forwards to it. */
#include "model/tokenizer.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/heap.h"
#include "base/piece_index.h"
#include "model/tokenizer_impl.h"
#include "sentencepiece_model.pb-c.h"

#define SPACE_SYMBOL "\xE2\x96\x81" /* U+2581, sentencepiece's escaped space */
#define SPACE_SYMBOL_LEN 3

/* Texts above this are refused: symbol indices and offsets are 32-bit. */
#define MAX_TEXT_BYTES ((size_t)1 << 29)

enum { PT_NORMAL = 1, PT_UNKNOWN = 2, PT_CONTROL = 3, PT_USER = 4, PT_UNUSED = 5, PT_BYTE = 6 };

struct brt_tokenizer {
    brt_hf_tokenizer *hf; /* set: a tokenizer.json, nothing below is used */
    int32_t n;
    char *pool;        /* every piece, NUL-terminated, back to back */
    uint32_t *off;     /* [n] piece start in pool */
    uint32_t *len;     /* [n] piece length in bytes */
    float *score;      /* [n] */
    uint8_t *type;     /* [n] PT_* */
    int16_t *byte_val; /* [n] the byte of a BYTE piece, else -1 */
    int32_t byte_id[256];

    /* sentencepiece keeps two maps: pieces that BPE may produce (NORMAL, USER_DEFINED, UNUSED)
     * and the rest; a lookup tries the first, then the second. */
    brt_piece_index normal;
    brt_piece_index reserved;
    uint32_t max_normal_len; /* no merge can produce a longer piece: skip the lookup */

    /* USER_DEFINED pieces are matched as whole symbols before BPE (longest first). */
    int has_user;
    uint8_t user_first[256]; /* first bytes of user-defined pieces */
    uint32_t *user_lens;     /* distinct lengths, descending */
    size_t n_user_lens;

    /* UNUSED pieces may be merge intermediates but are never output: each gets a slot in the
     * per-encode table that remembers which two symbols formed it. */
    int32_t *unused_slot; /* [n] slot or -1 */
    int32_t n_unused;

    /* Merges never cross a word start (a char other than U+2581, then U+2581) because no piece
     * contains one: encode then runs BPE word by word, which keeps the heap small and in cache
     * and gives the same result, since a merge in one word never changes the pairs of another. */
    int split_words;

    int32_t unk_id, bos_id, eos_id, pad_id;
    int byte_fallback;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    char *unk_surface;
    size_t unk_surface_len;
    size_t max_token_bytes;
};

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 character at s (1..4), or 0 if the bytes there are not one:
 * bad lead or continuation bytes, truncation, overlong forms, surrogates, > U+10FFFF. */
static size_t utf8_char_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
        n = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* ---- piece tables ----------------------------------------------------------------------- */

static brt_pieces pieces_of(const brt_tokenizer *tok) { return (brt_pieces){tok->pool, tok->off, tok->len}; }

static int32_t table_find(const brt_tokenizer *tok, const brt_piece_index *t, const char *s, size_t n)
{
    return brt_piece_index_find(t, pieces_of(tok), s, n);
}

static int32_t lookup_any(const brt_tokenizer *tok, const char *s, size_t n)
{
    int32_t id = table_find(tok, &tok->normal, s, n);
    return id >= 0 ? id : table_find(tok, &tok->reserved, s, n);
}

/* ---- loading ---------------------------------------------------------------------------- */

static brt_status read_file(const char *path, uint8_t **data, size_t *size, brt_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return brt_errf(err, BRT_ERR_IO, "tokenizer %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return brt_errf(err, BRT_ERR_IO, "tokenizer %s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer %s: cannot allocate %zu bytes", path, n);
    }
    if (fread(buf, 1, n, f) != n) {
        int e = ferror(f) ? errno : 0;
        free(buf);
        fclose(f);
        return brt_errf(err, BRT_ERR_IO, "tokenizer %s: short read: %s", path,
                        e ? strerror(e) : "file changed while reading");
    }
    fclose(f);
    *data = buf;
    *size = n;
    return BRT_OK;
}

/* "<0xAB>" with upper-case hex, as sentencepiece names byte pieces; -1 if not that form. */
static int parse_byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t decoded_piece_len(const char *s, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= SPACE_SYMBOL_LEN && memcmp(s + i, SPACE_SYMBOL, SPACE_SYMBOL_LEN) == 0) {
            out += 1;
            i += SPACE_SYMBOL_LEN;
        } else {
            out++;
            i++;
        }
    }
    return out;
}

/* Special ids the way sentencepiece finds them: by the trainer's piece name, accepted only when
 * that piece has the expected type. */
static int32_t special_id(const brt_tokenizer *tok, const char *piece, int want_type)
{
    if (!piece)
        return -1;
    int32_t id = lookup_any(tok, piece, strlen(piece));
    return (id >= 0 && tok->type[id] == want_type) ? id : -1;
}

static brt_status build(brt_tokenizer *tok, const Sentencepiece__ModelProto *m, const char *path,
                        brt_err *err)
{
    /* Missing sub-messages read as all defaults, as in sentencepiece: no trainer_spec means
     * UNIGRAM, no normalizer_spec means every flag true. */
    static const Sentencepiece__TrainerSpec default_ts = SENTENCEPIECE__TRAINER_SPEC__INIT;
    static const Sentencepiece__NormalizerSpec default_ns = SENTENCEPIECE__NORMALIZER_SPEC__INIT;
    const Sentencepiece__TrainerSpec *ts = m->trainer_spec ? m->trainer_spec : &default_ts;
    const Sentencepiece__NormalizerSpec *ns = m->normalizer_spec ? m->normalizer_spec : &default_ns;

    if (m->n_pieces == 0)
        return brt_errf(err, BRT_ERR_FORMAT, "tokenizer %s: the model has no pieces", path);
    int model_type = (int)ts->model_type;
    if (model_type != SENTENCEPIECE__TRAINER_SPEC__MODEL_TYPE__BPE) {
        static const char *const names[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "tokenizer %s: model_type %s (%d) is not supported, only BPE", path,
                        (model_type >= 1 && model_type <= 4) ? names[model_type] : "?", model_type);
    }
    if (ns->has_precompiled_charsmap && ns->precompiled_charsmap.len > 0)
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "tokenizer %s: normalizer '%s' has a precompiled_charsmap (%zu bytes); "
                        "only the identity normalizer is supported",
                        path, ns->name ? ns->name : "", ns->precompiled_charsmap.len);
    if (m->denormalizer_spec && m->denormalizer_spec->has_precompiled_charsmap &&
        m->denormalizer_spec->precompiled_charsmap.len > 0)
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "tokenizer %s: a denormalizer (precompiled_charsmap) is not supported", path);
    if (ts->treat_whitespace_as_suffix)
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "tokenizer %s: treat_whitespace_as_suffix is not supported", path);
    if (m->n_pieces > INT32_MAX / 4)
        return brt_errf(err, BRT_ERR_FORMAT, "tokenizer %s: %zu pieces is too many", path,
                        m->n_pieces);

    tok->add_dummy_prefix = ns->add_dummy_prefix;
    tok->remove_extra_ws = ns->remove_extra_whitespaces;
    tok->escape_ws = ns->escape_whitespaces;
    tok->byte_fallback = ts->byte_fallback;

    int32_t n = (int32_t)m->n_pieces;
    tok->n = n;
    size_t pool_size = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *p = m->pieces[i]->piece;
        size_t l = p ? strlen(p) : 0;
        if (l == 0)
            return brt_errf(err, BRT_ERR_FORMAT, "tokenizer %s: piece %d is empty", path, i);
        pool_size += l + 1;
        if (pool_size > UINT32_MAX)
            return brt_errf(err, BRT_ERR_FORMAT, "tokenizer %s: pieces too large", path);
    }
    tok->pool = malloc(pool_size);
    tok->off = malloc((size_t)n * sizeof *tok->off);
    tok->len = malloc((size_t)n * sizeof *tok->len);
    tok->score = malloc((size_t)n * sizeof *tok->score);
    tok->type = malloc((size_t)n);
    tok->byte_val = malloc((size_t)n * sizeof *tok->byte_val);
    tok->unused_slot = malloc((size_t)n * sizeof *tok->unused_slot);
    if (!tok->pool || !tok->off || !tok->len || !tok->score || !tok->type || !tok->byte_val ||
        !tok->unused_slot || brt_piece_index_init(&tok->normal, (size_t)n) || brt_piece_index_init(&tok->reserved, (size_t)n))
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer %s: out of memory for %d pieces", path, n);

    size_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        const Sentencepiece__ModelProto__SentencePiece *sp = m->pieces[i];
        size_t l = strlen(sp->piece);
        memcpy(tok->pool + at, sp->piece, l + 1);
        tok->off[i] = (uint32_t)at;
        tok->len[i] = (uint32_t)l;
        at += l + 1;
        tok->score[i] = sp->score;
        int t = (int)sp->type;
        if (t < PT_NORMAL || t > PT_BYTE)
            return brt_errf(err, BRT_ERR_FORMAT, "tokenizer %s: piece %d ('%s') has unknown type %d",
                            path, i, sp->piece, t);
        tok->type[i] = (uint8_t)t;
    }
    for (int b = 0; b < 256; b++)
        tok->byte_id[b] = -1;

    tok->unk_id = -1;
    int n_bytes = 0;
    size_t max_user = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s = tok->pool + tok->off[i];
        int t = tok->type[i];
        int normal = (t == PT_NORMAL || t == PT_USER || t == PT_UNUSED);
        int32_t dup = brt_piece_index_add(normal ? &tok->normal : &tok->reserved, pieces_of(tok), i);
        if (dup >= 0)
            return brt_errf(err, BRT_ERR_FORMAT, "tokenizer %s: piece %d ('%s') duplicates piece %d",
                            path, i, s, dup);
        tok->byte_val[i] = -1;
        tok->unused_slot[i] = -1;
        if (normal && tok->len[i] > tok->max_normal_len)
            tok->max_normal_len = tok->len[i];
        if (t == PT_UNKNOWN) {
            if (tok->unk_id >= 0)
                return brt_errf(err, BRT_ERR_FORMAT,
                                "tokenizer %s: pieces %d and %d are both the unknown piece", path,
                                tok->unk_id, i);
            tok->unk_id = i;
        } else if (t == PT_BYTE) {
            int v = parse_byte_piece(s, tok->len[i]);
            if (!tok->byte_fallback)
                return brt_errf(err, BRT_ERR_FORMAT,
                                "tokenizer %s: byte piece %d ('%s') but byte_fallback is off", path,
                                i, s);
            if (v < 0)
                return brt_errf(err, BRT_ERR_FORMAT,
                                "tokenizer %s: byte piece %d ('%s') is not of the form <0xXX>", path,
                                i, s);
            tok->byte_val[i] = (int16_t)v;
            tok->byte_id[v] = i;
            n_bytes++;
        } else if (t == PT_USER) {
            tok->has_user = 1;
            tok->user_first[(unsigned char)s[0]] = 1;
            if (tok->len[i] > max_user)
                max_user = tok->len[i];
        } else if (t == PT_UNUSED) {
            tok->unused_slot[i] = tok->n_unused++;
        }
    }
    if (tok->unk_id < 0)
        return brt_errf(err, BRT_ERR_FORMAT, "tokenizer %s: no piece has type UNKNOWN", path);

    /* UNUSED pieces rule word splitting out: which pair last formed one is remembered across
     * the whole text, so the order of the pushes must stay sentencepiece's. */
    tok->split_words = tok->escape_ws && tok->n_unused == 0;
    for (int32_t i = 0; i < n && tok->split_words; i++) {
        int t = tok->type[i];
        if (t != PT_NORMAL && t != PT_USER && t != PT_UNUSED)
            continue;
        const char *s = tok->pool + tok->off[i];
        for (uint32_t k = 1; k + SPACE_SYMBOL_LEN <= tok->len[i]; k++)
            if (memcmp(s + k, SPACE_SYMBOL, SPACE_SYMBOL_LEN) == 0 &&
                (k < SPACE_SYMBOL_LEN ||
                 memcmp(s + k - SPACE_SYMBOL_LEN, SPACE_SYMBOL, SPACE_SYMBOL_LEN) != 0)) {
                tok->split_words = 0;
                break;
            }
    }
    if (tok->byte_fallback && n_bytes != 256)
        return brt_errf(err, BRT_ERR_FORMAT,
                        "tokenizer %s: byte_fallback needs the 256 pieces <0x00>..<0xFF>, found %d",
                        path, n_bytes);

    if (tok->has_user) {
        /* Lengths to try, longest first; a small list even for many user-defined pieces. */
        uint8_t *seen = calloc(max_user + 1, 1);
        tok->user_lens = malloc((max_user + 1) * sizeof *tok->user_lens);
        if (!seen || !tok->user_lens) {
            free(seen);
            return brt_errf(err, BRT_ERR_NOMEM, "tokenizer %s: out of memory", path);
        }
        for (int32_t i = 0; i < n; i++)
            if (tok->type[i] == PT_USER)
                seen[tok->len[i]] = 1;
        for (size_t l = max_user; l > 0; l--)
            if (seen[l])
                tok->user_lens[tok->n_user_lens++] = (uint32_t)l;
        free(seen);
    }

    const char *surface = ts->unk_surface ? ts->unk_surface : " \xE2\x81\x87 ";
    tok->unk_surface_len = strlen(surface);
    tok->unk_surface = malloc(tok->unk_surface_len + 1);
    if (!tok->unk_surface)
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer %s: out of memory", path);
    memcpy(tok->unk_surface, surface, tok->unk_surface_len + 1);

    tok->max_token_bytes = tok->unk_surface_len;
    for (int32_t i = 0; i < n; i++) {
        size_t l = decoded_piece_len(tok->pool + tok->off[i], tok->len[i]);
        if (l > tok->max_token_bytes)
            tok->max_token_bytes = l;
    }

    /* The trainer's unk_piece names the unknown piece; trust the typed piece found above, which
     * is what encode emits, rather than a name that may disagree. */
    tok->bos_id = special_id(tok, ts->bos_piece, PT_CONTROL);
    tok->eos_id = special_id(tok, ts->eos_piece, PT_CONTROL);
    tok->pad_id = special_id(tok, ts->pad_piece, PT_CONTROL);
    return BRT_OK;
}

/* A tokenizer.json: the Hugging Face backend, with the tokenizer_config.json beside it if any. */
static brt_status load_hf(const char *path, brt_tokenizer **out, brt_err *err)
{
    char cfg[4096];
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path) : 1;
    int k = snprintf(cfg, sizeof cfg, "%.*s/tokenizer_config.json", dir_len, slash ? path : ".");
    if (k < 0 || (size_t)k >= sizeof cfg)
        return brt_errf(err, BRT_ERR_INVALID, "tokenizer %s: path too long", path);
    brt_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer %s: out of memory", path);
    brt_status st = brt_hf_load(path, access(cfg, F_OK) == 0 ? cfg : NULL, &tok->hf, err);
    if (st != BRT_OK) {
        free(tok);
        return st;
    }
    *out = tok;
    return BRT_OK;
}

/* A tiktoken BPE file (Llama-3's original tokenizer.model): lines "<base64 token> <rank>" */
static int looks_like_tiktoken(const uint8_t *d, size_t n)
{
    size_t i = 0;
    while (i < n && (isalnum(d[i]) || d[i] == '+' || d[i] == '/' || d[i] == '='))
        i++;
    if (i == 0 || i >= n || d[i] != ' ')
        return 0;
    size_t j = ++i;
    while (i < n && isdigit(d[i]))
        i++;
    return i > j && i < n && d[i] == '\n';
}

brt_status brt_tokenizer_load(const char *path, brt_tokenizer **out, brt_err *err)
{
    *out = NULL;
    size_t pl = strlen(path);
    if (pl >= 5 && strcmp(path + pl - 5, ".json") == 0)
        return load_hf(path, out, err);
    uint8_t *data = NULL;
    size_t size = 0;
    BRT_TRY(read_file(path, &data, &size, err));
    if (looks_like_tiktoken(data, size)) {
        free(data);
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "tokenizer %s: a tiktoken BPE file (Llama-3's original format), not a sentencepiece "
                        "model; put the model's tokenizer.json (and tokenizer_config.json) in the folder instead",
                        path);
    }
    Sentencepiece__ModelProto *m = sentencepiece__model_proto__unpack(NULL, size, data);
    free(data);
    if (!m)
        return brt_errf(err, BRT_ERR_FORMAT,
                        "tokenizer %s: not a sentencepiece model (protobuf parse of %zu bytes "
                        "failed: truncated or corrupt)",
                        path, size);
    brt_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        sentencepiece__model_proto__free_unpacked(m, NULL);
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer %s: out of memory", path);
    }
    brt_status st = build(tok, m, path, err);
    sentencepiece__model_proto__free_unpacked(m, NULL);
    if (st != BRT_OK) {
        brt_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return BRT_OK;
}

brt_status brt_tokenizer_load_dir(const char *dir, brt_tokenizer **out, brt_err *err)
{
    *out = NULL;
    char path[4096];
    static const char *const names[] = {"tokenizer.json", "tokenizer.model"};
    for (int i = 0; i < 2; i++) {
        int k = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (k < 0 || (size_t)k >= sizeof path)
            return brt_errf(err, BRT_ERR_INVALID, "%s: path too long", dir);
        if (access(path, F_OK) == 0)
            return brt_tokenizer_load(path, out, err);
    }
    return brt_errf(err, BRT_ERR_NOT_FOUND, "%s: no tokenizer.json or tokenizer.model", dir);
}

void brt_tokenizer_free(brt_tokenizer *tok)
{
    if (!tok)
        return;
    brt_hf_free(tok->hf);
    free(tok->pool);
    free(tok->off);
    free(tok->len);
    free(tok->score);
    free(tok->type);
    free(tok->byte_val);
    free(tok->unused_slot);
    brt_piece_index_free(&tok->normal);
    brt_piece_index_free(&tok->reserved);
    free(tok->user_lens);
    free(tok->unk_surface);
    free(tok);
}

int32_t brt_tokenizer_vocab_size(const brt_tokenizer *tok) { return tok->hf ? brt_hf_vocab_size(tok->hf) : tok->n; }
int32_t brt_tokenizer_bos_id(const brt_tokenizer *tok) { return tok->hf ? brt_hf_bos_id(tok->hf) : tok->bos_id; }
int32_t brt_tokenizer_eos_id(const brt_tokenizer *tok) { return tok->hf ? brt_hf_eos_id(tok->hf) : tok->eos_id; }
int32_t brt_tokenizer_unk_id(const brt_tokenizer *tok) { return tok->hf ? brt_hf_unk_id(tok->hf) : tok->unk_id; }
int32_t brt_tokenizer_pad_id(const brt_tokenizer *tok) { return tok->hf ? brt_hf_pad_id(tok->hf) : tok->pad_id; }
/* a sentencepiece model: always, as Llama's tokenizers do (an error if the model has no BOS) */
int brt_tokenizer_adds_bos(const brt_tokenizer *tok) { return tok->hf ? brt_hf_adds_bos(tok->hf) : 1; }

size_t brt_tokenizer_max_token_bytes(const brt_tokenizer *tok)
{
    return tok->hf ? brt_hf_max_token_bytes(tok->hf) : tok->max_token_bytes;
}

const char *brt_tokenizer_piece(const brt_tokenizer *tok, int32_t id)
{
    if (tok->hf)
        return brt_hf_piece(tok->hf, id);
    return (id >= 0 && id < tok->n) ? tok->pool + tok->off[id] : NULL;
}

int brt_tokenizer_piece_type(const brt_tokenizer *tok, int32_t id)
{
    if (tok->hf)
        return brt_hf_piece_type(tok->hf, id);
    return (id >= 0 && id < tok->n) ? tok->type[id] : 0;
}

int32_t brt_tokenizer_piece_id(const brt_tokenizer *tok, const char *piece, size_t len)
{
    return tok->hf ? brt_hf_piece_id(tok->hf, piece, len) : lookup_any(tok, piece, len);
}

/* ---- normalizer ------------------------------------------------------------------------- */

/* The identity normalizer: only ASCII ' ' is whitespace (tab and newline are ordinary
 * characters, left to byte fallback). remove_extra_whitespaces drops leading and trailing
 * spaces and collapses runs; the dummy prefix is added only to text that is non-empty after
 * that; the trailing strip also eats U+2581 already present in the input, as sentencepiece's
 * does, since it works on the escaped string. out needs 3 * len + 3 bytes. */
static size_t normalize(const brt_tokenizer *tok, const char *in, size_t len, char *out)
{
    const char *space = tok->escape_ws ? SPACE_SYMBOL : " ";
    size_t space_len = tok->escape_ws ? SPACE_SYMBOL_LEN : 1;
    size_t i = 0, o = 0;
    if (tok->remove_extra_ws)
        while (i < len && in[i] == ' ')
            i++;
    if (i == len)
        return 0;
    if (tok->add_dummy_prefix) {
        memcpy(out + o, space, space_len);
        o += space_len;
    }
    int prev_space = tok->remove_extra_ws;
    for (; i < len; i++) {
        char c = in[i];
        if (c == ' ') {
            if (prev_space)
                continue;
            memcpy(out + o, space, space_len);
            o += space_len;
            prev_space = tok->remove_extra_ws;
        } else {
            out[o++] = c;
            prev_space = 0;
        }
    }
    if (tok->remove_extra_ws)
        while (o >= space_len && memcmp(out + o - space_len, space, space_len) == 0)
            o -= space_len;
    return o;
}

/* ---- BPE -------------------------------------------------------------------------------- */

typedef struct sym {
    uint32_t start, len; /* bytes of the normalized text; len 0 = merged into its left */
    int32_t prev, next;
    uint8_t freeze; /* user-defined: never merged */
} sym;

typedef struct pair {
    float score;
    int32_t left, right;
    uint32_t size; /* left.len + right.len when pushed: detects stale entries */
} pair;

/* Max-heap on score; equal scores pop the leftmost pair first. */
static inline int pair_before(const pair *a, const pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct rev_merge {
    uint32_t ls, ll, rs, rl; /* the two pieces that last formed this UNUSED piece */
    int set;
} rev_merge;

typedef struct encoder {
    const brt_tokenizer *tok;
    const char *norm;
    sym *syms;
    pair *heap;
    size_t n_heap;
    rev_merge *rev; /* [tok->n_unused] */
    int32_t *ids;
    size_t n_ids;
    int prev_unk;
} encoder;

BRT_HEAP_DEFINE(pair_heap, pair, pair_before)

static void try_pair(encoder *e, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const sym *l = &e->syms[left], *r = &e->syms[right];
    if (l->freeze || r->freeze)
        return;
    uint32_t size = l->len + r->len;
    const brt_tokenizer *tok = e->tok;
    if (size > tok->max_normal_len)
        return;
    int32_t id = table_find(tok, &tok->normal, e->norm + l->start, size);
    if (id < 0)
        return;
    pair_heap_push(e->heap, &e->n_heap, (pair){tok->score[id], left, right, size});
    int32_t slot = tok->unused_slot[id];
    if (slot >= 0) /* the latest pair wins, even one that is never merged: as sentencepiece */
        e->rev[slot] = (rev_merge){l->start, l->len, r->start, r->len, 1};
}

/* Whether initial symbol i begins a word: it starts with U+2581 and the symbol before it does
 * not end with one. */
static int word_start(const encoder *e, int32_t i)
{
    const sym *a = &e->syms[i - 1], *b = &e->syms[i];
    return b->len >= SPACE_SYMBOL_LEN &&
           memcmp(e->norm + b->start, SPACE_SYMBOL, SPACE_SYMBOL_LEN) == 0 &&
           !(a->len >= SPACE_SYMBOL_LEN &&
             memcmp(e->norm + a->start + a->len - SPACE_SYMBOL_LEN, SPACE_SYMBOL,
                    SPACE_SYMBOL_LEN) == 0);
}

/* Emit the ids of one final symbol: UNUSED pieces split back into the pieces that formed them;
 * unknown ones become byte pieces (byte fallback) or one <unk> per run of unknown symbols. */
static void emit(encoder *e, uint32_t start, uint32_t len)
{
    const brt_tokenizer *tok = e->tok;
    const char *s = e->norm + start;
    int32_t id = lookup_any(tok, s, len);
    if (id < 0)
        id = tok->unk_id;
    int t = tok->type[id];
    if (t == PT_UNUSED) {
        const rev_merge *r = &e->rev[tok->unused_slot[id]];
        if (r->set) {
            rev_merge copy = *r;
            emit(e, copy.ls, copy.ll);
            emit(e, copy.rs, copy.rl);
            return;
        }
    }
    int is_unk = (t == PT_UNKNOWN);
    if (is_unk && tok->byte_fallback) {
        for (uint32_t i = 0; i < len; i++)
            e->ids[e->n_ids++] = tok->byte_id[(unsigned char)s[i]];
    } else if (!(is_unk && e->prev_unk)) {
        e->ids[e->n_ids++] = id;
    }
    e->prev_unk = is_unk;
}

/* The initial symbol at normalized byte i: a user-defined piece (longest match, frozen) or one
 * character. */
static sym first_symbol(const brt_tokenizer *tok, const char *norm, size_t m, size_t i, int32_t index)
{
    uint32_t l = 0;
    uint8_t freeze = 0;
    if (tok->has_user && tok->user_first[(unsigned char)norm[i]]) {
        for (size_t k = 0; k < tok->n_user_lens; k++) {
            uint32_t ul = tok->user_lens[k];
            if (ul > m - i)
                continue;
            int32_t id = table_find(tok, &tok->normal, norm + i, ul);
            if (id >= 0 && tok->type[id] == PT_USER) {
                l = ul, freeze = 1;
                break;
            }
        }
    }
    if (l == 0)
        l = (uint32_t)utf8_char_len((const unsigned char *)norm + i, m - i);
    /* A model's own normalization rules can emit bytes that are not UTF-8 (the text was checked,
     * the rules' output was not): such a byte is a symbol of its own (byte fallback or unknown),
     * never one of length 0, which would never advance. */
    if (l == 0)
        l = 1;
    return (sym){(uint32_t)i, l, index - 1, -1, freeze};
}

/* Room for n symbols (and 3n heap pairs: each merge pushes at most two pairs on top of the
 * initial n-1) and for `bytes` more ids (an id covers at least one byte). */
static int encoder_room(encoder *e, size_t n, size_t *cap_syms, size_t bytes, size_t *cap_ids)
{
    if (n > *cap_syms) {
        size_t cap = *cap_syms ? *cap_syms : 64;
        while (cap < n)
            cap *= 2;
        sym *s = realloc(e->syms, cap * sizeof *s);
        if (!s)
            return -1;
        e->syms = s;
        pair *h = realloc(e->heap, 3 * cap * sizeof *h);
        if (!h)
            return -1;
        e->heap = h;
        *cap_syms = cap;
    }
    if (e->n_ids + bytes + 1 > *cap_ids) {
        size_t cap = *cap_ids ? *cap_ids : 256;
        while (cap < e->n_ids + bytes + 1)
            cap *= 2;
        int32_t *ids = realloc(e->ids, cap * sizeof *ids);
        if (!ids)
            return -1;
        e->ids = ids;
        *cap_ids = cap;
    }
    return 0;
}

/* BPE over symbols [0, n) of e->syms (word by word when the model splits words), then their ids. */
static void merge_and_emit(encoder *e, int32_t n_syms)
{
    const brt_tokenizer *tok = e->tok;
    /* A pair across a word start is looked up but never found, so the words stay apart. */
    for (int32_t w = 0, w_end; w < n_syms; w = w_end) {
        w_end = tok->split_words ? w + 1 : n_syms;
        while (w_end < n_syms && !word_start(e, w_end))
            w_end++;
        for (int32_t i = w + 1; i < w_end; i++)
            try_pair(e, i - 1, i);
        while (e->n_heap > 0) {
            pair p = pair_heap_pop(e->heap, &e->n_heap);
            sym *l = &e->syms[p.left], *r = &e->syms[p.right];
            if (l->len == 0 || r->len == 0 || l->len + r->len != p.size)
                continue;
            l->len += r->len;
            l->next = r->next;
            if (r->next >= 0)
                e->syms[r->next].prev = p.left;
            r->len = 0;
            try_pair(e, l->prev, p.left);
            try_pair(e, p.left, l->next);
        }
    }
    for (int32_t i = n_syms ? 0 : -1; i >= 0; i = e->syms[i].next)
        emit(e, e->syms[i].start, e->syms[i].len);
}

brt_status brt_tokenizer_encode(const brt_tokenizer *tok, const char *text, size_t len, int add_bos,
                                int32_t **ids, size_t *n_ids, brt_err *err)
{
    return brt_tokenizer_encode_max(tok, text, len, add_bos, SIZE_MAX, ids, n_ids, err);
}

brt_status brt_tokenizer_encode_max(const brt_tokenizer *tok, const char *text, size_t len, int add_bos,
                                    size_t max_ids, int32_t **ids, size_t *n_ids, brt_err *err)
{
    if (tok->hf)
        return brt_hf_encode_max(tok->hf, text, len, add_bos, max_ids, ids, n_ids, err);
    *ids = NULL;
    *n_ids = 0;
    if (len > MAX_TEXT_BYTES)
        return brt_errf(err, BRT_ERR_RANGE, "tokenizer: text of %zu bytes exceeds the %zu limit",
                        len, MAX_TEXT_BYTES);
    if (add_bos && tok->bos_id < 0)
        return brt_errf(err, BRT_ERR_INVALID, "tokenizer: BOS requested but the model has none");
    for (size_t i = 0; i < len;) {
        size_t l = utf8_char_len((const unsigned char *)text + i, len - i);
        if (l == 0)
            return brt_errf(err, BRT_ERR_INVALID,
                            "tokenizer: invalid UTF-8 at byte offset %zu (byte 0x%02X)", i,
                            (unsigned char)text[i]);
        i += l;
    }

    encoder e = {.tok = tok};
    char *norm = malloc(3 * len + SPACE_SYMBOL_LEN + 1);
    if (!norm)
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    size_t m = normalize(tok, text, len, norm);
    e.norm = norm;
    e.rev = tok->n_unused ? calloc((size_t)tok->n_unused, sizeof *e.rev) : NULL;
    size_t cap_syms = 0, cap_ids = 0;
    int oom = tok->n_unused && !e.rev;
    if (!oom && add_bos) {
        oom = encoder_room(&e, 0, &cap_syms, 0, &cap_ids) != 0;
        if (!oom)
            e.ids[e.n_ids++] = tok->bos_id;
    }
    /* With words split, each word is merged and emitted as soon as it is complete: memory is one
     * word's symbols, not the text's, and the limit stops a huge text early. Otherwise (UNUSED
     * pieces remember pairs across the whole text) the whole text is one run. */
    int32_t n_syms = 0;
    size_t run_start = 0;
    for (size_t i = 0; i < m && !oom && e.n_ids <= max_ids;) {
        sym s = first_symbol(tok, norm, m, i, n_syms);
        if (encoder_room(&e, (size_t)n_syms + 1, &cap_syms, 0, &cap_ids) != 0) {
            oom = 1;
            break;
        }
        e.syms[n_syms] = s;
        if (tok->split_words && n_syms > 0 && word_start(&e, n_syms)) {
            e.syms[n_syms - 1].next = -1; /* the word before it is complete */
            if (encoder_room(&e, (size_t)n_syms, &cap_syms, i - run_start, &cap_ids) != 0) {
                oom = 1;
                break;
            }
            merge_and_emit(&e, n_syms);
            s.start = (uint32_t)i;
            s.prev = -1;
            e.syms[0] = s;
            n_syms = 0;
            run_start = i;
        } else if (n_syms > 0)
            e.syms[n_syms - 1].next = n_syms;
        n_syms++;
        i += s.len;
    }
    if (!oom && e.n_ids <= max_ids && n_syms > 0) {
        oom = encoder_room(&e, (size_t)n_syms, &cap_syms, m - run_start, &cap_ids) != 0;
        if (!oom)
            merge_and_emit(&e, n_syms);
    }
    if (!oom && !e.ids) /* empty text without BOS: never NULL on success */
        oom = encoder_room(&e, 0, &cap_syms, 0, &cap_ids) != 0;
    free(norm), free(e.syms), free(e.heap), free(e.rev);
    if (oom) {
        free(e.ids);
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    }
    if (e.n_ids > max_ids) {
        free(e.ids);
        return brt_errf(err, BRT_ERR_RANGE, "the text (%zu bytes) is more than %zu tokens", len, max_ids);
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return BRT_OK;
}

/* ---- decode ----------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sbuf_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* A piece's text with every U+2581 turned back into ' '. */
static int put_piece(sbuf *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= SPACE_SYMBOL_LEN && memcmp(s + i, SPACE_SYMBOL, SPACE_SYMBOL_LEN) == 0) {
            if (sbuf_put(b, s + run, i - run) || sbuf_put(b, " ", 1))
                return -1;
            i += SPACE_SYMBOL_LEN;
            run = i;
        } else {
            i++;
        }
    }
    return sbuf_put(b, s + run, n - run);
}

brt_status brt_tokenizer_decode(const brt_tokenizer *tok, const int32_t *ids, size_t n, char **text,
                                size_t *len, brt_err *err)
{
    if (tok->hf)
        return brt_hf_decode(tok->hf, ids, n, text, len, err);
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->n)
            return brt_errf(err, BRT_ERR_RANGE,
                            "tokenizer: token id %d at position %zu is out of range [0, %d)",
                            ids[i], i, tok->n);
    sbuf b = {0};
    int fail = sbuf_put(&b, "", 0);
    int stripped = 0;
    for (size_t i = 0; i < n && !fail;) {
        int32_t id = ids[i];
        int t = tok->type[id];
        if (t == PT_BYTE) {
            /* A run of byte pieces is one byte string decoded as UTF-8; each byte that does not
             * start a well-formed character becomes U+FFFD. */
            size_t end = i;
            while (end < n && tok->type[ids[end]] == PT_BYTE)
                end++;
            while (i < end && !fail) {
                unsigned char w[4];
                size_t nw = 0;
                for (; nw < 4 && i + nw < end; nw++)
                    w[nw] = (unsigned char)tok->byte_val[ids[i + nw]];
                size_t cl = utf8_char_len(w, nw);
                if (cl == 0) {
                    fail = sbuf_put(&b, "\xEF\xBF\xBD", 3);
                    i += 1;
                } else {
                    fail = sbuf_put(&b, (const char *)w, cl);
                    i += cl;
                }
            }
            continue;
        }
        i++;
        if (t == PT_CONTROL)
            continue;
        if (t == PT_UNKNOWN) {
            fail = sbuf_put(&b, tok->unk_surface, tok->unk_surface_len);
            continue;
        }
        const char *s = tok->pool + tok->off[id];
        size_t l = tok->len[id];
        /* The dummy prefix the encoder added comes back as a leading space: drop it while
         * nothing has been output yet (control pieces such as BOS output nothing). Only one
         * space is the dummy prefix: "  x" encodes as [▁, ▁x] when leading spaces are kept
         * and must decode to " x"; with remove_extra_whitespaces no leading space can be
         * real, so every one goes. */
        if (b.n == 0 && tok->add_dummy_prefix && (tok->remove_extra_ws || !stripped) &&
            l >= SPACE_SYMBOL_LEN && memcmp(s, SPACE_SYMBOL, SPACE_SYMBOL_LEN) == 0) {
            s += SPACE_SYMBOL_LEN;
            l -= SPACE_SYMBOL_LEN;
            stripped = 1;
        }
        fail = put_piece(&b, s, l);
    }
    if (fail) {
        free(b.p);
        return brt_errf(err, BRT_ERR_NOMEM, "tokenizer: out of memory decoding %zu tokens", n);
    }
    b.p[b.n] = '\0';
    *text = b.p;
    *len = b.n;
    return BRT_OK;
}

size_t brt_tokenizer_token_bytes(const brt_tokenizer *tok, int32_t id, char *buf, size_t cap)
{
    if (tok->hf)
        return brt_hf_token_bytes(tok->hf, id, buf, cap);
    if (id < 0 || id >= tok->n || cap == 0)
        return 0;
    int t = tok->type[id];
    if (t == PT_CONTROL)
        return 0;
    if (t == PT_BYTE) {
        buf[0] = (char)tok->byte_val[id];
        return 1;
    }
    if (t == PT_UNKNOWN) {
        size_t l = tok->unk_surface_len < cap ? tok->unk_surface_len : cap;
        memcpy(buf, tok->unk_surface, l);
        return l;
    }
    const char *s = tok->pool + tok->off[id];
    size_t n = tok->len[id], o = 0;
    for (size_t i = 0; i < n && o < cap;) {
        if (n - i >= SPACE_SYMBOL_LEN && memcmp(s + i, SPACE_SYMBOL, SPACE_SYMBOL_LEN) == 0) {
            buf[o++] = ' ';
            i += SPACE_SYMBOL_LEN;
        } else {
            buf[o++] = s[i++];
        }
    }
    return o;
}

brt_status brt_tokenizer_join(const brt_tokenizer *tok, const int32_t *ids, size_t n, char **text, size_t *len,
                              brt_err *err)
{
    brt_buf b = {0};
    size_t cap = brt_tokenizer_max_token_bytes(tok) + 1;
    char *piece = malloc(cap);
    if (!piece)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory joining %zu tokens", n);
    for (size_t i = 0; i < n; i++) {
        size_t k = brt_tokenizer_token_bytes(tok, ids[i], piece, cap);
        if (brt_buf_append(&b, piece, k) != 0) {
            free(piece);
            brt_buf_free(&b);
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory joining %zu tokens", n);
        }
    }
    free(piece);
    if (brt_buf_append(&b, "", 0) != 0) {
        brt_buf_free(&b);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    *text = b.data;
    *len = b.len;
    return BRT_OK;
}
