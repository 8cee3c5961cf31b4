/* From logits to results on the GPU, with the CPU's semantics (kernels/sample.c): log-probabilities
 * as logit - logsumexp in double, the top-k by value then lower index, and keyed draws from the
 * same splitmix64 stream, so a seeded request draws the same tokens from the same logits on both.
 * One block per row computes max, logsumexp, the target's log-probability, the top-k and, for
 * top_p >= 1, the draw (the first token whose running sum of probabilities passes u * sum, in token
 * order). top_p < 1 needs the probabilities sorted (descending, ties in token order, as the CPU's
 * qsort comparator): those rows go through CUB's stable segmented radix sort and a second kernel
 * takes the nucleus and draws from it. Only the small per-row results come back to the host. */
#include <cub/device/device_segmented_radix_sort.cuh>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_impl.h"

#define THREADS 1024

typedef struct dev_req {
    int32_t target, top_k, sample, sort; /* sort: this row draws from a nucleus (top_p < 1) */
    float temperature, top_p;
    uint64_t seed, draw;
    int32_t sort_row, pad;               /* its row in the probability arrays */
} dev_req;

typedef struct dev_out {
    int32_t sampled;
    float sampled_logprob, target_logprob;
    int32_t pad;
    double lse, maxv, sum;
    brt_tok_lp top[BRT_TOP_K_MAX];
} dev_out;

__device__ uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

__device__ double rand_uniform(uint64_t seed, uint64_t draw)
{
    uint64_t r = splitmix64(splitmix64(seed) ^ (draw * 0xd1b54a32d192ed03ULL));
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

/* (value, index) ordered by value, then by the lower index; the best of a block */
__device__ __forceinline__ int better(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

__device__ void block_best(float *v, int *i)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, *v, o);
        int j = __shfl_xor_sync(0xffffffffu, *i, o);
        if (better(w, j, *v, *i)) {
            *v = w;
            *i = j;
        }
    }
    const int wp = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();
    if (l == 0) {
        sv[wp] = *v;
        si[wp] = *i;
    }
    __syncthreads();
    *v = l < (int)(blockDim.x / 32) ? sv[l] : -INFINITY;
    *i = l < (int)(blockDim.x / 32) ? si[l] : INT32_MAX;
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, *v, o);
        int j = __shfl_xor_sync(0xffffffffu, *i, o);
        if (better(w, j, *v, *i)) {
            *v = w;
            *i = j;
        }
    }
}

__device__ double block_dsum(double v)
{
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    const int wp = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();
    if (l == 0)
        part[wp] = v;
    __syncthreads();
    v = l < (int)(blockDim.x / 32) ? part[l] : 0.0;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* exclusive prefix of v over the threads of the block, in thread order */
__device__ double block_exclusive(double v)
{
    __shared__ double part[32];
    const int wp = threadIdx.x / 32, l = threadIdx.x % 32;
    double inc = v;
    for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(0xffffffffu, inc, o);
        if (l >= o)
            inc += t;
    }
    __syncthreads();
    if (l == 31)
        part[wp] = inc;
    __syncthreads();
    if (wp == 0) {
        double w = l < (int)(blockDim.x / 32) ? part[l] : 0.0, wi = w;
        for (int o = 1; o < 32; o <<= 1) {
            double t = __shfl_up_sync(0xffffffffu, wi, o);
            if (l >= o)
                wi += t;
        }
        part[l] = wi - w; /* exclusive over warps */
    }
    __syncthreads();
    return part[wp] + inc - v;
}

/* the first element (in order) at which a running sum of p passes target: each thread sums its
 * contiguous chunk, the chunks' prefix finds the thread, which walks its chunk. Returns the index
 * (or n_elems - 1 when rounding leaves the target unreached) to every thread. */
__device__ int first_passing(const float *p, int n_elems, double target, int strict)
{
    __shared__ int found;
    const int per = (n_elems + blockDim.x - 1) / blockDim.x, c0 = threadIdx.x * per;
    const int c1 = c0 + per < n_elems ? c0 + per : n_elems;
    double mine = 0;
    for (int i = c0; i < c1; i++)
        mine += p[i]; /* chunk sum */
    const double before = block_exclusive(mine);
    if (threadIdx.x == 0)
        found = n_elems - 1;
    __syncthreads();
    if (c0 < c1 && (strict ? before + mine > target : before + mine >= target) &&
        !(strict ? before > target : before >= target)) {
        double acc = before;
        int at = c1 - 1; /* the chunk's total passed: its walk must too (rounding aside) */
        for (int i = c0; i < c1; i++) {
            acc += p[i];
            if (strict ? acc > target : acc >= target) {
                at = i;
                break;
            }
        }
        atomicMin(&found, at);
    }
    __syncthreads();
    return found;
}

__global__ void __launch_bounds__(THREADS) k_rows(const float *logits, int64_t ld, int vocab, const dev_req *req,
                                                  dev_out *out, float *probs)
{
    const float *x = logits + blockIdx.x * ld;
    const dev_req r = req[blockIdx.x];
    dev_out *o = &out[blockIdx.x];
    /* max and its first index */
    float bv = -INFINITY;
    int bi = INT32_MAX;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        if (better(x[i], i, bv, bi))
            bv = x[i], bi = i;
    block_best(&bv, &bi);
    const float m = bv;
    const int best = bi == INT32_MAX ? 0 : bi;
    double s = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        s += exp((double)x[i] - m);
    s = block_dsum(s);
    const double lse = m + log(s);
    /* top-k: k passes, each the best after the previous pick in (value desc, index asc) order */
    const int k = r.top_k < 0 ? 0 : r.top_k > BRT_TOP_K_MAX ? BRT_TOP_K_MAX : r.top_k;
    float pv = INFINITY;
    int pi = -1;
    for (int j = 0; j < k; j++) {
        float v = -INFINITY;
        int vi = INT32_MAX;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const float xi = x[i];
            if ((xi < pv || (xi == pv && i > pi)) && better(xi, i, v, vi))
                v = xi, vi = i;
        }
        block_best(&v, &vi);
        if (vi == INT32_MAX)
            break;
        if (threadIdx.x == 0)
            o->top[j] = (brt_tok_lp){vi, (float)(v - lse)};
        pv = v;
        pi = vi;
    }
    if (threadIdx.x == 0) {
        o->lse = lse;
        o->maxv = m;
        o->sampled = -1;
        o->sampled_logprob = 0.0f;
        o->target_logprob = r.target >= 0 && r.target < vocab ? (float)(x[r.target] - lse) : NAN;
    }
    if (!r.sample)
        return;
    int tok = best;
    if (r.temperature > 0.0f && isfinite(m)) {
        /* probabilities as the CPU has them: float values of exp((x - max) / T) in double; their sum
         * in double */
        double sum = 0;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const double p = isfinite(x[i]) ? exp(((double)x[i] - m) / r.temperature) : 0.0;
            sum += p;
            if (r.sort)
                probs[(int64_t)r.sort_row * vocab + i] = (float)p;
        }
        sum = block_dsum(sum);
        if (threadIdx.x == 0)
            o->sum = sum;
        if (!(sum > 0) || !isfinite(sum)) {
            tok = best;
        } else if (r.sort) {
            tok = -2; /* drawn after the sort */
        } else {
            /* in token order: the first whose running sum passes u * sum */
            const double target = rand_uniform(r.seed, r.draw) * sum;
            __shared__ int found;
            const int per = (vocab + blockDim.x - 1) / blockDim.x, c0 = threadIdx.x * per;
            const int c1 = c0 + per < vocab ? c0 + per : vocab;
            double mine = 0;
            for (int i = c0; i < c1; i++)
                mine += (float)(isfinite(x[i]) ? exp(((double)x[i] - m) / r.temperature) : 0.0);
            const double before = block_exclusive(mine);
            if (threadIdx.x == 0)
                found = vocab - 1;
            __syncthreads();
            if (c0 < c1 && before + mine > target && !(before > target)) {
                double acc = before;
                int at = c1 - 1;
                for (int i = c0; i < c1; i++) {
                    acc += (float)(isfinite(x[i]) ? exp(((double)x[i] - m) / r.temperature) : 0.0);
                    if (acc > target) {
                        at = i;
                        break;
                    }
                }
                atomicMin(&found, at);
            }
            __syncthreads();
            tok = found;
        }
    }
    if (threadIdx.x == 0) {
        o->sampled = tok;
        if (tok >= 0)
            o->sampled_logprob = (float)(x[tok] - lse);
    }
}

__global__ void k_iota(int *idx, int vocab, int64_t total)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        idx[i] = (int)(i % vocab);
}

__global__ void k_offsets(int *begin, int *end, int vocab, int n)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        begin[i] = i * vocab;
        end[i] = (i + 1) * vocab;
    }
}

/* rows drawing from a nucleus, after the sort: the smallest prefix reaching top_p * sum, then the
 * first element of it whose running sum passes u * (its sum) */
__global__ void __launch_bounds__(THREADS) k_nucleus(const float *logits, int64_t ld, int vocab, const dev_req *req,
                                                     dev_out *out, const int *rows, const float *sorted_p,
                                                     const int *sorted_i)
{
    const int row = rows[blockIdx.x];
    const dev_req r = req[row];
    dev_out *o = &out[row];
    if (o->sampled != -2) /* k_rows drew already (greedy fallback: no finite logit, sum 0) */
        return;
    const float *p = sorted_p + (int64_t)r.sort_row * vocab;
    const int *ix = sorted_i + (int64_t)r.sort_row * vocab;
    const double sum = o->sum;
    /* cut: the first c with p[0] + ... + p[c - 1] >= top_p * sum, i.e. the element at which the
     * running sum reaches it, plus one */
    const int reach = first_passing(p, vocab, (double)r.top_p * sum, 0);
    const int cut = reach + 1;
    double keep = 0;
    {
        const int per = (cut + blockDim.x - 1) / blockDim.x, c0 = threadIdx.x * per;
        const int c1 = c0 + per < cut ? c0 + per : cut;
        double mine = 0;
        for (int i = c0; i < c1; i++)
            mine += p[i];
        keep = block_dsum(mine);
    }
    const double u = rand_uniform(r.seed, r.draw);
    const int at = first_passing(p, cut, u * keep, 1);
    if (threadIdx.x == 0) {
        const int tok = ix[at];
        o->sampled = tok;
        o->sampled_logprob = (float)(logits[(int64_t)row * ld + tok] - o->lse);
    }
}

static brt_status cu_logit_rows(brt_backend *be, brt_mat logits, int64_t n, int32_t vocab, const brt_logit_req *req,
                                brt_logit_out *out, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    if (n <= 0)
        return BRT_OK;
    dev_req *dr = (dev_req *)calloc((size_t)n, sizeof *dr);
    dev_out *ho = (dev_out *)calloc((size_t)n, sizeof *ho);
    int *sort_rows = (int *)calloc((size_t)n, sizeof *sort_rows);
    brt_status st = BRT_OK;
    int n_sort = 0;
    if (!dr || !ho || !sort_rows) {
        st = brt_errf(err, BRT_ERR_NOMEM, "logit_rows: out of host memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        const brt_logit_req *q = &req[i];
        /* the CPU's nucleus is empty for top_p <= 0 (or NaN): it takes the best token */
        const float temp = q->top_p > 0.0f ? q->temperature : 0.0f;
        const int sort = q->sample && temp > 0.0f && q->top_p < 1.0f;
        dr[i] = (dev_req){q->target, q->top_k, q->sample, sort, temp, q->top_p, q->seed, q->draw, sort ? n_sort : 0, 0};
        if (sort)
            sort_rows[n_sort++] = (int)i;
    }
    if ((int64_t)n_sort * vocab > INT32_MAX) {
        st = brt_errf(err, BRT_ERR_UNSUPPORTED, "logit_rows: %d nucleus rows of %d tokens at once (at most %d values)",
                      n_sort, vocab, INT32_MAX);
        goto out;
    }
    {
#define STEP(call)                                                                                       \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ == cudaSuccess)                                                                           \
            e_ = cudaGetLastError();                                                                     \
        if (e_ != cudaSuccess) {                                                                         \
            st = brt_cuda_fail(err, ci->dev, cudaGetErrorString(e_), #call, __FILE__, __LINE__);         \
            goto out;                                                                                    \
        }                                                                                                \
    } while (0)
        /* scratch: results [n] | probabilities, sorted, indices in and out [n_sort, vocab] | offsets | CUB */
        const int rv = n_sort * vocab;
        size_t cub_bytes = 0;
        if (n_sort)
            STEP(cub::DeviceSegmentedRadixSort::SortPairsDescending(NULL, cub_bytes, (const float *)NULL, (float *)NULL,
                                                                    (const int *)NULL, (int *)NULL, rv, n_sort,
                                                                    (const int *)NULL, (const int *)NULL, 0, 32,
                                                                    ci->stream));
        const size_t o_res = 0, o_p = (n * sizeof(dev_out) + 255) / 256 * 256,
                     o_ps = o_p + ((size_t)rv * 4 + 255) / 256 * 256, o_i = o_ps + ((size_t)rv * 4 + 255) / 256 * 256,
                     o_is = o_i + ((size_t)rv * 4 + 255) / 256 * 256, o_b = o_is + ((size_t)rv * 4 + 255) / 256 * 256,
                     o_e = o_b + ((size_t)n_sort * 4 + 255) / 256 * 256,
                     o_c = o_e + ((size_t)n_sort * 4 + 255) / 256 * 256, total = o_c + cub_bytes + 256;
        char *sc;
        void *devs[2] = {NULL, NULL};
        const void *tabs[2] = {dr, sort_rows};
        const size_t sizes[2] = {(size_t)n * sizeof *dr, (size_t)(n_sort ? n_sort : 1) * sizeof *sort_rows};
        if ((st = brt_cuda_scratch(be, total, (void **)&sc, err)) != BRT_OK ||
            (st = brt_cuda_uploads(be, 2, tabs, sizes, devs, err)) != BRT_OK)
            goto out;
        void *dreq = devs[0], *drows = devs[1];
        dev_out *dout = (dev_out *)(sc + o_res);
        k_rows<<<(unsigned)n, THREADS, 0, ci->stream>>>((const float *)dptr(logits), logits.ld, vocab,
                                                       (const dev_req *)dreq, dout, (float *)(sc + o_p));
        STEP(cudaSuccess);
        if (n_sort) {
            k_iota<<<1024, 256, 0, ci->stream>>>((int *)(sc + o_i), vocab, (int64_t)rv);
            k_offsets<<<1, 256, 0, ci->stream>>>((int *)(sc + o_b), (int *)(sc + o_e), vocab, n_sort);
            STEP(cudaSuccess);
            size_t tb = cub_bytes;
            STEP(cub::DeviceSegmentedRadixSort::SortPairsDescending(
                sc + o_c, tb, (const float *)(sc + o_p), (float *)(sc + o_ps), (const int *)(sc + o_i),
                (int *)(sc + o_is), rv, n_sort, (const int *)(sc + o_b), (const int *)(sc + o_e), 0, 32, ci->stream));
            k_nucleus<<<(unsigned)n_sort, THREADS, 0, ci->stream>>>((const float *)dptr(logits), logits.ld, vocab,
                                                                   (const dev_req *)dreq, dout, (const int *)drows,
                                                                   (const float *)(sc + o_ps), (const int *)(sc + o_is));
            STEP(cudaSuccess);
        }
        STEP(cudaMemcpyAsync(ho, dout, (size_t)n * sizeof *ho, cudaMemcpyDeviceToHost, ci->stream));
        if ((st = brt_cuda_wait(be, err)) != BRT_OK)
            goto out;
#undef STEP
    }
    for (int64_t i = 0; i < n; i++) {
        out[i].sampled = ho[i].sampled;
        out[i].sampled_logprob = ho[i].sampled_logprob;
        out[i].target_logprob = ho[i].target_logprob;
        const int k = req[i].top_k < 0 ? 0 : req[i].top_k > BRT_TOP_K_MAX ? BRT_TOP_K_MAX : req[i].top_k;
        memcpy(out[i].top, ho[i].top, (size_t)k * sizeof(brt_tok_lp));
    }
out:
    free(dr);
    free(ho);
    free(sort_rows);
    return st;
}

void brt_cuda_set_sample_op(brt_backend *be) { be->logit_rows = cu_logit_rows; }
