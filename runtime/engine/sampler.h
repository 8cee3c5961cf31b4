/* Choosing tokens from logits, and log-probabilities for scoring. Draws are a pure function of
 * (seed, draw index), so a job samples the same tokens whatever rank or batch runs it. */
#ifndef BRT_SAMPLER_H
#define BRT_SAMPLER_H

#include <stdint.h>

#include "engine/step.h"

/* Greedy when temperature <= 0; else softmax(logits / T) restricted to the smallest set of
 * tokens whose probability reaches top_p. work: [2 * n] floats of scratch. */
int32_t brt_sample(const float *logits, int32_t n, float temperature, float top_p, uint64_t seed, uint64_t draw,
                   float *work);
/* log(sum(exp(logits))) in double precision. */
double brt_logsumexp(const float *logits, int32_t n);
/* The k most likely tokens with their log-probabilities (lse from brt_logsumexp), best first. */
void brt_top_logprobs(const float *logits, int32_t n, double lse, int32_t k, brt_tok_lp *out);
/* Uniform double in [0, 1) from (seed, draw). */
double brt_rand_uniform(uint64_t seed, uint64_t draw);

#endif
