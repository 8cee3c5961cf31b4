/* OpenAI request bodies and batch lines: every field checked, every error naming the line and
 * field. */
#include "api/request.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/text.h"

#define MAX_STOP 4
#define MAX_LOGPROBS 5      /* OpenAI's limit for /v1/completions */
#define MAX_TOP_LOGPROBS 20 /* and for the chat API's top_logprobs */

/* Where a request came from, for messages: "line 12: " and "line 12: body." in a batch file;
 * empty for an HTTP body (the client knows which request it sent). */
typedef struct where {
    char line[40], body[48];
} where;

static void where_init(where *W, size_t line_no)
{
    if (line_no) {
        snprintf(W->line, sizeof W->line, "line %zu: ", line_no);
        snprintf(W->body, sizeof W->body, "line %zu: body.", line_no);
    } else
        W->line[0] = W->body[0] = '\0';
}

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
    json_decref(r->messages);
    memset(r, 0, sizeof *r);
}

static brt_status nomem(brt_err *err, const where *W)
{
    return brt_errf(err, BRT_ERR_NOMEM, "%sout of memory", W->line);
}

static brt_status parse_prompt(const json_t *v, const where *W, brt_request *r, brt_err *err)
{
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return brt_errf(err, BRT_ERR_INVALID, "%sprompt is empty", W->body);
        r->prompt = strdup(json_string_value(v));
        return r->prompt ? BRT_OK : nomem(err, W);
    }
    if (!json_is_array(v))
        return brt_errf(err, BRT_ERR_INVALID,
                        "%sprompt must be a string or an array of token ids, got %s",
                        W->body, brt_json_type_name(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return brt_errf(err, BRT_ERR_INVALID, "%sprompt is empty", W->body);
    /* OpenAI reads an array of strings (or of id arrays) as a batch of prompts with one
     * response each; a batch line here has exactly one response, so ask for one per line. */
    const json_t *first = json_array_get(v, 0);
    if (json_is_string(first) || json_is_array(first))
        return brt_errf(err, BRT_ERR_INVALID,
                        "%sprompt is an array of %s (a batch of prompts); "
                        "beaconrt takes one prompt per line: give each its own line and custom_id",
                        W->body, json_is_string(first) ? "strings" : "arrays");
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids)
        return nomem(err, W);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e))
            return brt_errf(err, BRT_ERR_INVALID,
                            "%sprompt[%zu] must be an integer token id, got %s", W->body, i,
                            brt_json_type_name(e));
        json_int_t id = json_integer_value(e);
        if (id < 0 || id > INT32_MAX)
            return brt_errf(err, BRT_ERR_RANGE,
                            "%sprompt[%zu] = %" JSON_INTEGER_FORMAT
                            " is not a valid token id",
                            W->body, i, id);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = n;
    return BRT_OK;
}

static brt_status parse_stop(const json_t *v, const where *W, brt_request *r, brt_err *err)
{
    if (json_is_null(v))
        return BRT_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return brt_errf(err, BRT_ERR_INVALID, "%sstop is an empty string", W->body);
        r->stop[0] = strdup(json_string_value(v));
        if (!r->stop[0])
            return nomem(err, W);
        r->n_stop = 1;
        return BRT_OK;
    }
    if (!json_is_array(v))
        return brt_errf(err, BRT_ERR_INVALID,
                        "%sstop must be a string, an array of strings or null, got %s",
                        W->body, brt_json_type_name(v));
    size_t n = json_array_size(v);
    if (n > MAX_STOP)
        return brt_errf(err, BRT_ERR_RANGE,
                        "%sstop has %zu sequences, at most %d are allowed", W->body, n,
                        MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return brt_errf(err, BRT_ERR_INVALID, "%sstop[%zu] must be a string, got %s",
                            W->body, i, brt_json_type_name(e));
        if (json_string_length(e) == 0)
            return brt_errf(err, BRT_ERR_INVALID, "%sstop[%zu] is an empty string",
                            W->body, i);
        r->stop[i] = strdup(json_string_value(e));
        if (!r->stop[i])
            return nomem(err, W);
        r->n_stop = (int)i + 1;
    }
    return BRT_OK;
}

static brt_status get_number(const json_t *v, const char *name, const where *W, double *out, brt_err *err)
{
    if (!json_is_number(v))
        return brt_errf(err, BRT_ERR_INVALID, "%s%s must be a number, got %s", W->body,
                        name, brt_json_type_name(v));
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

static brt_status parse_body_field(const char *key, const json_t *v, const where *W, brt_request *r,
                                   brt_err *err)
{
    /* null means "the default" for every optional OpenAI field */
    if (!strcmp(key, "max_completion_tokens") && r->kind == BRT_API_CHAT)
        key = "max_tokens"; /* the chat API's newer name */
    if (r->kind == BRT_API_CHAT && (!strcmp(key, "prompt") || !strcmp(key, "echo")))
        return brt_errf(err, BRT_ERR_INVALID, "%s%s belongs to /v1/completions; chat takes messages", W->body, key);
    if (r->kind != BRT_API_CHAT && !strcmp(key, "messages"))
        return brt_errf(err, BRT_ERR_INVALID, "%smessages belongs to /v1/chat/completions; completions take a prompt",
                        W->body);
    if (!strcmp(key, "prompt")) {
        if (json_is_null(v))
            return brt_errf(err, BRT_ERR_INVALID, "%sprompt is null", W->body);
        return parse_prompt(v, W, r, err);
    }
    if (!strcmp(key, "model")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_string(v))
            return brt_errf(err, BRT_ERR_INVALID, "%smodel must be a string, got %s",
                            W->body, brt_json_type_name(v));
        r->model = strdup(json_string_value(v));
        return r->model ? BRT_OK : nomem(err, W);
    }
    if (!strcmp(key, "max_tokens")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_integer(v))
            return brt_errf(err, BRT_ERR_INVALID,
                            "%smax_tokens must be an integer, got %s", W->body,
                            brt_json_type_name(v));
        json_int_t m = json_integer_value(v);
        if (m < 0 || m > INT32_MAX)
            return brt_errf(err, BRT_ERR_RANGE,
                            "%smax_tokens = %" JSON_INTEGER_FORMAT
                            " is out of range [0, %d]",
                            W->body, m, INT32_MAX);
        r->max_tokens = (int32_t)m;
        return BRT_OK;
    }
    if (!strcmp(key, "temperature")) {
        if (json_is_null(v))
            return BRT_OK;
        double t = 0.0;
        BRT_TRY(get_number(v, key, W, &t, err));
        if (!(t >= 0.0 && t <= 2.0))
            return brt_errf(err, BRT_ERR_RANGE,
                            "%stemperature = %g is out of range [0, 2]", W->body, t);
        r->temperature = (float)t;
        return BRT_OK;
    }
    if (!strcmp(key, "top_p")) {
        if (json_is_null(v))
            return BRT_OK;
        double p = 0.0;
        BRT_TRY(get_number(v, key, W, &p, err));
        /* checked as float too: a positive double below FLT_MIN would become 0 */
        if (!(p > 0.0 && p <= 1.0) || (float)p <= 0.0f)
            return brt_errf(err, BRT_ERR_RANGE, "%stop_p = %g is out of range (0, 1]",
                            W->body, p);
        r->top_p = (float)p;
        return BRT_OK;
    }
    if (!strcmp(key, "seed")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_integer(v))
            return brt_errf(err, BRT_ERR_INVALID, "%sseed must be an integer, got %s",
                            W->body, brt_json_type_name(v));
        r->has_seed = 1;
        r->seed = (uint64_t)json_integer_value(v);
        return BRT_OK;
    }
    if (!strcmp(key, "stop"))
        return parse_stop(v, W, r, err);
    if (!strcmp(key, "ignore_eos") || !strcmp(key, "return_tokens_as_token_ids")) { /* vLLM's extensions */
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_boolean(v))
            return brt_errf(err, BRT_ERR_INVALID, "%s%s must be a boolean, got %s", W->body, key,
                            brt_json_type_name(v));
        *(key[0] == 'i' ? &r->ignore_eos : &r->tokens_as_ids) = json_is_true(v);
        return BRT_OK;
    }
    if (!strcmp(key, "echo")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_boolean(v))
            return brt_errf(err, BRT_ERR_INVALID, "%secho must be a boolean, got %s",
                            W->body, brt_json_type_name(v));
        r->echo = json_is_true(v);
        return BRT_OK;
    }
    if (!strcmp(key, "logprobs") && r->kind == BRT_API_CHAT) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_boolean(v))
            return brt_errf(err, BRT_ERR_INVALID, "%slogprobs must be a boolean (chat), got %s", W->body,
                            brt_json_type_name(v));
        r->chat_logprobs = json_is_true(v);
        return BRT_OK;
    }
    if (!strcmp(key, "top_logprobs") && r->kind == BRT_API_CHAT) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_TOP_LOGPROBS)
            return brt_errf(err, json_is_integer(v) ? BRT_ERR_RANGE : BRT_ERR_INVALID,
                            "%stop_logprobs must be an integer 0..%d", W->body, MAX_TOP_LOGPROBS);
        r->top_logprobs = (int)json_integer_value(v);
        return BRT_OK;
    }
    if (!strcmp(key, "logprobs")) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_integer(v))
            return brt_errf(err, BRT_ERR_INVALID,
                            "%slogprobs must be an integer 0..%d or null, got %s%s", W->body,
                            MAX_LOGPROBS, brt_json_type_name(v),
                            json_is_boolean(v) ? " (the boolean form belongs to the chat API)" : "");
        json_int_t k = json_integer_value(v);
        if (k < 0 || k > MAX_LOGPROBS)
            return brt_errf(err, BRT_ERR_RANGE,
                            "%slogprobs = %" JSON_INTEGER_FORMAT
                            " is out of range [0, %d]",
                            W->body, k, MAX_LOGPROBS);
        r->logprobs = (int)k;
        return BRT_OK;
    }
    if (!strcmp(key, "messages") && r->kind == BRT_API_CHAT) {
        if (!json_is_array(v) || json_array_size(v) == 0)
            return brt_errf(err, BRT_ERR_INVALID, "%smessages must be a non-empty array, got %s", W->body,
                            json_is_array(v) ? "an empty one" : brt_json_type_name(v));
        r->messages = json_incref((json_t *)v); /* rendered with the model's chat template later */
        return BRT_OK;
    }
    if (!strcmp(key, "stream") && r->allow_stream) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_boolean(v))
            return brt_errf(err, BRT_ERR_INVALID, "%sstream must be a boolean, got %s", W->body, brt_json_type_name(v));
        r->stream = json_is_true(v);
        return BRT_OK;
    }
    if (!strcmp(key, "stream_options") && r->allow_stream) {
        if (json_is_null(v))
            return BRT_OK;
        if (!json_is_object(v))
            return brt_errf(err, BRT_ERR_INVALID, "%sstream_options must be an object, got %s", W->body,
                            brt_json_type_name(v));
        const char *k2;
        json_t *v2;
        json_object_foreach((json_t *)v, k2, v2)
        {
            if (strcmp(k2, "include_usage"))
                return brt_errf(err, BRT_ERR_UNSUPPORTED, "%sstream_options.%s is not supported (include_usage is)",
                                W->body, k2);
            if (!json_is_boolean(v2) && !json_is_null(v2))
                return brt_errf(err, BRT_ERR_INVALID, "%sstream_options.include_usage must be a boolean", W->body);
            r->include_usage = json_is_true(v2);
        }
        return BRT_OK;
    }
    if (!strcmp(key, "user")) {
        if (json_is_null(v) || json_is_string(v))
            return BRT_OK;
        return brt_errf(err, BRT_ERR_INVALID, "%suser must be a string, got %s", W->body,
                        brt_json_type_name(v));
    }
    if (!strcmp(key, "frequency_penalty") || !strcmp(key, "presence_penalty")) {
        if (json_is_null(v))
            return BRT_OK;
        double p = 0.0;
        BRT_TRY(get_number(v, key, W, &p, err));
        if (p != 0.0)
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "%s%s = %g is not supported (only 0)", W->body, key, p);
        return BRT_OK;
    }
    for (size_t i = 0; i < sizeof unsupported_fields / sizeof unsupported_fields[0]; i++)
        if (!strcmp(key, unsupported_fields[i])) {
            if (is_noop_unsupported(key, v))
                return BRT_OK;
            return brt_errf(err, BRT_ERR_UNSUPPORTED,
                            "%s%s is not supported by beaconrt; remove it", W->body, key);
        }
    return brt_errf(err, BRT_ERR_INVALID,
                    r->kind == BRT_API_CHAT
                        ? "%sunknown field body.%s (supported: model, messages, max_tokens, max_completion_tokens, "
                          "temperature, top_p, seed, stop, logprobs, top_logprobs, ignore_eos, return_tokens_as_token_ids, stream, stream_options, user)"
                        : "%sunknown field body.%s (supported: model, prompt, max_tokens, temperature, top_p, seed, "
                          "stop, echo, logprobs, ignore_eos, return_tokens_as_token_ids, stream, stream_options, user)",
                    W->line, key);
}

/* The body of either endpoint; the caller set r->kind and the defaults. */
static brt_status parse_body(const json_t *body, const where *W, int allow_stream, brt_request *r, brt_err *err)
{
    const char *key;
    json_t *v;
    r->max_tokens = r->kind == BRT_API_CHAT ? -1 : 16; /* chat: up to the context (resolved later) */
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->logprobs = -1;
    r->allow_stream = allow_stream;
    json_object_foreach((json_t *)body, key, v)
    {
        BRT_TRY(parse_body_field(key, v, W, r, err));
    }
    if (r->kind == BRT_API_CHAT) {
        if (r->prompt || r->prompt_ids)
            return brt_errf(err, BRT_ERR_INVALID, "%sprompt belongs to /v1/completions; chat takes messages", W->body);
        if (!r->messages)
            return brt_errf(err, BRT_ERR_INVALID, "%smessages is missing", W->body);
        if (r->echo)
            return brt_errf(err, BRT_ERR_INVALID, "%secho belongs to /v1/completions", W->body);
        if (r->chat_logprobs)
            r->logprobs = r->top_logprobs;
        else if (r->top_logprobs > 0)
            return brt_errf(err, BRT_ERR_INVALID, "%stop_logprobs needs logprobs: true", W->body);
    } else {
        if (!r->prompt && !r->prompt_ids)
            return brt_errf(err, BRT_ERR_INVALID, "%sprompt is missing", W->body);
        if (r->messages)
            return brt_errf(err, BRT_ERR_INVALID, "%smessages belongs to /v1/chat/completions", W->body);
    }
    if (r->include_usage && !r->stream)
        return brt_errf(err, BRT_ERR_INVALID, "%sstream_options needs stream: true", W->body);
    return BRT_OK;
}

brt_status brt_request_parse_body(const json_t *body, brt_api_kind kind, brt_request *out, brt_err *err)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    where W;
    where_init(&W, 0);
    if (!json_is_object(body))
        return brt_errf(err, BRT_ERR_INVALID, "the request body must be a JSON object, got %s",
                        brt_json_type_name(body));
    brt_status st = parse_body(body, &W, 1, out, err);
    if (st != BRT_OK)
        brt_request_free(out);
    return st;
}

static brt_status parse_request(const json_t *root, const where *W, brt_request *r, brt_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v)
    {
        if (strcmp(key, "custom_id") && strcmp(key, "method") && strcmp(key, "url") &&
            strcmp(key, "body"))
            return brt_errf(err, BRT_ERR_INVALID,
                            "%sunknown top-level field \"%s\" (expected custom_id, method, "
                            "url, body)",
                            W->line, key);
    }
    v = json_object_get(root, "custom_id");
    if (!v)
        return brt_errf(err, BRT_ERR_INVALID, "%scustom_id is missing", W->line);
    if (!json_is_string(v))
        return brt_errf(err, BRT_ERR_INVALID, "%scustom_id must be a string, got %s", W->line,
                        brt_json_type_name(v));
    if (json_string_length(v) == 0)
        return brt_errf(err, BRT_ERR_INVALID, "%scustom_id is empty", W->line);

    v = json_object_get(root, "method");
    if (!v)
        return brt_errf(err, BRT_ERR_INVALID, "%smethod is missing (expected \"POST\")", W->line);
    if (!json_is_string(v) || strcmp(json_string_value(v), "POST"))
        return brt_errf(err, BRT_ERR_INVALID, "%smethod must be \"POST\", got %s%s%s", W->line,
                        json_is_string(v) ? "\"" : "",
                        json_is_string(v) ? json_string_value(v) : brt_json_type_name(v),
                        json_is_string(v) ? "\"" : "");

    v = json_object_get(root, "url");
    if (!v)
        return brt_errf(err, BRT_ERR_INVALID,
                        "%surl is missing (expected \"/v1/completions\" or \"/v1/chat/completions\")", W->line);
    if (json_is_string(v) && !strcmp(json_string_value(v), "/v1/completions"))
        r->kind = BRT_API_COMPLETIONS;
    else if (json_is_string(v) && !strcmp(json_string_value(v), "/v1/chat/completions"))
        r->kind = BRT_API_CHAT;
    else
        return brt_errf(err,
                        json_is_string(v) ? BRT_ERR_UNSUPPORTED : BRT_ERR_INVALID,
                        "%surl must be \"/v1/completions\" or \"/v1/chat/completions\" (the endpoints batch "
                        "mode serves), got %s%s%s",
                        W->line, json_is_string(v) ? "\"" : "",
                        json_is_string(v) ? json_string_value(v) : brt_json_type_name(v),
                        json_is_string(v) ? "\"" : "");

    const json_t *body = json_object_get(root, "body");
    if (!body)
        return brt_errf(err, BRT_ERR_INVALID, "%sbody is missing", W->line);
    if (!json_is_object(body))
        return brt_errf(err, BRT_ERR_INVALID, "%sbody must be an object, got %s", W->line,
                        brt_json_type_name(body));
    return parse_body(body, W, 0, r, err);
}

brt_status brt_batch_parse_line(const char *line, size_t len, size_t line_no, brt_request *out,
                                brt_err *err)
{
    memset(out, 0, sizeof *out);
    out->line_no = line_no;
    where W;
    where_init(&W, line_no);
    json_error_t je;
    /* DECODE_ANY so that `42` gets "not an object" rather than jansson's parser message */
    json_t *root = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return brt_errf(err, BRT_ERR_FORMAT, "%sinvalid JSON at column %d: %s", W.line,
                        je.column, je.text);
    if (!json_is_object(root)) {
        brt_status st = brt_errf(err, BRT_ERR_FORMAT, "%sexpected a JSON object, got %s",
                                 W.line, brt_json_type_name(root));
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
            return nomem(err, &W);
        }
    }
    brt_status st = parse_request(root, &W, out, err);
    json_decref(root);
    if (st != BRT_OK)
        brt_request_free(out);
    out->line_no = line_no;
    out->custom_id = custom_id;
    return st;
}
