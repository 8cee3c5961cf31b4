#include "sched/batchio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/strmap.h"

#define MAX_STOP 4
#define MAX_LOGPROBS 5 /* OpenAI's limit for /v1/completions */

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. As strict as jansson (no overlongs,
 * no surrogates, nothing above U+10FFFF), so whatever passes here json_stringn accepts. */
static size_t utf8_seq_len(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

static int utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

/* A JSON string for text that should be UTF-8 but may not be (a completion cut mid-character,
 * a message cut by a fixed buffer): bad bytes become U+FFFD rather than failing a finished job. */
json_t *brt_json_string_lossy(const char *s, size_t len)
{
    if (utf8_valid(s, len))
        return json_stringn(s, len);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n) {
            memcpy(buf + o, p + i, n);
            o += n;
            i += n;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *v = json_stringn(buf, o);
    free(buf);
    return v;
}

/* OpenAI's rendering of a token that is not valid UTF-8 on its own: "bytes:" then the bytes the
 * way Python's bytes repr writes them (printable ASCII kept, '\' doubled, the rest \xNN). */
static char *render_token(const char *tok)
{
    size_t len = strlen(tok);
    if (utf8_valid(tok, len))
        return strdup(tok);
    char *out = malloc(6 + len * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    memcpy(out, "bytes:", 6);
    o = 6;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (c >= 0x20 && c < 0x7F) {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- request parsing ---------------------------------------------------------------------- */

void brt_request_free(brt_request *r)
{
    if (!r)
        return;
    free(r->custom_id);
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < MAX_STOP; i++)
        free(r->stop[i]);
    free(r->model);
    memset(r, 0, sizeof *r);
}

static brt_status nomem(brt_err *err, size_t line_no)
{
    return brt_errf(err, BRT_ERR_NOMEM, "line %zu: out of memory", line_no);
}

static brt_status parse_prompt(const json_t *v, size_t ln, brt_request *r, brt_err *err)
{
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.prompt is empty", ln);
        r->prompt = strdup(json_string_value(v));
        return r->prompt ? BRT_OK : nomem(err, ln);
    }
    if (!json_is_array(v))
        return brt_errf(err, BRT_ERR_INVALID,
                        "line %zu: body.prompt must be a string or an array of token ids, got %s",
                        ln, json_type_name(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.prompt is empty", ln);
    /* OpenAI reads an array of strings (or of id arrays) as a batch of prompts with one
     * response each; a batch line here has exactly one response, so ask for one per line. */
    const json_t *first = json_array_get(v, 0);
    if (json_is_string(first) || json_is_array(first))
        return brt_errf(err, BRT_ERR_INVALID,
                        "line %zu: body.prompt is an array of %s (a batch of prompts); "
                        "beaconrt takes one prompt per line: give each its own line and custom_id",
                        ln, json_is_string(first) ? "strings" : "arrays");
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids)
        return nomem(err, ln);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e))
            return brt_errf(err, BRT_ERR_INVALID,
                            "line %zu: body.prompt[%zu] must be an integer token id, got %s", ln, i,
                            json_type_name(e));
        json_int_t id = json_integer_value(e);
        if (id < 0 || id > INT32_MAX)
            return brt_errf(err, BRT_ERR_RANGE,
                            "line %zu: body.prompt[%zu] = %" JSON_INTEGER_FORMAT
                            " is not a valid token id",
                            ln, i, id);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = n;
    return BRT_OK;
}

static brt_status parse_stop(const json_t *v, size_t ln, brt_request *r, brt_err *err)
{
    if (json_is_null(v))
        return BRT_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.stop is an empty string", ln);
        r->stop[0] = strdup(json_string_value(v));
        if (!r->stop[0])
            return nomem(err, ln);
        r->n_stop = 1;
        return BRT_OK;
    }
    if (!json_is_array(v))
        return brt_errf(err, BRT_ERR_INVALID,
                        "line %zu: body.stop must be a string, an array of strings or null, got %s",
                        ln, json_type_name(v));
    size_t n = json_array_size(v);
    if (n > MAX_STOP)
        return brt_errf(err, BRT_ERR_RANGE,
                        "line %zu: body.stop has %zu sequences, at most %d are allowed", ln, n,
                        MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.stop[%zu] must be a string, got %s",
                            ln, i, json_type_name(e));
        if (json_string_length(e) == 0)
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.stop[%zu] is an empty string",
                            ln, i);
        r->stop[i] = strdup(json_string_value(e));
        if (!r->stop[i])
            return nomem(err, ln);
        r->n_stop = (int)i + 1;
    }
    return BRT_OK;
}

static brt_status get_number(const json_t *v, const char *name, size_t ln, double *out, brt_err *err)
{
    if (!json_is_number(v))
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.%s must be a number, got %s", ln,
                        name, json_type_name(v));
    *out = json_number_value(v);
    return BRT_OK;
}

/* OpenAI /v1/completions fields that beaconrt does not implement. Accepted only with the value
 * that means "off", because SDK-written batch files often spell the defaults out. */
static int is_noop_unsupported(const char *key, const json_t *v)
{
    if (json_is_null(v))
        return 1;
    if (!strcmp(key, "n") || !strcmp(key, "best_of"))
        return json_is_integer(v) && json_integer_value(v) == 1;
    if (!strcmp(key, "stream"))
        return json_is_false(v);
    if (!strcmp(key, "logit_bias"))
        return json_is_object(v) && json_object_size(v) == 0;
    return 0;
}

static const char *const unsupported_fields[] = {"n", "best_of", "suffix", "logit_bias", "stream",
                                                 "stream_options"};

static brt_status parse_body_field(const char *key, const json_t *v, size_t ln, brt_request *r,
                                   brt_err *err)
{
    /* null means "the default" for every optional OpenAI field */
    if (!strcmp(key, "prompt")) {
        if (json_is_null(v))
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.prompt is null", ln);
        return parse_prompt(v, ln, r, err);
    }
    if (!strcmp(key, "model")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_string(v))
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.model must be a string, got %s",
                            ln, json_type_name(v));
        r->model = strdup(json_string_value(v));
        return r->model ? BRT_OK : nomem(err, ln);
    }
    if (!strcmp(key, "max_tokens")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_integer(v))
            return brt_errf(err, BRT_ERR_INVALID,
                            "line %zu: body.max_tokens must be an integer, got %s", ln,
                            json_type_name(v));
        json_int_t m = json_integer_value(v);
        if (m < 0 || m > INT32_MAX)
            return brt_errf(err, BRT_ERR_RANGE,
                            "line %zu: body.max_tokens = %" JSON_INTEGER_FORMAT
                            " is out of range [0, %d]",
                            ln, m, INT32_MAX);
        r->max_tokens = (int32_t)m;
        return BRT_OK;
    }
    if (!strcmp(key, "temperature")) {
        if (json_is_null(v))
            return BRT_OK;
        double t = 0.0;
        BRT_TRY(get_number(v, key, ln, &t, err));
        if (!(t >= 0.0 && t <= 2.0))
            return brt_errf(err, BRT_ERR_RANGE,
                            "line %zu: body.temperature = %g is out of range [0, 2]", ln, t);
        r->temperature = (float)t;
        return BRT_OK;
    }
    if (!strcmp(key, "top_p")) {
        if (json_is_null(v))
            return BRT_OK;
        double p = 0.0;
        BRT_TRY(get_number(v, key, ln, &p, err));
        /* checked as float too: a positive double below FLT_MIN would become 0 */
        if (!(p > 0.0 && p <= 1.0) || (float)p <= 0.0f)
            return brt_errf(err, BRT_ERR_RANGE, "line %zu: body.top_p = %g is out of range (0, 1]",
                            ln, p);
        r->top_p = (float)p;
        return BRT_OK;
    }
    if (!strcmp(key, "seed")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_integer(v))
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.seed must be an integer, got %s",
                            ln, json_type_name(v));
        r->has_seed = 1;
        r->seed = (uint64_t)json_integer_value(v);
        return BRT_OK;
    }
    if (!strcmp(key, "stop"))
        return parse_stop(v, ln, r, err);
    if (!strcmp(key, "echo")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_boolean(v))
            return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.echo must be a boolean, got %s",
                            ln, json_type_name(v));
        r->echo = json_is_true(v);
        return BRT_OK;
    }
    if (!strcmp(key, "logprobs")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_integer(v))
            return brt_errf(err, BRT_ERR_INVALID,
                            "line %zu: body.logprobs must be an integer 0..%d or null, got %s%s", ln,
                            MAX_LOGPROBS, json_type_name(v),
                            json_is_boolean(v) ? " (the boolean form belongs to the chat API)" : "");
        json_int_t k = json_integer_value(v);
        if (k < 0 || k > MAX_LOGPROBS)
            return brt_errf(err, BRT_ERR_RANGE,
                            "line %zu: body.logprobs = %" JSON_INTEGER_FORMAT
                            " is out of range [0, %d]",
                            ln, k, MAX_LOGPROBS);
        r->logprobs = (int)k;
        return BRT_OK;
    }
    if (!strcmp(key, "user")) {
        if (json_is_null(v) || json_is_string(v))
            return BRT_OK;
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.user must be a string, got %s", ln,
                        json_type_name(v));
    }
    if (!strcmp(key, "frequency_penalty") || !strcmp(key, "presence_penalty")) {
        if (json_is_null(v))
            return BRT_OK;
        double p = 0.0;
        BRT_TRY(get_number(v, key, ln, &p, err));
        if (p != 0.0)
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "line %zu: body.%s = %g is not supported (only 0)", ln, key, p);
        return BRT_OK;
    }
    for (size_t i = 0; i < sizeof unsupported_fields / sizeof unsupported_fields[0]; i++)
        if (!strcmp(key, unsupported_fields[i])) {
            if (is_noop_unsupported(key, v))
                return BRT_OK;
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "line %zu: body.%s is not supported by beaconrt; remove it", ln, key);
        }
    return brt_errf(err, BRT_ERR_INVALID,
                    "line %zu: unknown field body.%s (supported: model, prompt, max_tokens, "
                    "temperature, top_p, seed, stop, echo, logprobs, user)",
                    ln, key);
}

static brt_status parse_request(const json_t *root, size_t ln, brt_request *r, brt_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v)
    {
        if (strcmp(key, "custom_id") && strcmp(key, "method") && strcmp(key, "url") &&
            strcmp(key, "body"))
            return brt_errf(err, BRT_ERR_INVALID,
                            "line %zu: unknown top-level field \"%s\" (expected custom_id, method, "
                            "url, body)",
                            ln, key);
    }
    v = json_object_get(root, "custom_id");
    if (!v)
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: custom_id is missing", ln);
    if (!json_is_string(v))
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: custom_id must be a string, got %s", ln,
                        json_type_name(v));
    if (json_string_length(v) == 0)
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: custom_id is empty", ln);

    v = json_object_get(root, "method");
    if (!v)
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: method is missing (expected \"POST\")", ln);
    if (!json_is_string(v) || strcmp(json_string_value(v), "POST"))
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: method must be \"POST\", got %s%s%s", ln,
                        json_is_string(v) ? "\"" : "",
                        json_is_string(v) ? json_string_value(v) : json_type_name(v),
                        json_is_string(v) ? "\"" : "");

    v = json_object_get(root, "url");
    if (!v)
        return brt_errf(err, BRT_ERR_INVALID,
                        "line %zu: url is missing (expected \"/v1/completions\")", ln);
    if (!json_is_string(v) || strcmp(json_string_value(v), "/v1/completions"))
        return brt_errf(err,
                        json_is_string(v) ? BRT_ERR_UNSUPPORTED : BRT_ERR_INVALID,
                        "line %zu: url must be \"/v1/completions\" (the only endpoint batch mode "
                        "serves), got %s%s%s",
                        ln, json_is_string(v) ? "\"" : "",
                        json_is_string(v) ? json_string_value(v) : json_type_name(v),
                        json_is_string(v) ? "\"" : "");

    const json_t *body = json_object_get(root, "body");
    if (!body)
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: body is missing", ln);
    if (!json_is_object(body))
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: body must be an object, got %s", ln,
                        json_type_name(body));

    r->max_tokens = 16;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->logprobs = -1;
    json_object_foreach((json_t *)body, key, v)
    {
        BRT_TRY(parse_body_field(key, v, ln, r, err));
    }
    if (!r->prompt && !r->prompt_ids)
        return brt_errf(err, BRT_ERR_INVALID, "line %zu: body.prompt is missing", ln);
    return BRT_OK;
}

brt_status brt_batch_parse_line(const char *line, size_t len, size_t line_no, brt_request *out,
                                brt_err *err)
{
    memset(out, 0, sizeof *out);
    out->line_no = line_no;
    json_error_t je;
    /* DECODE_ANY so that `42` gets "not an object" rather than jansson's parser message */
    json_t *root = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return brt_errf(err, BRT_ERR_FORMAT, "line %zu: invalid JSON at column %d: %s", line_no,
                        je.column, je.text);
    if (!json_is_object(root)) {
        brt_status st = brt_errf(err, BRT_ERR_FORMAT, "line %zu: expected a JSON object, got %s",
                                 line_no, json_type_name(root));
        json_decref(root);
        return st;
    }
    /* read custom_id first: the caller needs it to report any later error under it */
    const json_t *id = json_object_get(root, "custom_id");
    char *custom_id = NULL;
    if (json_is_string(id) && json_string_length(id) > 0) {
        custom_id = strdup(json_string_value(id));
        if (!custom_id) {
            json_decref(root);
            return nomem(err, line_no);
        }
    }
    brt_status st = parse_request(root, line_no, out, err);
    json_decref(root);
    if (st != BRT_OK)
        brt_request_free(out);
    out->line_no = line_no;
    out->custom_id = custom_id;
    return st;
}

/* ---- whole-file reader -------------------------------------------------------------------- */

void brt_batch_free(brt_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        brt_request_free(&b->reqs[i]);
    for (size_t i = 0; i < b->n_bad; i++) {
        free(b->bad[i].custom_id);
        free(b->bad[i].message);
    }
    free(b->reqs);
    free(b->bad);
    memset(b, 0, sizeof *b);
}

typedef struct {
    brt_batch *b;
    size_t cap_reqs, cap_bad;
    brt_strmap ids; /* custom_id -> the line that claimed it */
} reader;

static int push_req(reader *rd, brt_request *r)
{
    brt_batch *b = rd->b;
    if (b->n == rd->cap_reqs) {
        size_t cap = rd->cap_reqs ? rd->cap_reqs * 2 : 64;
        brt_request *p = realloc(b->reqs, cap * sizeof *p);
        if (!p)
            return -1;
        b->reqs = p;
        rd->cap_reqs = cap;
    }
    b->reqs[b->n++] = *r;
    memset(r, 0, sizeof *r);
    return 0;
}

/* Takes ownership of custom_id (NULL: a synthetic id is given after the whole file is read). */
static int push_bad(reader *rd, size_t line_no, char *custom_id, brt_status st, const char *msg)
{
    brt_batch *b = rd->b;
    if (b->n_bad == rd->cap_bad) {
        size_t cap = rd->cap_bad ? rd->cap_bad * 2 : 16;
        struct brt_batch_bad *p = realloc(b->bad, cap * sizeof *p);
        if (!p) {
            free(custom_id);
            return -1;
        }
        b->bad = p;
        rd->cap_bad = cap;
    }
    char *m = strdup(msg);
    if (!m) {
        free(custom_id);
        return -1;
    }
    b->bad[b->n_bad++] = (struct brt_batch_bad){line_no, custom_id, st, m};
    return 0;
}

/* Runs after the whole file is read, so that a real id anywhere in the file wins over a
 * synthetic one and ids stay a function of the input alone. */
static int assign_synthetic_ids(reader *rd)
{
    brt_batch *b = rd->b;
    char buf[64];
    for (size_t i = 0; i < b->n_bad; i++) {
        if (b->bad[i].custom_id)
            continue;
        snprintf(buf, sizeof buf, "line-%zu", b->bad[i].line_no);
        for (unsigned k = 2; brt_strmap_get(&rd->ids, buf, NULL); k++)
            snprintf(buf, sizeof buf, "line-%zu#%u", b->bad[i].line_no, k);
        if (brt_strmap_put(&rd->ids, buf, (intptr_t)b->bad[i].line_no) != 0)
            return -1;
        b->bad[i].custom_id = strdup(buf);
        if (!b->bad[i].custom_id)
            return -1;
    }
    return 0;
}

static int handle_line(reader *rd, const char *p, size_t len, size_t line_no)
{
    brt_request r;
    brt_err e;
    brt_err_clear(&e);
    brt_status st = brt_batch_parse_line(p, len, line_no, &r, &e);
    if (st == BRT_ERR_NOMEM) {
        brt_request_free(&r);
        return -1;
    }
    intptr_t first = 0;
    int taken = r.custom_id && brt_strmap_get(&rd->ids, r.custom_id, &first);
    if (st == BRT_OK && !taken) {
        if (brt_strmap_put(&rd->ids, r.custom_id, (intptr_t)line_no) != 0 || push_req(rd, &r) != 0) {
            brt_request_free(&r);
            return -1;
        }
        return 0;
    }
    if (taken) {
        /* the repeat is reported under a synthetic id: the output may hold each id only once */
        char msg[BRT_ERR_MSG_MAX + 256];
        if (st == BRT_OK)
            snprintf(msg, sizeof msg, "line %zu: custom_id \"%s\" duplicates line %zu", line_no,
                     r.custom_id, (size_t)first);
        else
            snprintf(msg, sizeof msg, "%s (and its custom_id \"%s\" duplicates line %zu)", e.msg,
                     r.custom_id, (size_t)first);
        brt_request_free(&r);
        return push_bad(rd, line_no, NULL, st == BRT_OK ? BRT_ERR_INVALID : st, msg);
    }
    char *id = r.custom_id;
    r.custom_id = NULL;
    brt_request_free(&r);
    if (id && brt_strmap_put(&rd->ids, id, (intptr_t)line_no) != 0) {
        free(id);
        return -1;
    }
    return push_bad(rd, line_no, id, st, e.msg);
}

brt_status brt_batch_read(const char *path, brt_batch *out, brt_err *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return brt_errf(err, BRT_ERR_IO, "batch input %s: cannot open: %s", path, strerror(errno));
    reader rd = {.b = out};
    brt_strmap_init(&rd.ids);
    char *buf = NULL;
    size_t cap = 0, line_no = 0;
    ssize_t got;
    brt_status st = BRT_OK;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        line_no++;
        const char *p = buf;
        size_t len = (size_t)got;
        if (len && p[len - 1] == '\n')
            len--;
        if (len && p[len - 1] == '\r')
            len--;
        if (line_no == 1 && len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) {
            p += 3;
            len -= 3;
        }
        if (is_blank(p, len))
            continue;
        if (handle_line(&rd, p, len, line_no) != 0) {
            st = brt_errf(err, BRT_ERR_NOMEM, "batch input %s: out of memory at line %zu", path,
                          line_no);
            break;
        }
    }
    if (st == BRT_OK && ferror(f))
        st = brt_errf(err, BRT_ERR_IO, "batch input %s: read failed after line %zu: %s", path,
                      line_no, strerror(errno));
    else if (st == BRT_OK && !feof(f))
        st = brt_errf(err, BRT_ERR_NOMEM, "batch input %s: out of memory reading line %zu", path,
                      line_no + 1);
    if (st == BRT_OK && assign_synthetic_ids(&rd) != 0)
        st = brt_errf(err, BRT_ERR_NOMEM, "batch input %s: out of memory", path);
    free(buf);
    fclose(f);
    brt_strmap_free(&rd.ids);
    if (st != BRT_OK)
        brt_batch_free(out);
    return st;
}

/* ---- result lines ------------------------------------------------------------------------- */

/* json_object_set_new that remembers a failed allocation instead of checking each call */
static void put(json_t *obj, const char *key, json_t *v, int *bad)
{
    if (!v || json_object_set_new(obj, key, v) != 0)
        *bad = 1;
}

static void append(json_t *arr, json_t *v, int *bad)
{
    if (!v || json_array_append_new(arr, v) != 0)
        *bad = 1;
}

static json_t *logprob_json(float x) { return isfinite(x) ? json_real((double)x) : json_null(); }

static json_t *with_prefix(const char *prefix, const char *id)
{
    size_t a = strlen(prefix), b = strlen(id);
    char *s = malloc(a + b + 1);
    if (!s)
        return NULL;
    memcpy(s, prefix, a);
    memcpy(s + a, id, b + 1);
    json_t *v = brt_json_string_lossy(s, a + b);
    free(s);
    return v;
}

/* Compact, one line, insertion order, float32 round-trip; caller gets "...\n". */
static brt_status dump_line(json_t *root, char **line, brt_err *err)
{
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!s)
        return brt_errf(err, BRT_ERR_NOMEM, "result line: out of memory");
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return brt_errf(err, BRT_ERR_NOMEM, "result line: out of memory");
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *line = t;
    return BRT_OK;
}

static json_t *top_row(const brt_completion *c, size_t i, int *bad)
{
    if (c->top_k <= 0 || isnan(c->token_logprobs[i]))
        return json_null();
    json_t *row = json_object();
    if (!row)
        return NULL;
    for (int k = 0; k < c->top_k; k++) {
        size_t at = i * (size_t)c->top_k + (size_t)k;
        if (isnan(c->top_logprobs[at]) || !c->top_tokens[at])
            continue;
        char *key = render_token(c->top_tokens[at]);
        if (!key) {
            *bad = 1;
            continue;
        }
        if (!json_object_get(row, key))
            put(row, key, logprob_json(c->top_logprobs[at]), bad);
        free(key);
    }
    if (json_object_size(row) == 0) {
        json_decref(row);
        return json_null();
    }
    return row;
}

static json_t *logprobs_json(const brt_completion *c, int *bad)
{
    json_t *lp = json_object(), *toks = json_array(), *lps = json_array(), *tops = json_array(),
           *offs = json_array();
    put(lp, "tokens", toks, bad);
    put(lp, "token_logprobs", lps, bad);
    put(lp, "top_logprobs", tops, bad);
    put(lp, "text_offset", offs, bad);
    if (*bad)
        return lp;
    for (size_t i = 0; i < c->n_tokens; i++) {
        char *t = render_token(c->tokens[i] ? c->tokens[i] : "");
        append(toks, t ? json_string(t) : NULL, bad);
        free(t);
        append(lps, logprob_json(c->token_logprobs[i]), bad);
        append(tops, top_row(c, i, bad), bad);
        append(offs, json_integer(c->text_offset[i]), bad);
    }
    return lp;
}

brt_status brt_batch_format_success(const char *custom_id, const char *model, int64_t created,
                                    const brt_completion *c, char **line, brt_err *err)
{
    *line = NULL;
    if (!custom_id || !*custom_id || !model || !c || (!c->text && c->text_len))
        return brt_errf(err, BRT_ERR_INVALID, "result line: missing custom_id, model or text");
    if (!c->finish_reason || (strcmp(c->finish_reason, "length") && strcmp(c->finish_reason, "stop")))
        return brt_errf(err, BRT_ERR_INVALID,
                        "result line for %s: finish_reason must be \"length\" or \"stop\", got %s",
                        custom_id, c->finish_reason ? c->finish_reason : "NULL");
    if (c->tokens && (!c->token_logprobs || !c->text_offset || c->top_k < 0 ||
                      (c->top_k > 0 && (!c->top_tokens || !c->top_logprobs))))
        return brt_errf(err, BRT_ERR_INVALID,
                        "result line for %s: logprobs arrays missing for %zu tokens (top_k %d)",
                        custom_id, c->n_tokens, c->top_k);

    int bad = 0;
    json_t *root = json_object();
    if (!root)
        return brt_errf(err, BRT_ERR_NOMEM, "result line: out of memory");
    put(root, "id", with_prefix("batch_req_", custom_id), &bad);
    put(root, "custom_id", brt_json_string_lossy(custom_id, strlen(custom_id)), &bad);
    json_t *resp = json_object();
    put(root, "response", resp, &bad);
    put(root, "error", json_null(), &bad);
    if (!bad) {
        put(resp, "status_code", json_integer(200), &bad);
        put(resp, "request_id", with_prefix("req_", custom_id), &bad);
        json_t *body = json_object();
        put(resp, "body", body, &bad);
        if (!bad) {
            put(body, "id", with_prefix("cmpl-", custom_id), &bad);
            put(body, "object", json_string("text_completion"), &bad);
            put(body, "created", json_integer(created), &bad);
            put(body, "model", brt_json_string_lossy(model, strlen(model)), &bad);
            json_t *choices = json_array(), *choice = json_object();
            put(body, "choices", choices, &bad);
            append(choices, choice, &bad);
            json_t *usage = json_object();
            put(body, "usage", usage, &bad);
            if (!bad) {
                put(choice, "index", json_integer(0), &bad);
                put(choice, "text", brt_json_string_lossy(c->text ? c->text : "", c->text_len), &bad);
                put(choice, "finish_reason", json_string(c->finish_reason), &bad);
                put(choice, "logprobs", c->tokens ? logprobs_json(c, &bad) : json_null(), &bad);
                put(usage, "prompt_tokens", json_integer(c->prompt_tokens), &bad);
                put(usage, "completion_tokens", json_integer(c->completion_tokens), &bad);
                put(usage, "total_tokens",
                    json_integer((json_int_t)c->prompt_tokens + c->completion_tokens), &bad);
            }
        }
    }
    if (bad) {
        json_decref(root);
        return brt_errf(err, BRT_ERR_NOMEM, "result line for %s: out of memory", custom_id);
    }
    return dump_line(root, line, err);
}

brt_status brt_batch_format_error(const char *custom_id, const char *code, const char *message,
                                  char **line, brt_err *err)
{
    *line = NULL;
    if (!custom_id || !*custom_id || !code)
        return brt_errf(err, BRT_ERR_INVALID, "error line: missing custom_id or code");
    if (!message)
        message = "";
    int bad = 0;
    json_t *root = json_object();
    if (!root)
        return brt_errf(err, BRT_ERR_NOMEM, "error line: out of memory");
    put(root, "id", with_prefix("batch_req_", custom_id), &bad);
    put(root, "custom_id", brt_json_string_lossy(custom_id, strlen(custom_id)), &bad);
    put(root, "response", json_null(), &bad);
    json_t *e = json_object();
    put(root, "error", e, &bad);
    if (!bad) {
        put(e, "code", brt_json_string_lossy(code, strlen(code)), &bad);
        put(e, "message", brt_json_string_lossy(message, strlen(message)), &bad);
    }
    if (bad) {
        json_decref(root);
        return brt_errf(err, BRT_ERR_NOMEM, "error line for %s: out of memory", custom_id);
    }
    return dump_line(root, line, err);
}

/* ---- journal ------------------------------------------------------------------------------ */

struct brt_journal {
    int fd;
    char *path;
    brt_strmap done;  /* custom_id -> 1-based line in the file */
    size_t n_lines;   /* lines in the file, blank ones included */
    off_t size;       /* bytes of good lines: where the next append lands */
    size_t truncated; /* bytes cut off by open */
    int broken;       /* an append failed half-way: the file's state is unknown */
};

/* Makes a just-created file's name durable; best effort, some filesystems refuse it. */
static void fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

enum line_kind { LINE_GOOD, LINE_BLANK, LINE_TORN, LINE_FOREIGN };

/* GOOD: a complete result line. TORN: what a crash mid-append can leave (no '\n', not JSON,
 * no custom_id). FOREIGN: a complete JSON object with a custom_id that is not a result line -
 * most likely the input file given as output; never cut, since no torn write looks like that. */
static enum line_kind classify(const char *s, size_t n, char **id, char *why, size_t why_cap)
{
    *id = NULL;
    int has_nl = n && s[n - 1] == '\n';
    if (has_nl && is_blank(s, n))
        return LINE_BLANK;
    json_error_t je;
    /* a completion's text may hold a NUL byte (a <0x00> token), written as \u0000 */
    json_t *root = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    enum line_kind k = LINE_TORN;
    if (!root)
        snprintf(why, why_cap, "invalid JSON at column %d: %s", je.column, je.text);
    else if (!json_is_object(root))
        snprintf(why, why_cap, "not a JSON object");
    else {
        const json_t *cid = json_object_get(root, "custom_id");
        if (!json_is_string(cid) || json_string_length(cid) == 0)
            snprintf(why, why_cap, "no custom_id");
        else if (!json_object_get(root, "response") || !json_object_get(root, "error")) {
            snprintf(why, why_cap, "custom_id \"%.200s\" without response/error: not a result line",
                     json_string_value(cid));
            k = LINE_FOREIGN;
        } else if (!has_nl)
            snprintf(why, why_cap, "no trailing newline");
        else {
            *id = strdup(json_string_value(cid));
            k = *id ? LINE_GOOD : LINE_TORN;
            if (!*id)
                snprintf(why, why_cap, "out of memory");
        }
    }
    json_decref(root);
    return k;
}

static brt_status journal_scan(brt_journal *j, brt_err *err)
{
    int dfd = dup(j->fd);
    FILE *f = dfd >= 0 ? fdopen(dfd, "rb") : NULL;
    if (!f) {
        if (dfd >= 0)
            close(dfd);
        return brt_errf(err, BRT_ERR_IO, "journal %s: cannot read: %s", j->path, strerror(errno));
    }
    rewind(f);
    char *buf = NULL;
    size_t cap = 0, line_no = 0;
    off_t pos = 0, good_end = 0;
    size_t torn_line = 0; /* a torn line seen; fine only if nothing follows it */
    char why[512] = "", torn_why[512] = "";
    ssize_t got;
    brt_status st = BRT_OK;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        line_no++;
        if (torn_line) {
            st = brt_errf(err, BRT_ERR_FORMAT,
                          "journal %s: line %zu is not a complete result line (%s) but more lines "
                          "follow it; refusing to guess - repair or remove that line",
                          j->path, torn_line, torn_why);
            break;
        }
        char *id;
        enum line_kind k = classify(buf, (size_t)got, &id, why, sizeof why);
        pos += got;
        if (k == LINE_FOREIGN) {
            st = brt_errf(err, BRT_ERR_FORMAT, "journal %s: line %zu: %s (input and output swapped?)",
                          j->path, line_no, why);
            break;
        }
        if (k == LINE_TORN) {
            torn_line = line_no;
            memcpy(torn_why, why, sizeof why);
            continue;
        }
        good_end = pos;
        if (k == LINE_BLANK)
            continue;
        intptr_t first;
        if (brt_strmap_get(&j->done, id, &first)) {
            st = brt_errf(err, BRT_ERR_FORMAT,
                          "journal %s: line %zu: custom_id \"%.200s\" is already on line %zu; a "
                          "results file holds each job once",
                          j->path, line_no, id, (size_t)first);
            free(id);
            break;
        }
        int rc = brt_strmap_put(&j->done, id, (intptr_t)line_no);
        free(id);
        if (rc != 0) {
            st = brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory at line %zu", j->path,
                          line_no);
            break;
        }
    }
    if (st == BRT_OK && ferror(f))
        st = brt_errf(err, BRT_ERR_IO, "journal %s: read failed after line %zu: %s", j->path,
                      line_no, strerror(errno));
    else if (st == BRT_OK && !feof(f))
        st = brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory reading line %zu", j->path,
                      line_no + 1);
    free(buf);
    fclose(f);
    if (st != BRT_OK)
        return st;
    j->n_lines = line_no - (torn_line ? 1 : 0);
    j->size = good_end;
    if (pos > good_end) {
        if (ftruncate(j->fd, good_end) != 0 || fsync(j->fd) != 0)
            return brt_errf(err, BRT_ERR_IO, "journal %s: cannot cut the torn last line %zu: %s",
                            j->path, torn_line, strerror(errno));
        j->truncated = (size_t)(pos - good_end);
    }
    return BRT_OK;
}

brt_status brt_journal_open(const char *path, brt_journal **out, brt_err *err)
{
    *out = NULL;
    brt_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        free(j);
        return brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory", path);
    }
    j->fd = -1;
    brt_strmap_init(&j->done);
    brt_status st = BRT_OK;
    int created = 1;
    j->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (j->fd < 0 && errno == EEXIST) {
        created = 0;
        j->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    }
    struct stat sb;
    if (j->fd < 0) {
        st = brt_errf(err, BRT_ERR_IO, "journal %s: cannot open for appending: %s", path,
                      strerror(errno));
    } else if (fstat(j->fd, &sb) != 0) {
        st = brt_errf(err, BRT_ERR_IO, "journal %s: fstat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = brt_errf(err, BRT_ERR_INVALID,
                      "journal %s: not a regular file (the output doubles as the resume journal, "
                      "so it must be a file)",
                      path);
    } else if (flock(j->fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        /* other flock errors mean the filesystem lacks flock: go on unlocked */
        st = brt_errf(err, BRT_ERR_IO,
                      "journal %s: another process holds a lock on it (is another beaconrt run "
                      "writing this output?)",
                      path);
    }
    if (st == BRT_OK) {
        if (created)
            fsync_parent_dir(path);
        st = journal_scan(j, err);
    }
    if (st != BRT_OK) {
        brt_journal_close(j);
        return st;
    }
    *out = j;
    return BRT_OK;
}

int brt_journal_is_done(const brt_journal *j, const char *custom_id)
{
    return j && custom_id && brt_strmap_get(&j->done, custom_id, NULL);
}

size_t brt_journal_n_done(const brt_journal *j) { return j ? j->done.n : 0; }

size_t brt_journal_truncated_bytes(const brt_journal *j) { return j ? j->truncated : 0; }

brt_status brt_journal_append(brt_journal *j, const char *custom_id, const char *line, brt_err *err)
{
    if (!j || !custom_id || !*custom_id || !line)
        return brt_errf(err, BRT_ERR_INVALID, "journal append: missing journal, custom_id or line");
    if (j->broken)
        return brt_errf(err, BRT_ERR_IO,
                        "journal %s: an earlier append failed part-way; not writing %s (rerun to "
                        "resume from what is on disk)",
                        j->path, custom_id);
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1))
        return brt_errf(err, BRT_ERR_INVALID,
                        "journal %s: the line for %s must be exactly one line ending in a newline",
                        j->path, custom_id);
    intptr_t where;
    if (brt_strmap_get(&j->done, custom_id, &where))
        return brt_errf(err, BRT_ERR_INTERNAL,
                        "journal %s: custom_id %s is already on line %zu; refusing to write it twice",
                        j->path, custom_id, (size_t)where);

    /* one write() so a crash leaves at most this line torn; the loop only finishes a short
     * write (a signal, a full disk), and a failure cuts the partial line so none is left in
     * the middle of the file for later appends to bury */
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(j->fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            if (ftruncate(j->fd, j->size) != 0)
                j->broken = 1;
            return brt_errf(err, BRT_ERR_IO, "journal %s: writing the result of %s: %s", j->path,
                            custom_id, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(j->fd) != 0) {
        /* after a failed fsync the page cache may not match the disk: stop appending */
        j->broken = 1;
        return brt_errf(err, BRT_ERR_IO, "journal %s: fsync after the result of %s: %s", j->path,
                        custom_id, strerror(errno));
    }
    j->size += (off_t)len;
    j->n_lines++;
    if (brt_strmap_put(&j->done, custom_id, (intptr_t)j->n_lines) != 0) {
        /* written but not remembered: further appends could duplicate it */
        j->broken = 1;
        return brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory after writing %s", j->path,
                        custom_id);
    }
    return BRT_OK;
}

void brt_journal_close(brt_journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    brt_strmap_free(&j->done);
    free(j->path);
    free(j);
}
