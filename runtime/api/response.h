/* OpenAI responses: text_completion bodies and the batch output's success and error lines. */
#ifndef BRT_API_RESPONSE_H
#define BRT_API_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* A finished completion (or, streaming, a piece of one), as the engine hands it to the formatter.
 * Nothing is owned. */
typedef struct brt_completion {
    int chat;                  /* chat.completion (message, chat logprobs) rather than text_completion */
    const char *text;          /* [text_len] UTF-8 completion text (prompt text prepended by the
                                  caller under echo); invalid UTF-8 becomes U+FFFD, NULs are kept */
    size_t text_len;
    const char *finish_reason; /* "length" or "stop"; NULL in a stream chunk that does not end it */
    int32_t prompt_tokens, completion_tokens;
    int32_t cached_tokens;     /* prompt tokens read from a cache (usage.prompt_tokens_details) */
    /* logprobs (tokens == NULL: "logprobs": null): one entry per returned token */
    size_t n_tokens;
    const char **tokens;          /* [n_tokens] token strings, arbitrary bytes; one that is not
                                     valid UTF-8 is written as "bytes:\xNN..." (OpenAI's form:
                                     printable ASCII kept, '\\' doubled, other bytes \xNN) */
    const float *token_logprobs;  /* [n_tokens]; NaN = null (the first prompt token under echo) */
    const int32_t *text_offset;   /* [n_tokens] byte offsets into text */
    int top_k;                    /* entries per top_logprobs row (0 allowed) */
    const char *const *top_tokens; /* [n_tokens * top_k] */
    const float *top_logprobs;     /* [n_tokens * top_k]; NaN entries are left out of their row;
                                      a row is null when token_logprobs[i] is NaN, when all its
                                      entries are NaN, and always when top_k is 0; when two entries
                                      of a row render to the same string the first is kept (a row
                                      is a JSON object {token: logprob}) */
} brt_completion;

typedef struct json_t json_t;

/* The response body of a completion (object text_completion or chat.completion, id as given). NULL
 * with err set on bad input or no memory. */
json_t *brt_response_body(const char *id, const char *model, int64_t created, const brt_completion *c, brt_err *err);
/* One server-sent event's body for a piece of a stream: the piece's text and logprobs; first: the
 * chat delta carries the role; finish_reason set on the last piece. */
json_t *brt_response_chunk(const char *id, const char *model, int64_t created, const brt_completion *c, int first,
                           brt_err *err);
/* The stream's usage chunk (stream_options.include_usage): no choices, the usage. */
json_t *brt_response_usage_chunk(const char *id, const char *model, int64_t created, const brt_completion *c,
                                 brt_err *err);
/* An HTTP error body {"error": {message, type, param, code}} as OpenAI sends it. */
json_t *brt_response_error(const char *message, const char *type, const char *param, const char *code);
/* Compact JSON text (float32 round-trip); malloc'ed, NULL when out of memory. */
char *brt_response_dumps(const json_t *v);

/* Format a success line (OpenAI Batch output, text_completion body): compact, one line, keys
 * in OpenAI's order, floats with 9 significant digits (float32 round-trips), non-finite logprobs
 * as null. *line is malloc'ed and ends with "\n". */
brt_status brt_batch_format_success(const char *custom_id, const char *model, int64_t created,
                                    const brt_completion *c, char **line, brt_err *err);

/* Format an error line: {"id","custom_id","response":null,"error":{"code","message"}}. code is
 * typically brt_status_name(status). Invalid UTF-8 in message (e.g. a multi-byte character cut by
 * a message buffer) becomes U+FFFD. *line is malloc'ed and ends with "\n". */
/* A JSON string from bytes that should be UTF-8 but may not be (a completion cut in the middle of
 * a character): invalid bytes become U+FFFD. NULL only when out of memory. */
typedef struct json_t json_t;
json_t *brt_json_string_lossy(const char *s, size_t len);

brt_status brt_batch_format_error(const char *custom_id, const char *code, const char *message,
                                  char **line, brt_err *err);

#endif
