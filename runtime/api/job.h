/* Between the OpenAI surface and the scheduler, for every job source (batch files, the HTTP
 * server): a request becomes a job (its prompt tokenized, or its messages rendered with the model's
 * chat template; the context checked; a seed), and a finished job becomes the response's content
 * (text, finish reason, logprobs in the endpoint's form). */
#ifndef BRT_API_JOB_H
#define BRT_API_JOB_H

#include <stdint.h>

#include "api/request.h"
#include "api/response.h"
#include "model/model.h"
#include "sched/sched.h"

/* What the conversions need of the model, shared by the requests of a run. */
typedef struct brt_api_model {
    const brt_model *model;
    const char *name;           /* the served model name in responses */
    const char *chat_template;  /* --chat-template NAME, or NULL: from tokenizer_config.json */
    int chat_kind;              /* resolved on the first chat request (0 = not yet) */
    brt_err chat_err;           /* why chat requests are refused, when they are */
} brt_api_model;

/* The model as requests see it: named `served`, or after its folder when NULL. */
brt_api_model brt_api_model_make(const brt_model *m, const char *served, const char *chat_template);

/* The prompt of a request as token ids, and the job spec for it. The spec points into r (stop
 * strings) and *ids (the prompt): both must outlive brt_sched_submit. id: the request's id (its
 * seed when it gives none). Errors are the request's own: BRT_ERR_INVALID / RANGE / UNSUPPORTED
 * with a message for its client. */
brt_status brt_api_job_spec(brt_api_model *am, const brt_request *r, const char *id, brt_job_spec *spec,
                            int32_t **ids, brt_err *err);

/* A finished job's response content. Owns its memory (brt_api_result_free). */
typedef struct brt_api_result {
    brt_completion c;
    char *text;                 /* [c.text_len] */
    char **owned;               /* token strings */
    int32_t n_owned;
    const char **tokens, **top_tok;
    float *lps, *top_lp;
    int32_t *offs;
} brt_api_result;

brt_status brt_api_result_make(const brt_api_model *am, const brt_request *r, const brt_sched *s, const brt_job *job,
                               brt_api_result *out, brt_err *err);
void brt_api_result_free(brt_api_result *res);

/* The bytes a token adds to the text (pieces with U+2581 as a space, byte tokens as bytes); "<id>"
 * without a tokenizer. Returns the length written (at most cap). */
size_t brt_api_token_text(const brt_model *m, int32_t id, char *buf, size_t cap);
/* A token as a logprob entry names it: its text, or "token_id:ID" when the request asked for ids
 * (vLLM's return_tokens_as_token_ids). */
size_t brt_api_lp_token(const brt_model *m, int as_ids, int32_t id, char *buf, size_t cap);

#endif
