/* The CUDA backend's row ops: RMSNorm, RoPE, SwiGLU, residual add, embedding; and the GEMM entry
 * points of the table. */
#include "cuda/cuda_impl.h"

static unsigned grid_for(int64_t n)
{
    int64_t g = (n + 255) / 256;
    return (unsigned)(g < 16384 ? (g > 0 ? g : 1) : 16384);
}

/* block-wide f32 sum (blockDim.x a multiple of 32, <= 1024) */
__device__ float block_sum(float v)
{
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();
    if (l == 0)
        part[w] = v;
    __syncthreads();
    v = l < (int)(blockDim.x / 32) ? part[l] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void k_rmsnorm(const float *x, int64_t ldx, const float *w, float eps, float *y, int64_t ldy, int64_t dim)
{
    const float *xr = x + blockIdx.x * ldx;
    float *yr = y + blockIdx.x * ldy;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = block_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = w[i] * (xr[i] * r);
}

static brt_status cu_rmsnorm(brt_backend *be, brt_mat x, const brt_weight *w, float eps, brt_mat y, int64_t rows,
                             int64_t dim, brt_err *err)
{
    if (rows <= 0)
        return BRT_OK;
    k_rmsnorm<<<(unsigned)rows, 256, 0, cuda_of(be)->stream>>>((const float *)dptr(x), x.ld, (const float *)w->dev, eps,
                                                               (float *)dptr(y), y.ld, dim);
    LAUNCH_TRY("rmsnorm");
    return BRT_OK;
}

__global__ void k_silu_mul(float *g, int64_t ldg, const float *u, int64_t ldu, int64_t rows, int64_t n)
{
    const int64_t total = rows * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / n, c = i % n;
        const float x = g[r * ldg + c];
        g[r * ldg + c] = x / (1.0f + expf(-x)) * u[r * ldu + c];
    }
}

static brt_status cu_silu_mul(brt_backend *be, brt_mat gate, brt_mat up, int64_t rows, int64_t n, brt_err *err)
{
    if (rows <= 0)
        return BRT_OK;
    k_silu_mul<<<grid_for(rows * n), 256, 0, cuda_of(be)->stream>>>((float *)dptr(gate), gate.ld,
                                                                     (const float *)dptr(up), up.ld, rows, n);
    LAUNCH_TRY("silu_mul");
    return BRT_OK;
}

__global__ void k_add(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows, int64_t n)
{
    const int64_t total = rows * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / n, c = i % n;
        y[r * ldy + c] += x[r * ldx + c];
    }
}

static brt_status cu_add(brt_backend *be, brt_mat y, brt_mat x, int64_t rows, int64_t n, brt_err *err)
{
    if (rows <= 0)
        return BRT_OK;
    k_add<<<grid_for(rows * n), 256, 0, cuda_of(be)->stream>>>((float *)dptr(y), y.ld, (const float *)dptr(x), x.ld,
                                                                rows, n);
    LAUNCH_TRY("add");
    return BRT_OK;
}

/* one block per row: pairs (i, i + half) of every head */
__global__ void k_rope(float *x, int64_t ldx, int heads, int head_dim, const int32_t *pos, float pos_div,
                       const float *inv_freq)
{
    float *row = x + blockIdx.x * ldx;
    const int half = head_dim / 2;
    float p = (float)pos[blockIdx.x];
    if (pos_div != 1.0f)
        p = p / pos_div;
    for (int t = threadIdx.x; t < heads * half; t += blockDim.x) {
        const int h = t / half, i = t % half, j = h * head_dim + i;
        float sn, cs;
        sincosf(p * inv_freq[i], &sn, &cs);
        const float x1 = row[j], x2 = row[j + half];
        row[j] = x1 * cs - x2 * sn;
        row[j + half] = x2 * cs + x1 * sn;
    }
}

static brt_status cu_rope(brt_backend *be, brt_mat x, int64_t rows, int32_t heads, const brt_rope *rope,
                          const int32_t *pos, brt_err *err)
{
    if (rows <= 0)
        return BRT_OK;
    void *dpos;
    BRT_TRY(brt_cuda_upload(be, pos, (size_t)rows * sizeof *pos, &dpos, err));
    k_rope<<<(unsigned)rows, 128, 0, cuda_of(be)->stream>>>((float *)dptr(x), x.ld, heads, rope->head_dim,
                                                            (const int32_t *)dpos, rope->pos_div,
                                                            (const float *)dptr(rope->inv_freq));
    LAUNCH_TRY("rope");
    return BRT_OK;
}

__global__ void k_embed(const void *table, int tdt, const void *alt, int adt, const int32_t *ids, int64_t cols,
                        float *out, int64_t ldo)
{
    const int32_t id = ids[blockIdx.x];
    float *o = out + blockIdx.x * ldo;
    const void *src = id == BRT_EMBED_ALT ? alt : table;
    const int dt = id == BRT_EMBED_ALT ? adt : tdt;
    const int64_t row = id < 0 ? 0 : id;
    const size_t es = dt == BRT_DT_F32 ? 4 : 2;
    const char *r = (const char *)src + (size_t)row * (size_t)cols * es;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
        o[i] = id == BRT_EMBED_ZERO ? 0.0f : brt_dev_load(r, dt, i);
}

static brt_status cu_embed(brt_backend *be, const brt_weight *table, const brt_weight *alt, const int32_t *ids,
                           int64_t n, brt_mat out, brt_err *err)
{
    if (n <= 0)
        return BRT_OK;
    BRT_TRY(brt_check_embed_ids(table, alt && alt->dev, ids, n, err));
    if (!table->dev)
        return brt_errf(err, BRT_ERR_INTERNAL, "embedding table %s was never uploaded", table->name ? table->name : "?");
    void *dids;
    BRT_TRY(brt_cuda_upload(be, ids, (size_t)n * sizeof *ids, &dids, err));
    k_embed<<<(unsigned)n, 256, 0, cuda_of(be)->stream>>>(table->dev, table->dev_dtype, alt ? alt->dev : NULL,
                                                          alt ? alt->dev_dtype : 0, (const int32_t *)dids, table->cols,
                                                          (float *)dptr(out), out.ld);
    LAUNCH_TRY("embed");
    return BRT_OK;
}

static brt_status cu_logits(brt_backend *be, brt_mat x, int64_t m, const brt_weight *lm_head, brt_mat out, brt_err *err)
{
    return brt_cuda_gemm(be, x, m, lm_head, NULL, out, err);
}

void brt_cuda_set_compute_ops(brt_backend *be)
{
    be->gemm = brt_cuda_gemm;
    be->rmsnorm = cu_rmsnorm;
    be->rope = cu_rope;
    be->silu_mul = cu_silu_mul;
    be->add = cu_add;
    be->embed = cu_embed;
    be->logits = cu_logits;
}
