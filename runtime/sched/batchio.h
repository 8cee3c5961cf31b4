/* Batch files: OpenAI-Batch JSONL requests in, one JSON result line per job out, and the
 * results journal that makes `beaconrt run` resumable.
 *
 * The output file IS the journal. Each result line is appended with one write() and fsync'ed
 * the moment its job ends; a rerun opens the same file, learns which custom_ids are done, cuts
 * off a line torn by a crash, and runs only the rest. Success and error lines both count as
 * done: to retry failed jobs, remove their lines (or the file).
 *
 * Ids in the output: every line carries a custom_id that is unique in the file. A bad input
 * line whose custom_id cannot be read, or that repeats an earlier line's custom_id, is reported
 * under the synthetic id "line-<N>" (N = its 1-based input line; "line-<N>#<k>" in the unlikely
 * case the input itself uses that id). Synthetic ids depend only on the input file, so a rerun
 * with the same input recognises those error lines as done too. */
#ifndef BRT_BATCHIO_H
#define BRT_BATCHIO_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* ---- input ---------------------------------------------------------------------------- */

/* One /v1/completions request. Defaults are OpenAI's. */
typedef struct brt_request {
    char *custom_id;          /* required, non-empty string, unique in the file */
    size_t line_no;           /* 1-based line in the input file */
    char *prompt;             /* UTF-8 prompt text, or NULL when given as token ids */
    int32_t *prompt_ids;      /* [n_prompt_ids] body.prompt given as integer token ids (>= 0;
                                 the vocabulary bound is checked by the tokenizer's owner) */
    size_t n_prompt_ids;
    int32_t max_tokens;       /* default 16; 0 allowed (scoring with echo) */
    float temperature;        /* default 1.0, range [0, 2] */
    float top_p;              /* default 1.0, range (0, 1] */
    int has_seed;
    uint64_t seed;            /* a negative JSON seed is taken modulo 2^64 */
    char *stop[4];            /* "stop": string or array of up to 4 non-empty strings, or null */
    int n_stop;
    int echo;                 /* default false */
    int logprobs;             /* -1 = null/absent; else 0..5 (number of top alternatives) */
    char *model;              /* optional, NULL if absent */
} brt_request;

/* Frees the members, not r itself; leaves r zeroed. Safe on a zeroed request. */
void brt_request_free(brt_request *r);

/* Parse one input line (len bytes, no trailing newline needed; NULs inside are invalid JSON).
 *
 * Accepted top-level fields: custom_id, method ("POST"), url ("/v1/completions"), body.
 * Accepted body fields: model, prompt, max_tokens, temperature, top_p, seed, stop, echo,
 * logprobs, user (ignored), frequency_penalty and presence_penalty (only 0). A JSON null is the
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

/* A whole input file. reqs and bad are each in file order. */
typedef struct brt_batch {
    brt_request *reqs; /* [n] parsed OK, custom_ids unique */
    size_t n;
    struct brt_batch_bad {
        size_t line_no;
        char *custom_id;   /* the id to report the error under: the line's own when readable and
                              not already taken, else the synthetic "line-<N>" (see top of file).
                              Unique across reqs and bad. brt_batch_read never leaves it NULL. */
        brt_status status; /* why the line was refused; brt_status_name() gives the error code */
        char *message;     /* "line N: ..." */
    } *bad;            /* [n_bad] */
    size_t n_bad;
} brt_batch;

/* Read and parse a JSONL file. Blank (whitespace-only) lines are skipped; a trailing '\r'
 * (CRLF files) and a UTF-8 BOM on line 1 are tolerated. A line that fails to parse, or whose
 * custom_id repeats an earlier line's (the message names that line), goes to out->bad and the
 * rest of the file is still read. Only I/O and allocation failures fail the call; out is then
 * empty. */
brt_status brt_batch_read(const char *path, brt_batch *out, brt_err *err);
void brt_batch_free(brt_batch *b);

/* ---- output lines ----------------------------------------------------------------------- */

/* A finished completion, as the engine hands it to the formatter. Nothing is owned. */
typedef struct brt_completion {
    const char *text;          /* [text_len] UTF-8 completion text (prompt text prepended by the
                                  caller under echo); invalid UTF-8 becomes U+FFFD, NULs are kept */
    size_t text_len;
    const char *finish_reason; /* "length" or "stop" */
    int32_t prompt_tokens, completion_tokens;
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

/* ---- journal ------------------------------------------------------------------------------ */

typedef struct brt_journal brt_journal;

/* Open (or create) the output file for appending, and take an exclusive flock on it so two runs
 * cannot interleave (skipped where the filesystem has no flock, e.g. Lustre without -o flock).
 * An existing file is scanned: every complete line that is a JSON object with a non-empty
 * string custom_id marks that id done (success and error lines alike). A torn tail - a last
 * line without '\n', or a last line that is not such an object - is cut off with ftruncate and
 * its length reported by brt_journal_truncated_bytes(); that job will be redone. A bad line
 * anywhere before the last one, or a custom_id on two lines, is BRT_ERR_FORMAT naming the line:
 * the file was not written by one beaconrt run and guessing could lose or duplicate results.
 * Blank lines are skipped. The file must be a regular file. */
brt_status brt_journal_open(const char *path, brt_journal **out, brt_err *err);
int brt_journal_is_done(const brt_journal *j, const char *custom_id);
size_t brt_journal_n_done(const brt_journal *j);
size_t brt_journal_truncated_bytes(const brt_journal *j);

/* Append one formatted line (exactly one '\n', at its end) with a single write() and fsync, and
 * mark custom_id done. An id already done is BRT_ERR_INTERNAL and nothing is written. If the
 * write fails part-way the partial line is cut off again; if that or the fsync fails, the
 * journal refuses further appends (BRT_ERR_IO) - stop, and let the rerun's scan decide. */
brt_status brt_journal_append(brt_journal *j, const char *custom_id, const char *line,
                              brt_err *err);
void brt_journal_close(brt_journal *j);

#endif
