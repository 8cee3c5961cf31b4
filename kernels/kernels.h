/* The op table: every numeric operation of a forward pass, behind one interface with one
 * backend per device (kernels/cpu now, kernels/cuda beside it). Kernels never know which
 * long-context policy runs: attention gets segments of query rows, spans of stored keys and,
 * per row, the key intervals it may see.
 *
 * Contract shared by all backends:
 *  - f32 activations; weights f32, f16 or bf16 (converted on the fly, accumulation in f32);
 *  - a row's result never depends on the other rows computed with it (micro-batch packing
 *    must not change any job's numbers): no reduction is split across rows or threads in a
 *    way that depends on the batch, and each output element has one fixed summation order. */
#ifndef BRT_KERNELS_H
#define BRT_KERNELS_H

#include <stdint.h>

#include "base/dtype.h"

/* A weight matrix [rows, cols] = [out, in] (y = x W^T), or a vector (rows = 1). */
typedef struct brt_weight {
    const void *data; /* NULL = absent */
    brt_dtype dtype;  /* F32, F16 or BF16 */
    int64_t rows, cols;
    const char *name; /* for messages */
} brt_weight;

/* A run of stored key/value slots, slot-major: slot i of K is at k + i * stride elements,
 * each slot holds n_kv_heads * head_dim values (head-major). */
typedef struct brt_kv_span {
    const void *k, *v;
    int32_t n;
    int32_t stride;   /* elements between consecutive slots */
    brt_dtype dtype;  /* F32 or BF16 */
} brt_kv_span;

/* Keys one query row may see: up to 3 half-open intervals of key index (the virtual
 * concatenation of a segment's spans). */
#define BRT_ATTN_MAX_INTERVALS 3
typedef struct brt_attn_vis {
    int32_t lo[BRT_ATTN_MAX_INTERVALS], hi[BRT_ATTN_MAX_INTERVALS];
    int32_t n;
} brt_attn_vis;

/* One job's query rows against that job's keys. */
typedef struct brt_attn_seg {
    const float *q;            /* [rows, n_heads * head_dim], row stride ld_q (post-RoPE) */
    float *out;                /* [rows, n_heads * head_dim], row stride ld_o */
    int32_t rows, ld_q, ld_o;
    const brt_kv_span *spans;  /* keys in order */
    int32_t n_spans;
    int32_t n_keys;            /* sum of spans' n */
    const brt_attn_vis *vis;   /* [rows] */
} brt_attn_seg;

typedef struct brt_attn_args {
    const brt_attn_seg *segs;
    int32_t n_segs;
    int32_t n_heads, n_kv_heads, head_dim;
    float scale_div;           /* scores = (q . k) / scale_div, i.e. sqrt(head_dim) */
} brt_attn_args;

typedef struct brt_backend brt_backend;

struct brt_backend {
    const char *name;          /* "cpu-avx512", "cpu-avx2", "cpu-generic", "cuda" */
    int n_threads;
    void *impl;

    /* c[m, w.rows] = a[m, w.cols] . w^T (+ bias[w.rows] when bias && bias->data) */
    void (*gemm)(brt_backend *be, const float *a, int64_t lda, int64_t m, const brt_weight *w,
                 const brt_weight *bias, float *c, int64_t ldc);
    /* y = w * (x * rsqrt(mean(x^2) + eps)) per row; y may equal x */
    void (*rmsnorm)(brt_backend *be, const float *x, int64_t ldx, const float *w, float eps, float *y,
                    int64_t ldy, int64_t rows, int64_t dim);
    /* rotate-half RoPE in place on heads of head_dim: angle = pos[row] * inv_freq[i] (f32) */
    void (*rope)(brt_backend *be, float *x, int64_t ldx, int64_t rows, int32_t heads, int32_t head_dim,
                 const float *pos, const float *inv_freq);
    /* softmax(q k^T / scale_div + mask) v per segment, fp32 softmax */
    void (*attention)(brt_backend *be, const brt_attn_args *a);
    /* gate[i] = silu(gate[i]) * up[i] over rows of n (row strides ld) */
    void (*silu_mul)(brt_backend *be, float *gate, int64_t ldg, const float *up, int64_t ldu, int64_t rows,
                     int64_t n);
    /* y[r] += x[r] */
    void (*add)(brt_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows, int64_t n);
    /* out[i] = table[ids[i]] (as f32) */
    void (*embed)(brt_backend *be, const brt_weight *table, const int32_t *ids, int64_t n, float *out,
                  int64_t ldo);
    /* logits[m, V] = x[m, dim] . lm_head^T (the gemm, kept apart so a backend may fuse it) */
    void (*logits)(brt_backend *be, const float *x, int64_t ldx, int64_t m, const brt_weight *lm_head,
                   float *out, int64_t ldo);
    /* index of the largest value per row (first on ties) */
    void (*argmax)(brt_backend *be, const float *x, int64_t ldx, int64_t rows, int64_t n, int32_t *out);
    void (*destroy)(brt_backend *be);
};

/* The CPU backend: n_threads <= 0 means one per core. isa: NULL = best this CPU supports,
 * else "avx512", "avx2" or "generic" (tests force each). */
brt_backend *brt_cpu_backend_create(int n_threads, const char *isa);

#endif
