#include "engine/kvpool.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_BLOCKS 64 /* blocks allocated from the backend at a time (at least) */

struct brt_kvpool {
    brt_backend *be;
    int32_t block_bytes;
    int32_t chunk_blocks;        /* blocks per chunk */
    int64_t budget, used, peak;  /* bytes of blocks handed out */
    int64_t n_made;              /* blocks obtained from the backend */
    int32_t *free_list;          /* block ids, the lowest on top */
    int64_t n_free, cap_free;
    brt_buffer **chunks;
    int64_t n_chunks;
};

brt_status brt_kvpool_create(brt_backend *be, int64_t budget, int32_t block_bytes, brt_kvpool **out, brt_err *err)
{
    if (block_bytes < 64 || block_bytes % 64)
        return brt_errf(err, BRT_ERR_INVALID, "KV block size %d must be a positive multiple of 64", block_bytes);
    brt_kvpool *p = calloc(1, sizeof *p);
    if (!p)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    p->be = be;
    p->block_bytes = block_bytes;
    p->budget = budget;
    int64_t cb = be && be->min_alloc > 0 ? be->min_alloc / block_bytes : 0;
    p->chunk_blocks = (int32_t)(cb > CHUNK_BLOCKS ? (cb < (1 << 20) ? cb : 1 << 20) : CHUNK_BLOCKS);
    *out = p;
    return BRT_OK;
}

void brt_kvpool_destroy(brt_kvpool *p)
{
    if (!p)
        return;
    for (int64_t i = 0; i < p->n_chunks; i++)
        p->be->buffer_free(p->be, p->chunks[i]);
    free(p->chunks);
    free(p->free_list);
    free(p);
}

brt_backend *brt_kvpool_backend(const brt_kvpool *p) { return p->be; }
brt_dtype brt_kvpool_state_dtype(const brt_kvpool *p) { return p->be->state_dtype; }
int32_t brt_kvpool_block_bytes(const brt_kvpool *p) { return p->block_bytes; }
int64_t brt_kvpool_used_bytes(const brt_kvpool *p) { return p->used; }
int64_t brt_kvpool_peak_bytes(const brt_kvpool *p) { return p->peak; }
int64_t brt_kvpool_budget_bytes(const brt_kvpool *p) { return p->budget; }
void brt_kvpool_set_budget(brt_kvpool *p, int64_t budget) { p->budget = budget > p->used ? budget : p->used; }

/* A block id, or -1 when the budget (or the backend's memory) is spent. */
static int32_t pool_get(brt_kvpool *p)
{
    if (p->used + p->block_bytes > p->budget)
        return -1;
    if (p->n_free == 0) {
        int64_t n = p->chunk_blocks;
        if ((p->n_made + n) * p->block_bytes > p->budget)
            n = p->budget / p->block_bytes - p->n_made;
        if (n <= 0 || p->n_made + n > INT32_MAX)
            return -1;
        /* the free list must hold every block ever made (all may come back at once): grow it
         * first, so a failure leaves the pool as it was */
        int64_t total = p->n_made + n;
        if (p->cap_free < total) {
            int64_t cap = p->cap_free * 2 > total ? p->cap_free * 2 : total;
            int32_t *nf = realloc(p->free_list, (size_t)cap * sizeof *nf);
            if (!nf)
                return -1;
            p->free_list = nf;
            p->cap_free = cap;
        }
        brt_buffer **nc = realloc(p->chunks, (size_t)(p->n_chunks + 1) * sizeof *nc);
        if (!nc)
            return -1;
        p->chunks = nc;
        brt_buffer *chunk;
        brt_err e;
        if (p->be->buffer_alloc(p->be, (size_t)(n * p->block_bytes), BRT_MEM_DEVICE, &chunk, &e) != BRT_OK)
            return -1;
        p->chunks[p->n_chunks++] = chunk;
        /* ids of a chunk: chunk index * chunk_blocks + i (the last chunk may be shorter) */
        int64_t first = (p->n_chunks - 1) * (int64_t)p->chunk_blocks;
        for (int64_t i = n - 1; i >= 0; i--)
            p->free_list[p->n_free++] = (int32_t)(first + i);
        p->n_made += n;
    }
    p->used += p->block_bytes;
    if (p->used > p->peak)
        p->peak = p->used;
    return p->free_list[--p->n_free];
}

static void pool_put(brt_kvpool *p, int32_t b)
{
    p->free_list[p->n_free++] = b; /* cap_free >= every block ever made */
    p->used -= p->block_bytes;
}

static int32_t per_block(int32_t block_bytes, brt_dtype dt, int32_t width)
{
    int32_t es = (int32_t)brt_dtype_size(dt);
    int32_t n = block_bytes / (es * width);
    return n < 1 ? 1 : n;
}

int64_t brt_kvpool_blocks_for(int32_t block_bytes, brt_dtype dt, int32_t width, int64_t n)
{
    int32_t pb = per_block(block_bytes, dt, width);
    return (n + pb - 1) / pb;
}

void brt_kvseq_init(brt_kvseq *s, brt_dtype dt, int32_t width, const brt_kvpool *p)
{
    memset(s, 0, sizeof *s);
    s->dtype = dt;
    s->width = width;
    s->per_block = per_block(p->block_bytes, dt, width);
}

void brt_kvseq_clear(brt_kvseq *s, brt_kvpool *p)
{
    for (int32_t i = 0; i < s->n_blocks; i++)
        pool_put(p, s->blocks[i]);
    free(s->blocks);
    s->blocks = NULL;
    s->n = s->n_blocks = s->cap_blocks = 0;
}

brt_status brt_kvseq_reserve(brt_kvseq *s, brt_kvpool *p, int32_t more, brt_err *err)
{
    int64_t need = ((int64_t)s->n + more + s->per_block - 1) / s->per_block;
    if (need > s->cap_blocks) {
        int64_t cap = s->cap_blocks ? s->cap_blocks * 2 : 4;
        if (cap < need)
            cap = need;
        int32_t *nb = realloc(s->blocks, (size_t)cap * sizeof *nb);
        if (!nb)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        s->blocks = nb;
        s->cap_blocks = (int32_t)cap;
    }
    while (s->n_blocks < need) {
        int32_t b = pool_get(p);
        if (b < 0)
            return brt_errf(err, BRT_ERR_CAPACITY,
                            "KV pool exhausted (%lld of %lld bytes in use); admission control should have "
                            "prevented this",
                            (long long)p->used, (long long)p->budget);
        s->blocks[s->n_blocks++] = b;
    }
    return BRT_OK;
}

brt_mat brt_kvseq_view(const brt_kvseq *s, const brt_kvpool *p, int32_t i)
{
    const int32_t b = s->blocks[i / s->per_block];
    const int64_t es = (int64_t)brt_dtype_size(s->dtype);
    const int64_t off = (int64_t)(b % p->chunk_blocks) * p->block_bytes + (int64_t)(i % s->per_block) * s->width * es;
    return brt_mat_make(p->chunks[b / p->chunk_blocks], off, s->width, s->dtype);
}

int32_t brt_kvseq_runs(const brt_kvseq *s, const brt_kvpool *p, int32_t i, int32_t n, brt_run *runs, int32_t cap)
{
    int32_t w = 0;
    while (n > 0 && w < cap) {
        int32_t in_block = s->per_block - i % s->per_block, take = n < in_block ? n : in_block;
        runs[w++] = (brt_run){brt_kvseq_view(s, p, i), take};
        i += take;
        n -= take;
    }
    return w;
}

brt_status brt_kvseq_read_f32(const brt_kvseq *s, const brt_kvpool *p, int32_t i, float *dst, brt_err *err)
{
    brt_backend *be = p->be;
    if (s->dtype == BRT_DT_F32)
        return be->get_rows(be, brt_kvseq_view(s, p, i), dst, 1, s->width, err);
    uint16_t *tmp = malloc((size_t)s->width * sizeof *tmp);
    if (!tmp)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    brt_status st = be->get_rows(be, brt_kvseq_view(s, p, i), tmp, 1, s->width, err);
    for (int32_t j = 0; st == BRT_OK && j < s->width; j++)
        dst[j] = brt_bf16_to_f32(tmp[j]);
    free(tmp);
    return st;
}

#define COPY_BLOCKS 64 /* blocks per copy_rows call: bounds what a backend may stage */

brt_status brt_kvseq_copy(brt_kvseq *dst, brt_kvpool *dp, const brt_kvseq *src, const brt_kvpool *sp, brt_err *err)
{
    brt_kvseq_clear(dst, dp);
    brt_kvseq_init(dst, src->dtype, src->width, dp);
    if (src->n == 0)
        return BRT_OK;
    brt_status st = brt_kvseq_reserve(dst, dp, src->n, err);
    /* the same dtype, width and block size: slot i sits at the same place in both blocks i, so a
     * batch of whole blocks is one run per block on either side */
    brt_run d[COPY_BLOCKS], s[COPY_BLOCKS];
    const int32_t batch = COPY_BLOCKS * src->per_block;
    for (int32_t i = 0; st == BRT_OK && i < src->n; i += batch) {
        const int32_t n = src->n - i < batch ? src->n - i : batch;
        const int32_t wd = brt_kvseq_runs(dst, dp, i, n, d, COPY_BLOCKS),
                      ws = brt_kvseq_runs(src, sp, i, n, s, COPY_BLOCKS);
        st = dp->be->copy_rows(dp->be, d, wd, s, ws, src->width, NULL, NULL, 0, err);
    }
    if (st != BRT_OK)
        brt_kvseq_clear(dst, dp);
    else
        dst->n = src->n;
    return st;
}

brt_status brt_kvseq_drop_front(brt_kvseq *s, brt_kvpool *p, int32_t from, brt_err *err)
{
    if (from <= 0)
        return BRT_OK;
    if (from >= s->n) {
        for (int32_t i = 0; i < s->n_blocks; i++)
            pool_put(p, s->blocks[i]);
        s->n_blocks = 0;
        s->n = 0;
        return BRT_OK;
    }
    const int32_t left = s->n - from, nb = (left + s->per_block - 1) / s->per_block + 1;
    brt_run stack[2][16], *dst = stack[0], *src = stack[1];
    if (nb > 16) {
        dst = malloc((size_t)nb * 2 * sizeof *dst);
        if (!dst)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        src = dst + nb;
    }
    int32_t nd = brt_kvseq_runs(s, p, 0, left, dst, nb), ns = brt_kvseq_runs(s, p, from, left, src, nb);
    brt_status st = p->be->copy_rows(p->be, dst, nd, src, ns, s->width, NULL, NULL, 0, err);
    if (dst != stack[0])
        free(dst);
    BRT_TRY(st);
    s->n = left;
    int32_t need = (left + s->per_block - 1) / s->per_block;
    for (int32_t i = need; i < s->n_blocks; i++)
        pool_put(p, s->blocks[i]);
    s->n_blocks = need;
    return BRT_OK;
}

int32_t brt_kvseq_spans(const brt_kvseq *k, const brt_kvseq *v, const brt_kvpool *p, brt_kv_span *out, int32_t cap)
{
    int32_t w = 0;
    for (int32_t b = 0; b * k->per_block < k->n && w < cap; b++) {
        int32_t n = k->n - b * k->per_block;
        if (n > k->per_block)
            n = k->per_block;
        out[w++] = (brt_kv_span){brt_kvseq_view(k, p, b * k->per_block), brt_kvseq_view(v, p, b * v->per_block), n};
    }
    return w;
}
