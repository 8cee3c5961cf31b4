/* The CPU backend's memory: host allocations, weights used where they are mapped, and the row
 * movers (set, get, gather/scatter with dtype conversion and RoPE). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_impl.h"

static brt_status cpu_buffer_alloc(brt_backend *be, size_t bytes, int kind, brt_buffer **out, brt_err *err)
{
    *out = NULL;
    brt_buffer *b = calloc(1, sizeof *b);
    /* large allocations come from mmap: pages cost memory only once written */
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!b || !p) {
        free(b);
        free(p);
        return brt_errf(err, BRT_ERR_NOMEM, "CPU backend: out of memory allocating %.1f MiB", bytes / 1048576.0);
    }
    b->be = be;
    b->base = p;
    b->size = bytes;
    b->kind = kind;
    *out = b;
    return BRT_OK;
}

static void cpu_buffer_free(brt_backend *be, brt_buffer *b)
{
    if (!b)
        return;
    free(b->base);
    free(b);
}

/* Weight matrices are packed once into panels of 16 rows ([ceil(rows / 16)][cols][16], the
 * weight's dtype: no rounding), so that the GEMM reads each panel as one stream, 16 outputs per
 * load, instead of transposing rows on every call; vectors (norms, biases) and embedding tables
 * read by rows stay where they lie (the memory-mapped checkpoint). Costs: the GEMM weights' bytes
 * once more in memory, and one pass over them at load. Where the memory cannot be had, the GEMM
 * transposes from the file's layout (the same arithmetic, slower). */
typedef struct {
    const char *src;
    char *dst;
    int64_t rows, cols;
    size_t es;
} pack_job;

static void pack_task(void *arg, int64_t p, int thread)
{
    const pack_job *j = arg;
    const int64_t K = j->cols;
    char *d = j->dst + (size_t)p * (size_t)K * BRT_CPU_PANEL * j->es;
    /* k blocks of 64: 16 rows read in runs of 64 elements, written as 64 x 16 */
    for (int64_t k0 = 0; k0 < K; k0 += 64) {
        const int64_t k1 = k0 + 64 < K ? k0 + 64 : K;
        for (int r = 0; r < BRT_CPU_PANEL; r++) {
            const int64_t row = p * BRT_CPU_PANEL + r;
            char *o = d + ((size_t)k0 * BRT_CPU_PANEL + (size_t)r) * j->es;
            if (row >= j->rows) {
                for (int64_t k = k0; k < k1; k++, o += BRT_CPU_PANEL * j->es)
                    memset(o, 0, j->es);
                continue;
            }
            const char *in = j->src + ((size_t)row * (size_t)K + (size_t)k0) * j->es;
            if (j->es == 4)
                for (int64_t k = k0; k < k1; k++, in += 4, o += BRT_CPU_PANEL * 4)
                    memcpy(o, in, 4);
            else
                for (int64_t k = k0; k < k1; k++, in += 2, o += BRT_CPU_PANEL * 2)
                    memcpy(o, in, 2);
        }
    }
}

static brt_status cpu_weight_upload(brt_backend *be, brt_weight *w, brt_err *err)
{
    cpu_impl *ci = cpu_of(be);
    w->dev = NULL;
    w->dev_dtype = w->dtype;
    if (w->rows < 2 || w->cols < 1 || w->lookup_only || !w->data || getenv("BRT_CPU_NO_PACK"))
        return BRT_OK;
    for (int i = 0; i < ci->n_packed; i++) {
        const cpu_packed *p = &ci->packed[i];
        if (p->host == w->data && p->dtype == w->dtype && p->rows == w->rows && p->cols == w->cols) {
            w->dev = p->panels;
            return BRT_OK;
        }
    }
    if (ci->n_packed == ci->cap_packed) {
        int cap = ci->cap_packed ? 2 * ci->cap_packed : 64;
        cpu_packed *np = realloc(ci->packed, (size_t)cap * sizeof *np);
        if (!np)
            return BRT_OK; /* the GEMM reads the weight in place */
        ci->packed = np;
        ci->cap_packed = cap;
    }
    const size_t es = brt_dtype_size(w->dtype), panels = (size_t)((w->rows + BRT_CPU_PANEL - 1) / BRT_CPU_PANEL);
    const size_t bytes = panels * BRT_CPU_PANEL * (size_t)w->cols * es;
    void *dst = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!dst)
        return BRT_OK;
    pack_job j = {w->data, dst, w->rows, w->cols, es};
    brt_pool_run(ci->pool, (int64_t)panels, pack_task, &j);
    ci->packed[ci->n_packed++] = (cpu_packed){w->data, w->dtype, w->rows, w->cols, dst};
    w->dev = dst;
    return BRT_OK;
}

static void cpu_memory(brt_backend *be, int64_t *free_bytes, int64_t *total)
{
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    *total = pages > 0 && psz > 0 ? (int64_t)pages * psz : (int64_t)8 << 30;
    *free_bytes = avail > 0 && psz > 0 ? (int64_t)avail * psz : *total / 2;
}

static brt_status cpu_set_rows(brt_backend *be, brt_mat dst, const void *src, int64_t rows, int64_t cols,
                               brt_err *err)
{
    const size_t es = brt_dtype_size(dst.dtype), rb = (size_t)cols * es;
    char *d = cpu_ptr(dst);
    if (dst.ld == cols) {
        memcpy(d, src, rb * (size_t)rows);
        return BRT_OK;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy(d + (size_t)r * (size_t)dst.ld * es, (const char *)src + (size_t)r * rb, rb);
    return BRT_OK;
}

static brt_status cpu_get_rows(brt_backend *be, brt_mat src, void *dst, int64_t rows, int64_t cols, brt_err *err)
{
    const size_t es = brt_dtype_size(src.dtype), rb = (size_t)cols * es;
    const char *s = cpu_ptr(src);
    if (src.ld == cols) {
        memcpy(dst, s, rb * (size_t)rows);
        return BRT_OK;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy((char *)dst + (size_t)r * rb, s + (size_t)r * (size_t)src.ld * es, rb);
    return BRT_OK;
}

static brt_status cpu_zero_rows(brt_backend *be, brt_mat dst, int64_t rows, int64_t cols, brt_err *err)
{
    const size_t es = brt_dtype_size(dst.dtype);
    char *d = cpu_ptr(dst);
    for (int64_t r = 0; r < rows; r++)
        memset(d + (size_t)r * (size_t)dst.ld * es, 0, (size_t)cols * es);
    return BRT_OK;
}

static brt_status cpu_synchronize(brt_backend *be, brt_err *err) { return BRT_OK; }

/* ---- copy_rows --------------------------------------------------------------------------- */

typedef struct {
    const brt_simd_ops *simd;
    float **scratch;
    void **dst;
    const void **src;
    brt_dtype *sdt, *ddt;
    int64_t n, cols, chunk;
    const brt_rope *rope;
    const int32_t *pos;
    int32_t pos0;
} copy_job;

static void to_dtype_row(const float *x, void *dst, brt_dtype dt, int64_t n)
{
    if (dt == BRT_DT_F32)
        memcpy(dst, x, (size_t)n * sizeof(float));
    else
        for (int64_t j = 0; j < n; j++)
            ((uint16_t *)dst)[j] = brt_f32_to_bf16(x[j]);
}

static void copy_task(void *arg, int64_t t, int thread)
{
    copy_job *j = arg;
    const int64_t r0 = t * j->chunk, r1 = r0 + j->chunk < j->n ? r0 + j->chunk : j->n;
    float *tmp = j->scratch[thread];
    for (int64_t r = r0; r < r1; r++) {
        if (!j->rope) {
            if (j->sdt[r] == j->ddt[r])
                memcpy(j->dst[r], j->src[r], (size_t)j->cols * brt_dtype_size(j->sdt[r]));
            else {
                j->simd->to_f32_row(j->src[r], j->sdt[r], tmp, j->cols);
                to_dtype_row(tmp, j->dst[r], j->ddt[r], j->cols);
            }
            continue;
        }
        const brt_rope *rp = j->rope;
        const int32_t half = rp->head_dim / 2;
        const float *inv = cpu_ptr(rp->inv_freq);
        float cs[1024], sn[1024]; /* head_dim / 2 <= 1024, checked when a stage is made */
        float p = (float)(j->pos ? j->pos[r] : j->pos0 + (int32_t)r);
        if (rp->pos_div != 1.0f)
            p = p / rp->pos_div;
        for (int32_t i = 0; i < half; i++) {
            float ang = p * inv[i];
            cs[i] = cosf(ang);
            sn[i] = sinf(ang);
        }
        j->simd->to_f32_row(j->src[r], j->sdt[r], tmp, j->cols);
        j->simd->rope_row(tmp, (int32_t)(j->cols / rp->head_dim), rp->head_dim, cs, sn);
        to_dtype_row(tmp, j->dst[r], j->ddt[r], j->cols);
    }
}

/* Resolve runs into one address per row. */
static int64_t resolve(const brt_run *runs, int32_t n_runs, void **ptr, brt_dtype *dt)
{
    int64_t r = 0;
    for (int32_t i = 0; i < n_runs; i++) {
        const size_t es = brt_dtype_size(runs[i].m.dtype);
        char *base = cpu_ptr(runs[i].m);
        for (int32_t k = 0; k < runs[i].n; k++, r++) {
            ptr[r] = base + (size_t)k * (size_t)runs[i].m.ld * es;
            dt[r] = runs[i].m.dtype;
        }
    }
    return r;
}

/* Might a destination row share bytes with a source row? (The byte ranges each side covers meet:
 * then every source is read first, which costs one more copy and changes no value.) */
static int may_overlap(void *const *dst, const brt_dtype *ddt, void *const *src, const brt_dtype *sdt, int64_t n,
                       int64_t cols)
{
    const char *dlo = NULL, *dhi = NULL, *slo = NULL, *shi = NULL;
    for (int64_t r = 0; r < n; r++) {
        const char *d = dst[r], *de = d + cols * (int64_t)brt_dtype_size(ddt[r]);
        const char *s = src[r], *se = s + cols * (int64_t)brt_dtype_size(sdt[r]);
        if (!dlo || d < dlo)
            dlo = d;
        if (!dhi || de > dhi)
            dhi = de;
        if (!slo || s < slo)
            slo = s;
        if (!shi || se > shi)
            shi = se;
    }
    return n && dlo < shi && slo < dhi;
}

static brt_status cpu_copy_rows(brt_backend *be, const brt_run *dst, int32_t n_dst, const brt_run *src,
                                int32_t n_src, int64_t cols, const brt_rope *rope, const int32_t *pos, int32_t pos0,
                                brt_err *err)
{
    cpu_impl *ci = cpu_of(be);
    const int64_t n = brt_check_copy_rows(dst, n_dst, src, n_src, err);
    if (n <= 0)
        return n < 0 ? err->status : BRT_OK;
    if (rope && rope->head_dim / 2 > 1024)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "copy_rows: head dimension %d beyond the CPU kernels' 2048",
                        rope->head_dim);
    BRT_TRY(brt_cpu_scratch(be, cols + 64, err));
    void **dp = malloc((size_t)n * sizeof *dp);
    const void **sp = malloc((size_t)n * sizeof *sp);
    brt_dtype *ddt = malloc((size_t)n * sizeof *ddt), *sdt = malloc((size_t)n * sizeof *sdt);
    float *stage = NULL;
    brt_status st = BRT_OK;
    if (!dp || !sp || !ddt || !sdt) {
        st = brt_errf(err, BRT_ERR_NOMEM, "copy_rows: out of memory for %lld rows", (long long)n);
        goto out;
    }
    resolve(dst, n_dst, dp, ddt);
    resolve(src, n_src, (void **)sp, sdt);
    if (may_overlap(dp, ddt, (void *const *)sp, sdt, n, cols)) {
        /* read every source first (bf16 -> f32 is exact, so the result is the same) */
        stage = malloc((size_t)n * (size_t)cols * sizeof(float));
        if (!stage) {
            st = brt_errf(err, BRT_ERR_NOMEM, "copy_rows: out of memory staging %lld rows", (long long)n);
            goto out;
        }
        for (int64_t r = 0; r < n; r++) {
            ci->simd->to_f32_row(sp[r], sdt[r], stage + r * cols, cols);
            sp[r] = stage + r * cols;
            sdt[r] = BRT_DT_F32;
        }
    }
    copy_job j = {ci->simd, ci->scratch, dp, sp, sdt, ddt, n, cols, 0, rope, pos, pos0};
    int64_t tasks = (int64_t)be->n_threads * 4;
    if (tasks > n)
        tasks = n;
    /* small copies are not worth waking the pool */
    if (!rope && n * cols < 65536)
        tasks = 1;
    j.chunk = (n + tasks - 1) / tasks;
    if (tasks == 1)
        copy_task(&j, 0, 0);
    else
        brt_pool_run(ci->pool, (n + j.chunk - 1) / j.chunk, copy_task, &j);
out:
    free(dp);
    free(sp);
    free(ddt);
    free(sdt);
    free(stage);
    return st;
}

void brt_cpu_set_memory_ops(brt_backend *be)
{
    be->buffer_alloc = cpu_buffer_alloc;
    be->buffer_free = cpu_buffer_free;
    be->weight_upload = cpu_weight_upload;
    be->memory = cpu_memory;
    be->set_rows = cpu_set_rows;
    be->get_rows = cpu_get_rows;
    be->copy_rows = cpu_copy_rows;
    be->zero_rows = cpu_zero_rows;
    be->synchronize = cpu_synchronize;
}
