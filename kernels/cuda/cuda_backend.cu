/* The CUDA backend: one GPU per rank, one stream, the op table as kernels of our own and cuBLASLt
 * GEMMs. Memory is device memory from cudaMalloc (pinned host memory for BRT_MEM_HOST); weights are
 * copied to the GPU once, in the dtype the GEMMs want; every op is queued on the stream and only
 * get_rows and logit_rows wait for it. Precision "bf16" (default): bf16 GEMM inputs and bf16 KV
 * state with f32 accumulation and f32 activations; "f32": f32 everywhere, TF32 off, for the golden
 * tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda/cuda_impl.h"

extern "C" {
#include "base/log.h"
}

#define UPLOAD_ARENA (32u << 20) /* bytes of descriptors queued between two synchronisations */
#define LT_WORKSPACE (32u << 20)

brt_status brt_cuda_fail(brt_err *err, int dev, const char *what, const char *call, const char *file, int line)
{
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    const char *base = strrchr(file, '/');
    return brt_errf(err, BRT_ERR_INTERNAL, "GPU %d on %s: %s (%s at %s:%d)", dev, host, what, call,
                    base ? base + 1 : file, line);
}

extern "C" int brt_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: clear the sticky error */
        return 0;
    }
    return n;
}

brt_status brt_cuda_uploads(brt_backend *be, int count, const void *const *host, const size_t *n, void **out,
                            brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    size_t need = 0;
    for (int i = 0; i < count; i++)
        need += (n[i] + 255) / 256 * 256;
    if (ci->up_used + need > ci->up_size) {
        BRT_TRY(brt_cuda_wait(be, err)); /* every queued use of the arena is done */
        ci->up_used = 0;
        if (need > ci->up_size) {
            const size_t size = need * 2;
            cudaFreeHost(ci->up_host);
            cudaFree(ci->up_dev);
            be->held -= (int64_t)ci->up_size;
            ci->up_host = NULL;
            ci->up_dev = NULL;
            ci->up_size = 0;
            CU_TRY(cudaMallocHost((void **)&ci->up_host, size));
            CU_TRY(cudaMalloc((void **)&ci->up_dev, size));
            ci->up_size = size;
            be->held += (int64_t)size;
        }
    }
    for (int i = 0; i < count; i++) {
        memcpy(ci->up_host + ci->up_used, host[i], n[i]);
        CU_TRY(cudaMemcpyAsync(ci->up_dev + ci->up_used, ci->up_host + ci->up_used, n[i], cudaMemcpyHostToDevice,
                               ci->stream));
        out[i] = ci->up_dev + ci->up_used;
        ci->up_used += (n[i] + 255) / 256 * 256;
    }
    return BRT_OK;
}

brt_status brt_cuda_upload(brt_backend *be, const void *host, size_t n, void **out, brt_err *err)
{
    return brt_cuda_uploads(be, 1, &host, &n, out, err);
}

brt_status brt_cuda_scratch(brt_backend *be, size_t n, void **out, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    if (n > ci->scratch_size) {
        BRT_TRY(brt_cuda_wait(be, err)); /* queued ops may still read the old one */
        cudaFree(ci->scratch);
        be->held -= (int64_t)ci->scratch_size;
        ci->scratch = NULL;
        ci->scratch_size = 0;
        size_t size = n < ((size_t)64 << 20) ? ((size_t)64 << 20) : n + n / 4;
        CU_TRY(cudaMalloc(&ci->scratch, size));
        ci->scratch_size = size;
        be->held += (int64_t)size;
    }
    *out = ci->scratch;
    return BRT_OK;
}

/* ---- memory ---------------------------------------------------------------------------- */

static brt_status cu_buffer_alloc(brt_backend *be, size_t bytes, int kind, brt_buffer **out, brt_err *err)
{
    *out = NULL;
    brt_buffer *b = (brt_buffer *)calloc(1, sizeof *b);
    if (!b)
        return brt_errf(err, BRT_ERR_NOMEM, "out of host memory");
    void *p = NULL;
    cudaError_t e = kind == BRT_MEM_HOST ? cudaMallocHost(&p, bytes ? bytes : 1) : cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        free(b);
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        return brt_errf(err, BRT_ERR_NOMEM, "GPU %d: cannot allocate %.1f MiB of %s memory (%.1f of %.1f MiB free): %s",
                        cuda_of(be)->dev, bytes / 1048576.0, kind == BRT_MEM_HOST ? "pinned host" : "device",
                        fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
    }
    b->be = be;
    b->base = p;
    b->size = bytes;
    b->kind = kind;
    if (kind == BRT_MEM_DEVICE)
        be->held += (int64_t)bytes;
    *out = b;
    return BRT_OK;
}

static void cu_buffer_free(brt_backend *be, brt_buffer *b)
{
    if (!b)
        return;
    cudaStreamSynchronize(cuda_of(be)->stream);
    if (b->kind == BRT_MEM_HOST)
        cudaFreeHost(b->base);
    else {
        cudaFree(b->base);
        be->held -= (int64_t)b->size;
    }
    free(b);
}

static void cu_memory(brt_backend *be, int64_t *free_bytes, int64_t *total)
{
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess)
        cudaGetLastError();
    *free_bytes = (int64_t)fr;
    *total = (int64_t)tot;
}

__global__ void k_convert(const void *src, int sdt, void *dst, int ddt, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        brt_dev_store(dst, ddt, i, brt_dev_load(src, sdt, i));
}

/* f32 state and GEMMs in f32 mode; in bf16 mode matrices go to bf16 (f16 ones stay f16), vectors
 * (norms, biases) stay f32 */
static brt_dtype device_dtype(const cuda_impl *ci, const brt_weight *w)
{
    if (ci->f32 || w->rows == 1)
        return BRT_DT_F32;
    return w->dtype == BRT_DT_F16 ? BRT_DT_F16 : BRT_DT_BF16;
}

static brt_status cu_weight_upload(brt_backend *be, brt_weight *w, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    const int64_t elems = w->rows * w->cols;
    const brt_dtype ddt = device_dtype(ci, w);
    for (int i = 0; i < ci->n_w; i++)
        if (ci->w[i].host == w->data && ci->w[i].host_dtype == w->dtype && ci->w[i].elems == elems &&
            ci->w[i].dev_dtype == ddt) {
            w->dev = ci->w[i].dev;
            w->dev_dtype = ddt;
            return BRT_OK;
        }
    if (ci->n_w == ci->cap_w) {
        int cap = ci->cap_w ? ci->cap_w * 2 : 256;
        cuda_weight *nw = (cuda_weight *)realloc(ci->w, (size_t)cap * sizeof *nw);
        if (!nw)
            return brt_errf(err, BRT_ERR_NOMEM, "out of host memory");
        ci->w = nw;
        ci->cap_w = cap;
    }
    void *dev = NULL;
    const size_t sbytes = (size_t)elems * brt_dtype_size(w->dtype), dbytes = (size_t)elems * brt_dtype_size(ddt);
    cudaError_t e = cudaMalloc(&dev, dbytes ? dbytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return brt_errf(err, BRT_ERR_NOMEM,
                        "GPU %d: no room for weight %s (%.1f MiB as %s; %.1f of %.1f MiB free): give this rank fewer "
                        "layers (more pipeline stages)",
                        ci->dev, w->name ? w->name : "?", dbytes / 1048576.0, brt_dtype_name(ddt), fr / 1048576.0,
                        tot / 1048576.0);
    }
    brt_status st = BRT_OK;
    if (ddt == w->dtype) {
        if ((e = cudaMemcpyAsync(dev, w->data, sbytes, cudaMemcpyHostToDevice, ci->stream)) != cudaSuccess)
            st = brt_cuda_fail(err, ci->dev, cudaGetErrorString(e), "cudaMemcpyAsync (weight)", __FILE__, __LINE__);
    } else {
        /* through the scratch in pieces, converted on the device */
        const size_t piece = (size_t)32 << 20, es = brt_dtype_size(w->dtype), eo = brt_dtype_size(ddt);
        void *tmp;
        st = brt_cuda_scratch(be, piece, &tmp, err);
        for (size_t done = 0; st == BRT_OK && done < (size_t)elems;) {
            size_t n = (size_t)elems - done < piece / es ? (size_t)elems - done : piece / es;
            if ((e = cudaMemcpyAsync(tmp, (const char *)w->data + done * es, n * es, cudaMemcpyHostToDevice,
                                     ci->stream)) != cudaSuccess) {
                st = brt_cuda_fail(err, ci->dev, cudaGetErrorString(e), "cudaMemcpyAsync (weight)", __FILE__, __LINE__);
                break;
            }
            k_convert<<<(unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096), 256, 0, ci->stream>>>(
                tmp, w->dtype, (char *)dev + done * eo, ddt, (int64_t)n);
            if ((e = cudaGetLastError()) != cudaSuccess) {
                st = brt_cuda_fail(err, ci->dev, cudaGetErrorString(e), "launch of convert", __FILE__, __LINE__);
                break;
            }
            st = brt_cuda_wait(be, err); /* tmp is reused by the next piece */
            done += n;
        }
    }
    if (st != BRT_OK) {
        cudaFree(dev);
        return st;
    }
    ci->w[ci->n_w++] = (cuda_weight){w->data, w->dtype, elems, dev, ddt};
    be->held += (int64_t)dbytes;
    w->dev = dev;
    w->dev_dtype = ddt;
    return BRT_OK;
}

static brt_status cu_set_rows(brt_backend *be, brt_mat dst, const void *src, int64_t rows, int64_t cols, brt_err *err)
{
    const size_t es = brt_dtype_size(dst.dtype);
    if (rows <= 0 || cols <= 0)
        return BRT_OK;
    CU_TRY(cudaMemcpy2DAsync(dptr(dst), (size_t)dst.ld * es, src, (size_t)cols * es, (size_t)cols * es, (size_t)rows,
                             cudaMemcpyHostToDevice, cuda_of(be)->stream));
    return BRT_OK;
}

static brt_status cu_get_rows(brt_backend *be, brt_mat src, void *dst, int64_t rows, int64_t cols, brt_err *err)
{
    const size_t es = brt_dtype_size(src.dtype);
    if (rows <= 0 || cols <= 0)
        return BRT_OK;
    CU_TRY(cudaMemcpy2DAsync(dst, (size_t)cols * es, dptr(src), (size_t)src.ld * es, (size_t)cols * es, (size_t)rows,
                             cudaMemcpyDeviceToHost, cuda_of(be)->stream));
    BRT_TRY(brt_cuda_wait(be, err));
    return BRT_OK;
}

static brt_status cu_zero_rows(brt_backend *be, brt_mat dst, int64_t rows, int64_t cols, brt_err *err)
{
    const size_t es = brt_dtype_size(dst.dtype);
    if (rows <= 0 || cols <= 0)
        return BRT_OK;
    CU_TRY(cudaMemset2DAsync(dptr(dst), (size_t)dst.ld * es, 0, (size_t)cols * es, (size_t)rows, cuda_of(be)->stream));
    return BRT_OK;
}

static brt_status cu_synchronize(brt_backend *be, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    BRT_TRY(brt_cuda_wait(be, err));
    ci->up_used = 0;
    return BRT_OK;
}

/* ---- copy_rows ----------------------------------------------------------------------------- */

typedef struct row_desc {
    uint64_t src, dst;   /* device addresses */
    int32_t pos;         /* RoPE position */
    int32_t sdt, ddt;    /* brt_dtype */
    int32_t pad;
} row_desc;

/* one block per row; with RoPE each thread rotates pairs (i, i + half) of a head */
__global__ void k_copy_rows(const row_desc *rows, int64_t cols, const float *inv_freq, int head_dim, float pos_div,
                            int rope)
{
    const row_desc d = rows[blockIdx.x];
    const void *src = (const void *)d.src;
    void *dst = (void *)d.dst;
    if (!rope) {
        for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
            brt_dev_store(dst, d.ddt, i, brt_dev_load(src, d.sdt, i));
        return;
    }
    const int half = head_dim / 2;
    float p = (float)d.pos;
    if (pos_div != 1.0f)
        p = p / pos_div;
    const int64_t pairs = cols / head_dim * half;
    for (int64_t t = threadIdx.x; t < pairs; t += blockDim.x) {
        const int64_t h = t / half, i = t % half, j = h * head_dim + i;
        const float ang = p * inv_freq[i];
        float sn, cs;
        sincosf(ang, &sn, &cs);
        const float x1 = brt_dev_load(src, d.sdt, j), x2 = brt_dev_load(src, d.sdt, j + half);
        brt_dev_store(dst, d.ddt, j, x1 * cs - x2 * sn);
        brt_dev_store(dst, d.ddt, j + half, x2 * cs + x1 * sn);
    }
}

static brt_status cu_copy_rows(brt_backend *be, const brt_run *dst, int32_t n_dst, const brt_run *src, int32_t n_src,
                               int64_t cols, const brt_rope *rope, const int32_t *pos, int32_t pos0, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    const int64_t n = brt_check_copy_rows(dst, n_dst, src, n_src, err);
    if (n <= 0)
        return n < 0 ? err->status : BRT_OK;
    row_desc *d = (row_desc *)malloc((size_t)n * sizeof *d);
    if (!d)
        return brt_errf(err, BRT_ERR_NOMEM, "copy_rows: out of host memory for %lld rows", (long long)n);
    uint64_t dlo = UINT64_MAX, dhi = 0, slo = UINT64_MAX, shi = 0;
    int64_t r = 0;
    for (int32_t i = 0; i < n_dst; i++)
        for (int32_t k = 0; k < dst[i].n; k++, r++) {
            const size_t es = brt_dtype_size(dst[i].m.dtype);
            d[r].dst = (uint64_t)(dptr(dst[i].m) + (size_t)k * (size_t)dst[i].m.ld * es);
            d[r].ddt = dst[i].m.dtype;
            d[r].pos = rope ? (pos ? pos[r] : pos0 + (int32_t)r) : 0;
            dlo = d[r].dst < dlo ? d[r].dst : dlo;
            dhi = d[r].dst + cols * es > dhi ? d[r].dst + cols * es : dhi;
        }
    r = 0;
    for (int32_t i = 0; i < n_src; i++)
        for (int32_t k = 0; k < src[i].n; k++, r++) {
            const size_t es = brt_dtype_size(src[i].m.dtype);
            d[r].src = (uint64_t)(dptr(src[i].m) + (size_t)k * (size_t)src[i].m.ld * es);
            d[r].sdt = src[i].m.dtype;
            slo = d[r].src < slo ? d[r].src : slo;
            shi = d[r].src + cols * es > shi ? d[r].src + cols * es : shi;
        }
    brt_status st = BRT_OK;
    const float *inv = rope ? (const float *)dptr(rope->inv_freq) : NULL;
    const int hd = rope ? rope->head_dim : 0;
    const float pdiv = rope ? rope->pos_div : 1.0f;
    if (dlo < shi && slo < dhi) {
        /* the ranges may meet: every source is read into the scratch first (as f32, exact), then
         * written out */
        void *stage;
        row_desc *d2 = (row_desc *)malloc((size_t)n * sizeof *d2);
        if (!d2)
            st = brt_errf(err, BRT_ERR_NOMEM, "copy_rows: out of host memory");
        if (st == BRT_OK)
            st = brt_cuda_scratch(be, (size_t)n * (size_t)cols * 4, &stage, err);
        void *dd = NULL, *dd2 = NULL;
        if (st == BRT_OK) {
            for (int64_t i = 0; i < n; i++) {
                d2[i] = d[i];
                d2[i].dst = (uint64_t)((char *)stage + (size_t)i * (size_t)cols * 4);
                d2[i].ddt = BRT_DT_F32;
                d[i].src = d2[i].dst;
                d[i].sdt = BRT_DT_F32;
            }
            const void *tabs[2] = {d2, d};
            const size_t sizes[2] = {(size_t)n * sizeof *d2, (size_t)n * sizeof *d};
            void *devs[2];
            st = brt_cuda_uploads(be, 2, tabs, sizes, devs, err);
            dd2 = devs[0];
            dd = devs[1];
        }
        if (st == BRT_OK) {
            k_copy_rows<<<(unsigned)n, 128, 0, ci->stream>>>((const row_desc *)dd2, cols, NULL, 0, 1.0f, 0);
            k_copy_rows<<<(unsigned)n, 128, 0, ci->stream>>>((const row_desc *)dd, cols, inv, hd, pdiv, rope != NULL);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess)
                st = brt_cuda_fail(err, ci->dev, cudaGetErrorString(e), "k_copy_rows", __FILE__, __LINE__);
        }
        free(d2);
    } else {
        void *dd = NULL;
        st = brt_cuda_upload(be, d, (size_t)n * sizeof *d, &dd, err);
        if (st == BRT_OK) {
            k_copy_rows<<<(unsigned)n, 128, 0, ci->stream>>>((const row_desc *)dd, cols, inv, hd, pdiv, rope != NULL);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess)
                st = brt_cuda_fail(err, ci->dev, cudaGetErrorString(e), "k_copy_rows", __FILE__, __LINE__);
        }
    }
    free(d);
    return st;
}

/* ---- the backend ---------------------------------------------------------------------------- */

static void cu_destroy(brt_backend *be)
{
    if (!be)
        return;
    cuda_impl *ci = cuda_of(be);
    if (ci) {
        cudaSetDevice(ci->dev);
        brt_cuda_link_close(ci); /* first: a dead peer must not hang the synchronisation below */
        if (ci->stream)
            cudaStreamSynchronize(ci->stream);
        brt_cuda_gemm_free(ci);
        if (ci->lt)
            brt_lt.p_cublasLtDestroy(ci->lt);
        for (int i = 0; i < ci->n_w; i++)
            cudaFree(ci->w[i].dev);
        free(ci->w);
        cudaFree(ci->scratch);
        cudaFree(ci->lt_ws);
        cudaFree(ci->up_dev);
        cudaFreeHost(ci->up_host);
        if (ci->stream)
            cudaStreamDestroy(ci->stream);
        free(ci);
    }
    free(be);
}

extern "C" brt_status brt_cuda_backend_create(int gpu, const char *precision, brt_backend **out, brt_err *err)
{
    *out = NULL;
    int n = brt_cuda_device_count();
    if (n == 0)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "--device cuda: no GPU is visible to this process (CUDA_VISIBLE_DEVICES=%s)",
                        getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
    if (gpu < 0 || gpu >= n)
        return brt_errf(err, BRT_ERR_INVALID, "--device cuda: GPU %d asked for, %d visible", gpu, n);
    if (precision && *precision && strcmp(precision, "bf16") && strcmp(precision, "f32"))
        return brt_errf(err, BRT_ERR_INVALID, "--precision %s: bf16 or f32", precision);
    brt_backend *be = (brt_backend *)calloc(1, sizeof *be);
    cuda_impl *ci = (cuda_impl *)calloc(1, sizeof *ci);
    if (!be || !ci) {
        free(be);
        free(ci);
        return brt_errf(err, BRT_ERR_NOMEM, "out of host memory");
    }
    be->impl = ci;
    be->destroy = cu_destroy;
    ci->dev = gpu;
    ci->f32 = precision && !strcmp(precision, "f32");
    const char *algo = getenv("BRT_GEMM_ALGO");
    ci->fixed_algo = algo && !strcmp(algo, "fixed");
    brt_status st = BRT_OK;
#define INIT_TRY(call)                                                                               \
    do {                                                                                             \
        cudaError_t e_ = (call);                                                                     \
        if (e_ != cudaSuccess) {                                                                     \
            st = brt_cuda_fail(err, gpu, cudaGetErrorString(e_), #call, __FILE__, __LINE__);         \
            goto fail;                                                                               \
        }                                                                                            \
    } while (0)
    INIT_TRY(cudaSetDevice(gpu));
    cudaDeviceProp prop;
    INIT_TRY(cudaGetDeviceProperties(&prop, gpu));
    if (prop.major < 8) {
        st = brt_errf(err, BRT_ERR_UNSUPPORTED, "GPU %d (%s) is compute capability %d.%d; beaconrt needs 8.0 or newer",
                      gpu, prop.name, prop.major, prop.minor);
        goto fail;
    }
    ci->sm_count = prop.multiProcessorCount;
    ci->smem_optin = prop.sharedMemPerBlockOptin;
    INIT_TRY(cudaStreamCreateWithFlags(&ci->stream, cudaStreamNonBlocking));
    if ((st = brt_cuda_load_lt(err)) != BRT_OK)
        goto fail;
    if (brt_lt.p_cublasLtCreate(&ci->lt) != CUBLAS_STATUS_SUCCESS) {
        st = brt_errf(err, BRT_ERR_INTERNAL, "GPU %d: cuBLASLt could not start", gpu);
        goto fail;
    }
    ci->lt_ws_size = LT_WORKSPACE;
    INIT_TRY(cudaMalloc(&ci->lt_ws, ci->lt_ws_size));
    ci->up_size = UPLOAD_ARENA;
    INIT_TRY(cudaMallocHost((void **)&ci->up_host, ci->up_size));
    INIT_TRY(cudaMalloc((void **)&ci->up_dev, ci->up_size));
    be->held = (int64_t)(ci->lt_ws_size + ci->up_size);
#undef INIT_TRY
    snprintf(ci->name, sizeof ci->name, "cuda:%d (%.120s, sm_%d%d, %s)", gpu, prop.name, prop.major, prop.minor,
             ci->f32 ? "f32" : "bf16");
    be->name = ci->name;
    be->device = "cuda";
    be->n_threads = 1;
    be->state_dtype = ci->f32 ? BRT_DT_F32 : BRT_DT_BF16;
    be->min_alloc = (int64_t)256 << 20; /* few large cudaMallocs for the KV pool */
    be->buffer_alloc = cu_buffer_alloc;
    be->buffer_free = cu_buffer_free;
    be->weight_upload = cu_weight_upload;
    be->memory = cu_memory;
    be->set_rows = cu_set_rows;
    be->get_rows = cu_get_rows;
    be->copy_rows = cu_copy_rows;
    be->zero_rows = cu_zero_rows;
    be->synchronize = cu_synchronize;
    brt_cuda_set_compute_ops(be);
    brt_cuda_set_attention_op(be);
    brt_cuda_set_sample_op(be);
    brt_cuda_set_link_ops(be);
    *out = be;
    return BRT_OK;
fail:
    cu_destroy(be);
    return st;
}
