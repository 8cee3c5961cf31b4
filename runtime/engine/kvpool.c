#include "engine/kvpool.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_BLOCKS 64 /* blocks allocated from the system at a time */

struct brt_kvpool {
    int32_t block_bytes;
    int64_t budget, used, peak; /* bytes of blocks handed out */
    int64_t allocated;          /* bytes obtained from the system */
    void **free_list;
    int64_t n_free, cap_free;
    void **chunks;
    int64_t n_chunks;
};

brt_status brt_kvpool_create(int64_t budget, int32_t block_bytes, brt_kvpool **out, brt_err *err)
{
    if (block_bytes < 64 || block_bytes % 64)
        return brt_errf(err, BRT_ERR_INVALID, "KV block size %d must be a positive multiple of 64", block_bytes);
    brt_kvpool *p = calloc(1, sizeof *p);
    if (!p)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    p->block_bytes = block_bytes;
    p->budget = budget;
    *out = p;
    return BRT_OK;
}

void brt_kvpool_destroy(brt_kvpool *p)
{
    if (!p)
        return;
    for (int64_t i = 0; i < p->n_chunks; i++)
        free(p->chunks[i]);
    free(p->chunks);
    free(p->free_list);
    free(p);
}

int32_t brt_kvpool_block_bytes(const brt_kvpool *p) { return p->block_bytes; }
int64_t brt_kvpool_used_bytes(const brt_kvpool *p) { return p->used; }
int64_t brt_kvpool_peak_bytes(const brt_kvpool *p) { return p->peak; }
int64_t brt_kvpool_budget_bytes(const brt_kvpool *p) { return p->budget; }

static void *pool_get(brt_kvpool *p)
{
    if (p->used + p->block_bytes > p->budget)
        return NULL;
    if (p->n_free == 0) {
        int64_t n = CHUNK_BLOCKS;
        if (p->allocated + n * p->block_bytes > p->budget)
            n = (p->budget - p->allocated) / p->block_bytes;
        if (n <= 0)
            return NULL;
        /* the free list must hold every block ever made (all may come back at once): grow it
         * first, so a failure leaves the pool as it was */
        int64_t total = p->allocated / p->block_bytes + n;
        if (p->cap_free < total) {
            int64_t cap = p->cap_free * 2 > total ? p->cap_free * 2 : total;
            void **nf = realloc(p->free_list, (size_t)cap * sizeof *nf);
            if (!nf)
                return NULL;
            p->free_list = nf;
            p->cap_free = cap;
        }
        void **nc = realloc(p->chunks, (size_t)(p->n_chunks + 1) * sizeof *nc);
        if (!nc)
            return NULL;
        p->chunks = nc;
        char *chunk = aligned_alloc(64, (size_t)(n * p->block_bytes));
        if (!chunk)
            return NULL;
        p->chunks[p->n_chunks++] = chunk;
        p->allocated += n * p->block_bytes;
        for (int64_t i = n - 1; i >= 0; i--)
            p->free_list[p->n_free++] = chunk + i * p->block_bytes;
    }
    p->used += p->block_bytes;
    if (p->used > p->peak)
        p->peak = p->used;
    return p->free_list[--p->n_free];
}

static void pool_put(brt_kvpool *p, void *b)
{
    p->free_list[p->n_free++] = b; /* cap_free >= every block ever made */
    p->used -= p->block_bytes;
}

static int32_t per_block(int32_t block_bytes, brt_dtype dt, int32_t width)
{
    int32_t es = dt == BRT_DT_F32 ? 4 : 2;
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
        void **nb = realloc(s->blocks, (size_t)cap * sizeof *nb);
        if (!nb)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        s->blocks = nb;
        s->cap_blocks = (int32_t)cap;
    }
    while (s->n_blocks < need) {
        void *b = pool_get(p);
        if (!b)
            return brt_errf(err, BRT_ERR_CAPACITY,
                            "KV pool exhausted (%lld of %lld bytes in use); admission control should have "
                            "prevented this",
                            (long long)p->used, (long long)p->budget);
        s->blocks[s->n_blocks++] = b;
    }
    return BRT_OK;
}

brt_status brt_kvseq_append_f32(brt_kvseq *s, brt_kvpool *p, const float *rows, int64_t ld, int32_t n, brt_err *err)
{
    BRT_TRY(brt_kvseq_reserve(s, p, n, err));
    for (int32_t i = 0; i < n; i++) {
        void *dst = brt_kvseq_slot(s, s->n + i);
        const float *src = rows + (int64_t)i * ld;
        if (s->dtype == BRT_DT_F32)
            memcpy(dst, src, (size_t)s->width * 4);
        else {
            uint16_t *d = dst;
            for (int32_t j = 0; j < s->width; j++)
                d[j] = brt_f32_to_bf16(src[j]);
        }
    }
    s->n += n;
    return BRT_OK;
}

void brt_kvseq_read_f32(const brt_kvseq *s, int32_t i, float *dst)
{
    const void *src = brt_kvseq_slot(s, i);
    if (s->dtype == BRT_DT_F32)
        memcpy(dst, src, (size_t)s->width * 4);
    else
        for (int32_t j = 0; j < s->width; j++)
            dst[j] = brt_bf16_to_f32(((const uint16_t *)src)[j]);
}

void brt_kvseq_drop_front(brt_kvseq *s, brt_kvpool *p, int32_t from)
{
    if (from <= 0)
        return;
    if (from >= s->n) {
        int32_t keep_blocks = 0;
        for (int32_t i = keep_blocks; i < s->n_blocks; i++)
            pool_put(p, s->blocks[i]);
        s->n_blocks = 0;
        s->n = 0;
        return;
    }
    size_t es = s->dtype == BRT_DT_F32 ? 4 : 2;
    int32_t left = s->n - from;
    for (int32_t i = 0; i < left; i++)
        memmove(brt_kvseq_slot(s, i), brt_kvseq_slot(s, from + i), (size_t)s->width * es);
    s->n = left;
    int32_t need = (left + s->per_block - 1) / s->per_block;
    for (int32_t i = need; i < s->n_blocks; i++)
        pool_put(p, s->blocks[i]);
    s->n_blocks = need;
}

int32_t brt_kvseq_spans(const brt_kvseq *k, const brt_kvseq *v, brt_kv_span *out, int32_t cap)
{
    int32_t w = 0;
    for (int32_t b = 0; b * k->per_block < k->n && w < cap; b++) {
        int32_t n = k->n - b * k->per_block;
        if (n > k->per_block)
            n = k->per_block;
        out[w++] = (brt_kv_span){k->blocks[b], v->blocks[b], n, k->width, k->dtype};
    }
    return w;
}
