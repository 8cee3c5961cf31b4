/* OpenAI requests: a /v1/completions body, as a batch line (custom_id, method, url, body) or an
 * HTTP request body. Defaults are OpenAI's; every error names the line (or request) and field. */
#ifndef BRT_API_REQUEST_H
#define BRT_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct json_t json_t;

typedef enum brt_api_kind {
    BRT_API_COMPLETIONS = 1, /* /v1/completions: a prompt */
    BRT_API_CHAT = 2,        /* /v1/chat/completions: messages, rendered with the model's chat template */
} brt_api_kind;

/* One request of either endpoint. Defaults are OpenAI's. */
typedef struct brt_request {
    brt_api_kind kind;
    char *custom_id;          /* required, non-empty string, unique in the file */
    size_t line_no;           /* 1-based line in the input file */
    char *prompt;             /* UTF-8 prompt text, or NULL when given as token ids */
    int32_t *prompt_ids;      /* [n_prompt_ids] body.prompt given as integer token ids (>= 0;
                                 the vocabulary bound is checked by the tokenizer's owner) */
    size_t n_prompt_ids;
    int32_t max_tokens;       /* default 16 (chat: -1 = as many as the context allows); 0 allowed (scoring
                                 with echo); chat also reads max_completion_tokens */
    float temperature;        /* default 1.0, range [0, 2] */
    float top_p;              /* default 1.0, range (0, 1] */
    int has_seed;
    uint64_t seed;            /* a negative JSON seed is taken modulo 2^64 */
    char *stop[4];            /* "stop": string or array of up to 4 non-empty strings, or null */
    int n_stop;
    int echo;                 /* default false */
    int ignore_eos;           /* vLLM's extension: generate max_tokens whatever the end-of-text token */
    int tokens_as_ids;        /* vLLM's return_tokens_as_token_ids: logprob entries name "token_id:ID" */
    int logprobs;             /* -1 = null/absent; else 0..5 (number of top alternatives); chat: its
                                 top_logprobs (0..20) when "logprobs": true */
    char *model;              /* optional, NULL if absent */
    json_t *messages;         /* chat: the messages array (a reference held) */
    int chat_logprobs, top_logprobs; /* chat's own form, folded into logprobs */
    int stream;               /* HTTP only: server-sent events */
    int include_usage;        /* stream_options.include_usage */
    int allow_stream;         /* parsing: stream may be true (HTTP, not batch files) */
} brt_request;

/* Frees the members, not r itself; leaves r zeroed. Safe on a zeroed request. */
void brt_request_free(brt_request *r);

/* Parse an HTTP request body (a JSON object) for one endpoint. stream and stream_options are
 * allowed; messages name the field without a line. On failure out is freed. */
brt_status brt_request_parse_body(const json_t *body, brt_api_kind kind, brt_request *out, brt_err *err);

/* Parse one input line (len bytes, no trailing newline needed; NULs inside are invalid JSON).
 *
 * Accepted top-level fields: custom_id, method ("POST"), url ("/v1/completions" or
 * "/v1/chat/completions"), body.
 * Accepted body fields: model, prompt, max_tokens, temperature, top_p, seed, stop, echo,
 * logprobs, ignore_eos and return_tokens_as_token_ids (vLLM's extensions), user (ignored), frequency_penalty and presence_penalty (only 0). A JSON null is the
 * default for every optional field. OpenAI fields beaconrt does not implement (n, best_of,
 * suffix, logit_bias, stream, ...) fail with BRT_ERR_UNSUPPORTED unless given their no-op value
 * (n = 1, best_of = 1, stream = false, suffix / logit_bias / stream_options = null, logit_bias = {}),
 * which SDK-generated files often carry. Anything else is an unknown field.
 *
 * Errors: BRT_ERR_FORMAT (not JSON, not an object), BRT_ERR_INVALID (missing field, wrong type,
 * unknown field, batch of prompts), BRT_ERR_RANGE (value out of range), BRT_ERR_UNSUPPORTED.
 * Every message starts with "line N: " and names the field ("body.max_tokens").
 * On failure out->line_no is set, out->custom_id is set when the line had a readable non-empty
 * string custom_id (so the caller can still write an error line under it), the rest is freed. */
brt_status brt_batch_parse_line(const char *line, size_t len, size_t line_no, brt_request *out,
                                brt_err *err);

#endif
