/* What the CUDA backend's files share: its state, the checks that turn a CUDA, cuBLAS or launch
 * error into a brt_status naming the GPU, the call, the file and the line, and the upload arena
 * that carries each op's host descriptors (positions, ids, run lists, attention tables) to the
 * device without a synchronisation. */
#ifndef BRT_CUDA_IMPL_H
#define BRT_CUDA_IMPL_H

#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda/cuda_dl.h"

extern "C" {
#include "kernels.h"
}

/* One weight copy on the device, keyed by the host tensor it came from (aliases share it). */
typedef struct cuda_weight {
    const void *host;
    brt_dtype host_dtype;
    int64_t elems;
    void *dev;
    brt_dtype dev_dtype;
} cuda_weight;

/* A cuBLASLt plan for one GEMM shape, chosen once. */
typedef struct cuda_gemm_plan {
    int64_t m, n, k, lda, ldc;
    uint32_t align;            /* the alignment of A, W and C (bytes, up to 256): cuBLASLt must know it */
    brt_dtype wdt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int has_algo;
} cuda_gemm_plan;

#define BRT_LINK_MAX 64 /* stages of one pipeline named in link errors */

typedef struct cuda_impl {
    int dev;
    int f32;                   /* precision f32: f32 GEMMs (TF32 off) and f32 state */
    int fixed_algo;            /* BRT_GEMM_ALGO=fixed: one algorithm per (n, k) whatever m */
    int sm_count;
    size_t smem_optin;         /* the most shared memory a block may ask for */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;               /* cuBLASLt workspace */
    size_t lt_ws_size;
    /* upload arena: pinned host and device mirrors; reset when the stream is idle */
    char *up_host, *up_dev;
    size_t up_size, up_used;
    /* device scratch: activations converted for a GEMM, staged copies, sampling work */
    void *scratch;
    size_t scratch_size;
    cuda_weight *w;
    int n_w, cap_w;
    cuda_gemm_plan *plans;
    int n_plans, cap_plans;
    char name[200];
    /* NCCL link of this rank's pipeline (cuda_link.cu); NULL without one */
    void *comm;
    int link_n, link_me;
    double link_timeout;
    char link_names[BRT_LINK_MAX][96];
} cuda_impl;

static inline cuda_impl *cuda_of(brt_backend *be) { return (cuda_impl *)be->impl; }
/* The device address of a view's row 0. */
static inline char *dptr(brt_mat m) { return (char *)m.buf->base + m.off; }

/* Turn a failed CUDA / cuBLAS call into a status with where it happened. */
brt_status brt_cuda_fail(brt_err *err, int dev, const char *what, const char *call, const char *file, int line);
#define CU_TRY(call)                                                                                     \
    do {                                                                                                 \
        cudaError_t cu_e_ = (call);                                                                      \
        if (cu_e_ != cudaSuccess)                                                                        \
            return brt_cuda_fail(err, cuda_of(be)->dev, cudaGetErrorString(cu_e_), #call, __FILE__, __LINE__); \
    } while (0)
#define LT_TRY(call)                                                                                     \
    do {                                                                                                 \
        cublasStatus_t lt_e_ = (call);                                                                   \
        if (lt_e_ != CUBLAS_STATUS_SUCCESS)                                                              \
            return brt_cuda_fail(err, cuda_of(be)->dev, brt_lt.p_cublasLtGetStatusString(lt_e_), #call, __FILE__, __LINE__); \
    } while (0)
/* after a kernel launch */
#define LAUNCH_TRY(what)                                                                                 \
    do {                                                                                                 \
        cudaError_t cu_e_ = cudaGetLastError();                                                          \
        if (cu_e_ != cudaSuccess)                                                                        \
            return brt_cuda_fail(err, cuda_of(be)->dev, cudaGetErrorString(cu_e_), "launch of " what, __FILE__, __LINE__); \
    } while (0)

/* Copy n host bytes to the device through the arena (asynchronous, stream-ordered); *out is the
 * device address, valid for the ops queued after it until the next synchronisation. An op that
 * uploads several tables uploads them in one call (brt_cuda_uploads): a second call may wait for
 * the stream and reuse the arena from its start. */
brt_status brt_cuda_upload(brt_backend *be, const void *host, size_t n, void **out, brt_err *err);
brt_status brt_cuda_uploads(brt_backend *be, int count, const void *const *host, const size_t *n, void **out,
                            brt_err *err);
/* Device scratch of at least n bytes (the stream is synchronised first when it must grow). */
brt_status brt_cuda_scratch(brt_backend *be, size_t n, void **out, brt_err *err);

/* Wait for the stream: plain, or watched when an NCCL link may have work queued on it. */
brt_status brt_cuda_wait(brt_backend *be, brt_err *err);
void brt_cuda_link_close(cuda_impl *ci);
void brt_cuda_set_link_ops(brt_backend *be);

/* The op groups, one file each. */
void brt_cuda_set_memory_ops(brt_backend *be);
void brt_cuda_set_compute_ops(brt_backend *be);
void brt_cuda_set_attention_op(brt_backend *be);
void brt_cuda_set_sample_op(brt_backend *be);
void brt_cuda_gemm_free(cuda_impl *ci);
brt_status brt_cuda_gemm(brt_backend *be, brt_mat a, int64_t m, const brt_weight *w, const brt_weight *bias, brt_mat c,
                         brt_err *err);

/* bf16 <-> f32 on the device, bit-exact with base/dtype.h (round to nearest even, NaN quiet). */
__device__ __forceinline__ float brt_dev_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t brt_dev_f32_to_bf16(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
/* IEEE half -> f32 */
__device__ __forceinline__ float brt_dev_f16_to_f32(uint16_t h)
{
    return __half2float(__ushort_as_half(h));
}
/* element i of a row of dtype dt, as f32 */
__device__ __forceinline__ float brt_dev_load(const void *p, int dt, int64_t i)
{
    if (dt == BRT_DT_F32)
        return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return dt == BRT_DT_BF16 ? brt_dev_bf16_to_f32(h) : brt_dev_f16_to_f32(h);
}
__device__ __forceinline__ void brt_dev_store(void *p, int dt, int64_t i, float v)
{
    if (dt == BRT_DT_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = brt_dev_f32_to_bf16(v);
}

#endif
