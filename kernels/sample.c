#include "sample.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

double brt_rand_uniform(uint64_t seed, uint64_t draw)
{
    uint64_t r = splitmix64(splitmix64(seed) ^ (draw * 0xd1b54a32d192ed03ULL));
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

double brt_logsumexp(const float *x, int32_t n)
{
    float m = x[0];
    for (int32_t i = 1; i < n; i++)
        if (x[i] > m)
            m = x[i];
    double s = 0;
    for (int32_t i = 0; i < n; i++)
        s += exp((double)x[i] - m);
    return m + log(s);
}

void brt_top_logprobs(const float *x, int32_t n, double lse, int32_t k, brt_tok_lp *out)
{
    int32_t have = 0;
    for (int32_t i = 0; i < n; i++) {
        if (have == k && x[i] <= x[out[k - 1].token])
            continue;
        int32_t j = have < k ? have++ : k - 1;
        while (j > 0 && x[out[j - 1].token] < x[i]) {
            out[j] = out[j - 1];
            j--;
        }
        out[j].token = i;
    }
    for (int32_t j = 0; j < have; j++)
        out[j].logprob = (float)(x[out[j].token] - lse);
}

static int cmp_desc(const void *a, const void *b)
{
    float x = ((const float *)a)[0], y = ((const float *)b)[0];
    if (x != y)
        return x > y ? -1 : 1;
    float i = ((const float *)a)[1], j = ((const float *)b)[1];
    return i < j ? -1 : i > j;
}

int32_t brt_sample(const float *logits, int32_t n, float temperature, float top_p, uint64_t seed, uint64_t draw,
                   float *work)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    if (temperature <= 0.0f || !isfinite(logits[best]))
        return best;
    /* probabilities (pairs of prob, index for sorting) */
    double m = logits[best], sum = 0;
    for (int32_t i = 0; i < n; i++) {
        double p = isfinite(logits[i]) ? exp(((double)logits[i] - m) / temperature) : 0.0; /* NaN never drawn */
        work[2 * i] = (float)p;
        work[2 * i + 1] = (float)i;
        sum += p;
    }
    if (!(sum > 0) || !isfinite(sum))
        return best;
    double u = brt_rand_uniform(seed, draw);
    if (top_p >= 1.0f) {
        double acc = 0, target = u * sum;
        for (int32_t i = 0; i < n; i++) {
            acc += work[2 * i];
            if (acc > target)
                return i;
        }
        return n - 1;
    }
    qsort(work, (size_t)n, 2 * sizeof(float), cmp_desc);
    double keep = 0;
    int32_t cut = 0;
    while (cut < n && keep < top_p * sum) /* the smallest prefix reaching top_p */
        keep += work[2 * cut++];
    if (cut == 0)
        return best;
    double acc = 0, target = u * keep;
    for (int32_t i = 0; i < cut; i++) {
        acc += work[2 * i];
        if (acc > target)
            return (int32_t)work[2 * i + 1];
    }
    return (int32_t)work[2 * (cut - 1) + 1];
}

int brt_logit_needs_lse(const brt_logit_req *req)
{
    return req->target >= 0 || req->top_k > 0 || req->sample;
}

void brt_logit_row(const float *lg, int32_t n, const brt_logit_req *req, brt_logit_out *out, float *work)
{
    brt_logit_row_lse(lg, n, brt_logit_needs_lse(req) ? brt_logsumexp(lg, n) : NAN, req, out, work);
}

void brt_logit_row_lse(const float *lg, int32_t n, double lse, const brt_logit_req *req, brt_logit_out *out,
                       float *work)
{
    const int32_t k = req->top_k < 0 ? 0 : req->top_k > BRT_TOP_K_MAX ? BRT_TOP_K_MAX : req->top_k;
    out->sampled = -1;
    out->sampled_logprob = 0;
    out->target_logprob = NAN;
    if (!brt_logit_needs_lse(req))
        return;
    if (req->target >= 0 && req->target < n)
        out->target_logprob = (float)(lg[req->target] - lse);
    if (k)
        brt_top_logprobs(lg, n, lse, k, out->top);
    if (req->sample) {
        out->sampled = brt_sample(lg, n, req->temperature, req->top_p, req->seed, req->draw, work);
        out->sampled_logprob = (float)(lg[out->sampled] - lse);
    }
}
