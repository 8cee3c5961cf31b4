/* From logits to results, in plain C: log-probabilities, the top-k, and keyed draws. The CPU
 * backend runs it as its logit_rows op; the op tests hold every other backend to it. Draws are a
 * pure function of (seed, draw index), so a job samples the same tokens whatever rank, batch or
 * backend runs it. */
#ifndef BRT_SAMPLE_H
#define BRT_SAMPLE_H

#include <stdint.h>

#include "kernels.h"

/* Greedy when temperature <= 0; else softmax(logits / T) restricted to the smallest set of
 * tokens whose probability reaches top_p. work: [2 * n] floats of scratch. */
int32_t brt_sample(const float *logits, int32_t n, float temperature, float top_p, uint64_t seed, uint64_t draw,
                   float *work);
/* log(sum(exp(logits))) in double precision. */
double brt_logsumexp(const float *logits, int32_t n);
/* The k most likely tokens with their log-probabilities (lse from brt_logsumexp), best first
 * (the lower index first on ties). */
void brt_top_logprobs(const float *logits, int32_t n, double lse, int32_t k, brt_tok_lp *out);
/* Uniform double in [0, 1) from (seed, draw). */
double brt_rand_uniform(uint64_t seed, uint64_t draw);
/* One row of the logit_rows op. work: [2 * n] floats. */
void brt_logit_row(const float *logits, int32_t n, const brt_logit_req *req, brt_logit_out *out, float *work);
/* Whether a request needs log(sum(exp(logits))): a target, top-k or a draw. */
int brt_logit_needs_lse(const brt_logit_req *req);
/* brt_logit_row with the row's log-sum-exp computed by the caller (a backend's own, within the
 * op tests' tolerance of brt_logsumexp; unused when brt_logit_needs_lse is 0). */
void brt_logit_row_lse(const float *logits, int32_t n, double lse, const brt_logit_req *req, brt_logit_out *out,
                       float *work);

#endif
