/* Per-stage pool of fixed-size KV blocks, shared by every job in flight on the stage, and the
 * slot sequences built from it. A block holds BRT_KV_BLOCK_BYTES; a sequence of f32 slots of
 * width `width` floats holds bytes/(4*width) slots per block (bf16: twice as many). Jobs of any
 * length share one pool without fragmentation; the coordinator's admission control reserves a
 * job's worst case in blocks before it starts, so an allocation here failing is a bug, not a
 * user error. */
#ifndef BRT_KVPOOL_H
#define BRT_KVPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"
#include "kernels.h"

typedef struct brt_kvpool brt_kvpool;

/* budget_bytes: the most this pool may allocate (blocks are allocated lazily in chunks). */
brt_status brt_kvpool_create(int64_t budget_bytes, int32_t block_bytes, brt_kvpool **out, brt_err *err);
void brt_kvpool_destroy(brt_kvpool *p);
int32_t brt_kvpool_block_bytes(const brt_kvpool *p);
int64_t brt_kvpool_used_bytes(const brt_kvpool *p);
int64_t brt_kvpool_peak_bytes(const brt_kvpool *p);
int64_t brt_kvpool_budget_bytes(const brt_kvpool *p);

/* Slots of `width` elements of one dtype, in pool blocks. */
typedef struct brt_kvseq {
    brt_dtype dtype;       /* F32 or BF16 */
    int32_t width;         /* elements per slot */
    int32_t per_block;     /* slots per block */
    int32_t n;             /* slots in use */
    int32_t n_blocks, cap_blocks;
    void **blocks;         /* block base pointers */
} brt_kvseq;

void brt_kvseq_init(brt_kvseq *s, brt_dtype dt, int32_t width, const brt_kvpool *p);
void brt_kvseq_clear(brt_kvseq *s, brt_kvpool *p);          /* give every block back */
/* Make room for n more slots (allocating blocks); returns BRT_ERR_CAPACITY if the pool is full. */
brt_status brt_kvseq_reserve(brt_kvseq *s, brt_kvpool *p, int32_t more, brt_err *err);
/* Pointer to slot i (must be < capacity). */
static inline void *brt_kvseq_slot(const brt_kvseq *s, int32_t i)
{
    size_t es = s->dtype == BRT_DT_F32 ? 4 : 2;
    return (char *)s->blocks[i / s->per_block] + (size_t)(i % s->per_block) * (size_t)s->width * es;
}
/* Append n slots of f32 rows (row stride ld), converting to the sequence's dtype. */
brt_status brt_kvseq_append_f32(brt_kvseq *s, brt_kvpool *p, const float *rows, int64_t ld, int32_t n, brt_err *err);
/* Keep only slots [from, n): shifts the survivors to the front. */
void brt_kvseq_drop_front(brt_kvseq *s, brt_kvpool *p, int32_t from);
/* Read slot i as f32 into dst[width]. */
void brt_kvseq_read_f32(const brt_kvseq *s, int32_t i, float *dst);

/* Spans over slots [0, n) of two parallel sequences (K and V), one per block, appended to out.
 * Returns the number of spans written (at most cap). */
int32_t brt_kvseq_spans(const brt_kvseq *k, const brt_kvseq *v, brt_kv_span *out, int32_t cap);

/* Blocks needed to hold n slots of width elements of dtype. */
int64_t brt_kvpool_blocks_for(int32_t block_bytes, brt_dtype dt, int32_t width, int64_t n);

#endif
