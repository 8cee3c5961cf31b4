/* The per-ISA kernels the CPU backend dispatches to (one table per instruction set). */
#ifndef BRT_SIMD_OPS_H
#define BRT_SIMD_OPS_H

#include <stdint.h>

#include "kernels.h"

/* Attention as the CPU kernels see it: the backend resolves views into host pointers. */
typedef struct brt_cpu_kv_span {
    const void *k, *v;
    int32_t n;
    int32_t stride;            /* elements between consecutive slots */
    brt_dtype dtype;           /* F32 or BF16 */
} brt_cpu_kv_span;

typedef struct brt_cpu_attn_seg {
    const float *q;            /* [rows, n_heads * head_dim], row stride ld_q */
    float *out;                /* [rows, n_heads * head_dim], row stride ld_o */
    int32_t rows, ld_q, ld_o;
    const brt_cpu_kv_span *spans;
    int32_t n_spans, n_keys;
    const brt_attn_vis *vis;   /* [rows] */
} brt_cpu_attn_seg;

typedef struct brt_cpu_attn_args {
    const brt_cpu_attn_seg *segs;
    int32_t n_segs;
    int32_t n_heads, n_kv_heads, head_dim;
    float scale_div;
} brt_cpu_attn_args;

typedef struct brt_simd_ops {
    const char *isa;
    int gemm_nr;              /* columns per GEMM tile: thread splits are multiples of it */
    int gemm_mr;              /* rows per GEMM tile (row splits are multiples of it) */
    /* c[:, n0:n1] for all m rows (see brt_backend.gemm); scratch holds gemm_scratch_floats(m, K) */
    void (*gemm_cols)(const float *a, int64_t lda, int64_t m, const brt_weight *w, const brt_weight *bias,
                      float *c, int64_t ldc, int64_t n0, int64_t n1, float *scratch);
    int64_t (*gemm_scratch_floats)(int64_t m, int64_t k);
    /* attention for query vectors [qv0, qv1) of each kv head in [kvh0, kvh1) of one segment
     * ((kvh1 - kvh0) * (qv1 - qv0) <= BRT_ATTN_QV_MAX); scratch holds
     * brt_simd_attn_scratch_floats(head_dim) floats */
    void (*attn)(const brt_cpu_attn_args *a, const brt_cpu_attn_seg *s, int32_t kvh0, int32_t kvh1, int32_t qv0,
                 int32_t qv1, float *scratch);
    void (*rmsnorm_row)(const float *x, const float *w, float eps, float *y, int64_t dim);
    void (*silu_mul_row)(float *g, const float *u, int64_t n);
    void (*add_row)(float *y, const float *x, int64_t n);
    void (*rope_row)(float *x, int32_t heads, int32_t head_dim, const float *cos, const float *sin);
    void (*to_f32_row)(const void *src, brt_dtype dt, float *dst, int64_t n);
    /* log(sum(exp(x[0..n)))) within 1e-6 of brt_logsumexp; NAN where x is not all finite */
    double (*logsumexp_row)(const float *x, int64_t n);
} brt_simd_ops;

#define BRT_ATTN_QV_MAX 512  /* query vectors per attention task */
#define BRT_ATTN_TILE 32     /* keys per attention tile */
#define BRT_ATTN_CHUNK 64    /* the head dimension is padded to a multiple of this */
static inline int64_t brt_simd_attn_scratch_floats(int32_t head_dim)
{
    /* Kt [hdp][TILE] + Vt [TILE][hdp] + per query vector (+4 of padding) m, l, acc[hdp] + scores
     * [QV_MAX][TILE] + three per-query-vector arrays (+16 of padding each) + queries of the
     * key-major blocks [QV_MAX][hdp] */
    const int64_t hdp = (head_dim + BRT_ATTN_CHUNK - 1) / BRT_ATTN_CHUNK * BRT_ATTN_CHUNK;
    return hdp * BRT_ATTN_TILE * 2 + (int64_t)(BRT_ATTN_QV_MAX + 4) * (hdp + 2) +
           (int64_t)BRT_ATTN_QV_MAX * BRT_ATTN_TILE + 3 * (BRT_ATTN_QV_MAX + 16) + 64 +
           (int64_t)BRT_ATTN_QV_MAX * hdp;
}

extern const brt_simd_ops brt_simd_avx512, brt_simd_avx2, brt_simd_generic;

#endif
