/* A streamed completion's text, token by token: what can be sent now and what must wait. Bytes
 * wait while they may be the start of a stop string (the scheduler cuts the text where a stop
 * string begins, and a client must never see any of it) and while a UTF-8 character is still
 * incomplete; each token's logprob entry is sent with the chunk that carries its last byte. */
#ifndef BRT_API_STREAM_H
#define BRT_API_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "api/job.h"
#include "base/buf.h"

typedef struct brt_stream_tok {
    int32_t id;
    float logprob;
    brt_tok_lp top[BRT_TOP_K_MAX];
    size_t end;                 /* byte offset in the generated text where its bytes end */
} brt_stream_tok;

typedef struct brt_stream {
    brt_buf text;               /* generated text so far */
    size_t sent;                /* bytes of it sent */
    size_t hold;                /* bytes kept back: the longest stop string less one */
    brt_stream_tok *toks;       /* tokens not yet sent with a chunk */
    size_t n_toks, cap_toks;
    int32_t top_k, logprobs;    /* the request's: logprobs < 0 = none */
    int chat;
    int as_ids;                 /* logprob entries name tokens "token_id:ID" */
} brt_stream;

void brt_stream_init(brt_stream *st, const brt_request *r);
void brt_stream_free(brt_stream *st);
/* The job's newest token (not the EOS / turn end that stops it). 0, or -1 out of memory. */
int brt_stream_push(brt_stream *st, const brt_model *m, const brt_job *job);
/* What can be sent now (final: the job ended; text_cut: the scheduler's stop-string cut, or -1):
 * piece->c holds the text and the logprob entries of the tokens it completes (finish_reason unset).
 * 1 with *piece filled (free with brt_api_result_free), 0 when nothing is ready, -1 out of memory. */
int brt_stream_take(brt_stream *st, const brt_model *m, int final, int64_t text_cut, brt_api_result *piece);

#endif
