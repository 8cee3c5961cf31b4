/* Response bodies and batch output lines in OpenAI's form. */
#include "api/response.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/text.h"

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
        char *key = brt_render_token(c->top_tokens[at]);
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
        char *t = brt_render_token(c->tokens[i] ? c->tokens[i] : "");
        append(toks, t ? json_string(t) : NULL, bad);
        free(t);
        append(lps, logprob_json(c->token_logprobs[i]), bad);
        append(tops, top_row(c, i, bad), bad);
        append(offs, json_integer(c->text_offset[i]), bad);
    }
    return lp;
}

/* The chat API's logprobs: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]} */
static json_t *bytes_json(const char *tok, int *bad)
{
    json_t *a = json_array();
    for (const unsigned char *p = (const unsigned char *)tok; a && *p; p++)
        append(a, json_integer(*p), bad);
    return a;
}

static json_t *chat_token_json(const char *tok, float lp, int *bad)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    char *t = brt_render_token(tok ? tok : "");
    put(o, "token", t ? json_string(t) : NULL, bad);
    free(t);
    put(o, "logprob", logprob_json(lp), bad);
    put(o, "bytes", bytes_json(tok ? tok : "", bad), bad);
    return o;
}

static json_t *chat_logprobs_json(const brt_completion *c, int *bad)
{
    json_t *lp = json_object(), *content = json_array();
    put(lp, "content", content, bad);
    for (size_t i = 0; !*bad && i < c->n_tokens; i++) {
        json_t *e = chat_token_json(c->tokens[i], c->token_logprobs[i], bad), *tops = json_array();
        append(content, e, bad);
        if (!e || *bad)
            break;
        put(e, "top_logprobs", tops, bad);
        for (int k = 0; tops && k < c->top_k; k++) {
            size_t at = i * (size_t)c->top_k + (size_t)k;
            if (!isnan(c->top_logprobs[at]) && c->top_tokens[at])
                append(tops, chat_token_json(c->top_tokens[at], c->top_logprobs[at], bad), bad);
        }
    }
    return lp;
}

static brt_status check_completion(const char *id, const brt_completion *c, brt_err *err)
{
    if (!c || (!c->text && c->text_len))
        return brt_errf(err, BRT_ERR_INVALID, "response for %s: no text", id);
    if (c->finish_reason && strcmp(c->finish_reason, "length") && strcmp(c->finish_reason, "stop"))
        return brt_errf(err, BRT_ERR_INVALID, "response for %s: finish_reason must be \"length\" or \"stop\", got %s",
                        id, c->finish_reason);
    if (c->tokens && (!c->token_logprobs || !c->text_offset || c->top_k < 0 ||
                      (c->top_k > 0 && (!c->top_tokens || !c->top_logprobs))))
        return brt_errf(err, BRT_ERR_INVALID, "response for %s: logprobs arrays missing for %zu tokens (top_k %d)", id,
                        c->n_tokens, c->top_k);
    return BRT_OK;
}

static json_t *usage_json(const brt_completion *c, int *bad)
{
    json_t *usage = json_object();
    put(usage, "prompt_tokens", json_integer(c->prompt_tokens), bad);
    put(usage, "completion_tokens", json_integer(c->completion_tokens), bad);
    put(usage, "total_tokens", json_integer((json_int_t)c->prompt_tokens + c->completion_tokens), bad);
    json_t *details = json_object();
    put(usage, "prompt_tokens_details", details, bad);
    put(details, "cached_tokens", json_integer(c->cached_tokens), bad);
    return usage;
}

/* One choice: a whole completion, or (chunk) a piece of a stream. */
static json_t *choice_json(const brt_completion *c, int chunk, int first, int *bad)
{
    json_t *choice = json_object();
    put(choice, "index", json_integer(0), bad);
    json_t *text = brt_json_string_lossy(c->text ? c->text : "", c->text_len);
    json_t *finish = c->finish_reason ? json_string(c->finish_reason) : json_null();
    if (c->chat) { /* OpenAI's key orders: index, message, logprobs, finish_reason ... */
        json_t *m = json_object();
        put(choice, chunk ? "delta" : "message", m, bad);
        if (!chunk || first)
            put(m, "role", json_string("assistant"), bad);
        put(m, "content", text, bad);
        put(choice, "logprobs", c->tokens ? chat_logprobs_json(c, bad) : json_null(), bad);
        put(choice, "finish_reason", finish, bad);
    } else { /* ... and index, text, finish_reason, logprobs */
        put(choice, "text", text, bad);
        put(choice, "finish_reason", finish, bad);
        put(choice, "logprobs", c->tokens ? logprobs_json(c, bad) : json_null(), bad);
    }
    return choice;
}

json_t *brt_response_body(const char *id, const char *model, int64_t created, const brt_completion *c, brt_err *err)
{
    if (check_completion(id, c, err) != BRT_OK)
        return NULL;
    int bad = 0;
    json_t *body = json_object(), *choices = json_array();
    put(body, "id", brt_json_string_lossy(id, strlen(id)), &bad);
    put(body, "object", json_string(c->chat ? "chat.completion" : "text_completion"), &bad);
    put(body, "created", json_integer(created), &bad);
    put(body, "model", brt_json_string_lossy(model, strlen(model)), &bad);
    put(body, "choices", choices, &bad);
    append(choices, choice_json(c, 0, 0, &bad), &bad);
    put(body, "usage", usage_json(c, &bad), &bad);
    if (bad) {
        json_decref(body);
        brt_errf(err, BRT_ERR_NOMEM, "response for %s: out of memory", id);
        return NULL;
    }
    return body;
}

json_t *brt_response_chunk(const char *id, const char *model, int64_t created, const brt_completion *c, int first,
                           brt_err *err)
{
    if (check_completion(id, c, err) != BRT_OK)
        return NULL;
    int bad = 0;
    json_t *body = json_object(), *choices = json_array();
    put(body, "id", brt_json_string_lossy(id, strlen(id)), &bad);
    put(body, "object", json_string(c->chat ? "chat.completion.chunk" : "text_completion"), &bad);
    put(body, "created", json_integer(created), &bad);
    put(body, "model", brt_json_string_lossy(model, strlen(model)), &bad);
    put(body, "choices", choices, &bad);
    append(choices, choice_json(c, 1, first, &bad), &bad);
    if (bad) {
        json_decref(body);
        brt_errf(err, BRT_ERR_NOMEM, "stream chunk for %s: out of memory", id);
        return NULL;
    }
    return body;
}

json_t *brt_response_usage_chunk(const char *id, const char *model, int64_t created, const brt_completion *c,
                                 brt_err *err)
{
    int bad = 0;
    json_t *body = json_object();
    put(body, "id", brt_json_string_lossy(id, strlen(id)), &bad);
    put(body, "object", json_string(c->chat ? "chat.completion.chunk" : "text_completion"), &bad);
    put(body, "created", json_integer(created), &bad);
    put(body, "model", brt_json_string_lossy(model, strlen(model)), &bad);
    put(body, "choices", json_array(), &bad);
    put(body, "usage", usage_json(c, &bad), &bad);
    if (bad) {
        json_decref(body);
        brt_errf(err, BRT_ERR_NOMEM, "usage chunk for %s: out of memory", id);
        return NULL;
    }
    return body;
}

json_t *brt_response_error(const char *message, const char *type, const char *param, const char *code)
{
    int bad = 0;
    json_t *root = json_object(), *e = json_object();
    put(root, "error", e, &bad);
    put(e, "message", brt_json_string_lossy(message, strlen(message)), &bad);
    put(e, "type", json_string(type), &bad);
    put(e, "param", param ? json_string(param) : json_null(), &bad);
    put(e, "code", code ? json_string(code) : json_null(), &bad);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

char *brt_response_dumps(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
}

brt_status brt_batch_format_success(const char *custom_id, const char *model, int64_t created,
                                    const brt_completion *c, char **line, brt_err *err)
{
    *line = NULL;
    if (!custom_id || !*custom_id || !model || !c)
        return brt_errf(err, BRT_ERR_INVALID, "result line: missing custom_id, model or text");
    if (!c->finish_reason)
        return brt_errf(err, BRT_ERR_INVALID, "result line for %s: finish_reason must be \"length\" or \"stop\", got NULL",
                        custom_id);
    char id[600];
    snprintf(id, sizeof id, "%s%.500s", c->chat ? "chatcmpl-" : "cmpl-", custom_id);
    json_t *body = brt_response_body(id, model, created, c, err);
    if (!body)
        return err->status;
    int bad = 0;
    json_t *root = json_object();
    if (!root) {
        json_decref(body);
        return brt_errf(err, BRT_ERR_NOMEM, "result line: out of memory");
    }
    put(root, "id", with_prefix("batch_req_", custom_id), &bad);
    put(root, "custom_id", brt_json_string_lossy(custom_id, strlen(custom_id)), &bad);
    json_t *resp = json_object();
    put(root, "response", resp, &bad);
    put(root, "error", json_null(), &bad);
    put(resp, "status_code", json_integer(200), &bad);
    put(resp, "request_id", with_prefix("req_", custom_id), &bad);
    put(resp, "body", body, &bad);
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

