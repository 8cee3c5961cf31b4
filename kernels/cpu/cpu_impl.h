/* What the CPU backend's files share: its state and how a view becomes a host pointer. */
#ifndef BRT_CPU_IMPL_H
#define BRT_CPU_IMPL_H

#include "cpu/simd/simd_ops.h"
#include "cpu/threadpool.h"
#include "kernels.h"

typedef struct cpu_impl {
    brt_pool *pool;
    const brt_simd_ops *simd;
    float **scratch;            /* per thread, [scratch_floats]: attention tiles, copy rows */
    int64_t scratch_floats;
    brt_cpu_kv_span *spans;     /* attention: the views resolved, [spans_cap] */
    brt_cpu_attn_seg *segs;     /* [segs_cap] */
    int64_t spans_cap, segs_cap;
    float *work;                /* logit_rows: [threads][2 * vocab] (work_floats in all) */
    int64_t work_floats;
    struct cpu_packed *packed;  /* GEMM weights packed into panels (cpu_memory.c), [n_packed] */
    int n_packed, cap_packed;
} cpu_impl;

/* A weight matrix packed for the GEMM: panels of BRT_CPU_PANEL rows, [ceil(rows / 16)][cols][16]
 * in the weight's dtype, rows past the end 0; one copy per host tensor (aliases share it). */
#define BRT_CPU_PANEL 16
typedef struct cpu_packed {
    const void *host;
    brt_dtype dtype;
    int64_t rows, cols;
    void *panels;
} cpu_packed;

static inline cpu_impl *cpu_of(brt_backend *be) { return be->impl; }
/* The host address of a view's row 0 (on the CPU backend every buffer is host memory). */
static inline void *cpu_ptr(brt_mat m) { return (char *)m.buf->base + m.off; }

/* Per-thread scratch of at least floats (grown between runs, never during one). */
brt_status brt_cpu_scratch(brt_backend *be, int64_t floats, brt_err *err);

/* The compute ops (cpu_compute.c), the memory ops (cpu_memory.c). */
void brt_cpu_set_compute_ops(brt_backend *be);
void brt_cpu_set_memory_ops(brt_backend *be);

#endif
