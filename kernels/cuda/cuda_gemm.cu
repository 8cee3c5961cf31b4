/* GEMMs through cuBLASLt: c[m, n] = a[m, k] . w[n, k]^T, f32 output, f32 accumulation. In bf16
 * mode the activations are converted to the weight's dtype (bf16 or f16) first; in f32 mode
 * everything is f32 with CUBLAS_COMPUTE_32F (no TF32). The algorithm is chosen once per shape by
 * cuBLASLt's heuristic and cached; BRT_GEMM_ALGO=fixed chooses it once per (n, k) at a large m and
 * uses it for every m, so that a row's numbers do not depend on how many rows share the GEMM. */
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_dl.h"
#include "cuda/cuda_impl.h"

#define FIXED_M 4096 /* the m the fixed mode chooses algorithms for */
#define MAX_PLANS 8192

static cudaDataType_t cu_type(brt_dtype dt)
{
    return dt == BRT_DT_F32 ? CUDA_R_32F : dt == BRT_DT_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

void brt_cuda_gemm_free(cuda_impl *ci)
{
    for (int i = 0; i < ci->n_plans; i++) {
        cuda_gemm_plan *p = &ci->plans[i];
        brt_lt.p_cublasLtMatmulDescDestroy(p->op);
        brt_lt.p_cublasLtMatrixLayoutDestroy(p->la);
        brt_lt.p_cublasLtMatrixLayoutDestroy(p->lb);
        brt_lt.p_cublasLtMatrixLayoutDestroy(p->lc);
    }
    free(ci->plans);
    ci->plans = NULL;
    ci->n_plans = ci->cap_plans = 0;
}

/* Descriptors of one shape; the algorithm from the heuristic unless given. */
static brt_status make_plan(brt_backend *be, cuda_gemm_plan *p, const cublasLtMatmulAlgo_t *algo, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    const cudaDataType_t wt = cu_type(p->wdt);
    /* column-major view: C'[n, m] = W'^T[n, k] . A'[k, m], with W' = w as [k, n] (ld k), A' = a as [k, m] */
    LT_TRY(brt_lt.p_cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LT_TRY(brt_lt.p_cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_TRY(brt_lt.p_cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT_TRY(brt_lt.p_cublasLtMatrixLayoutCreate(&p->la, wt, (uint64_t)p->k, (uint64_t)p->n, p->k));
    LT_TRY(brt_lt.p_cublasLtMatrixLayoutCreate(&p->lb, wt, (uint64_t)p->k, (uint64_t)p->m, p->lda));
    LT_TRY(brt_lt.p_cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, (uint64_t)p->n, (uint64_t)p->m, p->ldc));
    if (algo) {
        cublasLtMatmulHeuristicResult_t chk;
        if (brt_lt.p_cublasLtMatmulAlgoCheck(ci->lt, p->op, p->la, p->lb, p->lc, p->lc, algo, &chk) == CUBLAS_STATUS_SUCCESS &&
            chk.workspaceSize <= ci->lt_ws_size) {
            p->algo = *algo;
            p->has_algo = 1;
            return BRT_OK;
        }
    }
    cublasLtMatmulPreference_t pref;
    LT_TRY(brt_lt.p_cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = ci->lt_ws_size;
    uint32_t al = p->align;
    LT_TRY(brt_lt.p_cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LT_TRY(brt_lt.p_cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
    LT_TRY(brt_lt.p_cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al));
    LT_TRY(brt_lt.p_cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al));
    LT_TRY(brt_lt.p_cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t s = brt_lt.p_cublasLtMatmulAlgoGetHeuristic(ci->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &found);
    brt_lt.p_cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || found == 0)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "GPU %d: cuBLASLt has no algorithm for a %s GEMM m=%lld n=%lld k=%lld",
                        ci->dev, brt_dtype_name(p->wdt), (long long)p->m, (long long)p->n, (long long)p->k);
    p->algo = res.algo;
    p->has_algo = 1;
    return BRT_OK;
}

static brt_status find_plan(brt_backend *be, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldc, brt_dtype wdt,
                            uint32_t align, cuda_gemm_plan **out, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    for (int i = 0; i < ci->n_plans; i++) {
        cuda_gemm_plan *p = &ci->plans[i];
        if (p->m == m && p->n == n && p->k == k && p->lda == lda && p->ldc == ldc && p->wdt == wdt && p->align == align) {
            *out = p;
            return BRT_OK;
        }
    }
    if (ci->n_plans == MAX_PLANS) /* many shapes: start over rather than grow without end */
        brt_cuda_gemm_free(ci);
    const cublasLtMatmulAlgo_t *algo = NULL;
    cublasLtMatmulAlgo_t fixed;
    if (ci->fixed_algo && m != FIXED_M) {
        cuda_gemm_plan *ref;
        BRT_TRY(find_plan(be, FIXED_M, n, k, k, n, wdt, 256, &ref, err));
        fixed = ref->algo; /* the plan table may move when it grows */
        algo = &fixed;
    }
    if (ci->n_plans == ci->cap_plans) {
        int cap = ci->cap_plans ? ci->cap_plans * 2 : 64;
        cuda_gemm_plan *np = (cuda_gemm_plan *)realloc(ci->plans, (size_t)cap * sizeof *np);
        if (!np)
            return brt_errf(err, BRT_ERR_NOMEM, "out of host memory");
        ci->plans = np;
        ci->cap_plans = cap;
    }
    cuda_gemm_plan *p = &ci->plans[ci->n_plans];
    memset(p, 0, sizeof *p);
    p->m = m;
    p->n = n;
    p->k = k;
    p->lda = lda;
    p->ldc = ldc;
    p->wdt = wdt;
    p->align = align;
    brt_status st = make_plan(be, p, algo, err);
    if (st != BRT_OK) {
        if (p->op)
            brt_lt.p_cublasLtMatmulDescDestroy(p->op);
        if (p->la)
            brt_lt.p_cublasLtMatrixLayoutDestroy(p->la);
        if (p->lb)
            brt_lt.p_cublasLtMatrixLayoutDestroy(p->lb);
        if (p->lc)
            brt_lt.p_cublasLtMatrixLayoutDestroy(p->lc);
        return st;
    }
    ci->n_plans++;
    *out = p;
    return BRT_OK;
}

/* rows of f32 -> packed rows of bf16 / f16 */
__global__ void k_pack_rows(const float *a, int64_t lda, void *out, int dt, int64_t m, int64_t k)
{
    const int64_t total = m * k;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / k, c = i % k;
        const float v = a[r * lda + c];
        if (dt == BRT_DT_BF16)
            ((uint16_t *)out)[i] = brt_dev_f32_to_bf16(v);
        else
            ((__half *)out)[i] = __float2half_rn(v);
    }
}

__global__ void k_add_bias(float *c, int64_t ldc, const float *bias, int64_t m, int64_t n)
{
    const int64_t total = m * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        c[(i / n) * ldc + i % n] += bias[i % n];
}

static unsigned grid_for(int64_t n)
{
    int64_t g = (n + 255) / 256;
    return (unsigned)(g < 8192 ? (g > 0 ? g : 1) : 8192);
}

brt_status brt_cuda_gemm(brt_backend *be, brt_mat a, int64_t m, const brt_weight *w, const brt_weight *bias, brt_mat c,
                         brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    if (m <= 0)
        return BRT_OK;
    if (!w->dev)
        return brt_errf(err, BRT_ERR_INTERNAL, "GEMM with weight %s that was never uploaded to GPU %d",
                        w->name ? w->name : "?", ci->dev);
    const int64_t n = w->rows, k = w->cols;
    const brt_dtype wdt = w->dev_dtype;
    const void *A = dptr(a);
    int64_t lda = a.ld;
    if (wdt != BRT_DT_F32) {
        void *packed;
        BRT_TRY(brt_cuda_scratch(be, (size_t)(m * k) * 2, &packed, err));
        k_pack_rows<<<grid_for(m * k), 256, 0, ci->stream>>>((const float *)A, lda, packed, wdt, m, k);
        LAUNCH_TRY("pack rows");
        A = packed;
        lda = k;
    }
    /* the largest power of two up to 256 dividing every address the GEMM reads or writes */
    uint64_t bits = (uint64_t)A | (uint64_t)w->dev | (uint64_t)dptr(c) | 256;
    const uint32_t align = (uint32_t)(bits & (~bits + 1));
    cuda_gemm_plan *p;
    BRT_TRY(find_plan(be, m, n, k, lda, c.ld, wdt, align, &p, err));
    const float alpha = 1.0f, beta = 0.0f;
    LT_TRY(brt_lt.p_cublasLtMatmul(ci->lt, p->op, &alpha, w->dev, p->la, A, p->lb, &beta, dptr(c), p->lc, dptr(c), p->lc,
                          p->has_algo ? &p->algo : NULL, ci->lt_ws, ci->lt_ws_size, ci->stream));
    if (bias && bias->data) {
        if (!bias->dev)
            return brt_errf(err, BRT_ERR_INTERNAL, "bias %s was never uploaded to GPU %d", bias->name ? bias->name : "?",
                            ci->dev);
        k_add_bias<<<grid_for(m * n), 256, 0, ci->stream>>>((float *)dptr(c), c.ld, (const float *)bias->dev, m, n);
        LAUNCH_TRY("bias");
    }
    return BRT_OK;
}
