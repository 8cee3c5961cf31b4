/* Per-stage pool of fixed-size KV blocks in the backend's memory, shared by every job in flight on
 * the stage, and the slot sequences built from it. A block holds block_bytes; a sequence of slots
 * of `width` elements holds block_bytes / (width * dtype size) slots per block. Jobs of any length
 * share one pool without fragmentation; the coordinator's admission control reserves a job's
 * worst case in blocks before it starts, so an allocation here failing is a bug, not a user
 * error. Slots are named by index: code above kernels/ never holds a pointer into the pool. */
#ifndef BRT_KVPOOL_H
#define BRT_KVPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"
#include "kernels.h"

typedef struct brt_kvpool brt_kvpool;

/* budget_bytes: the most this pool may allocate (chunks of blocks are allocated from the backend
 * as they are first needed). state_dtype: what the policies keep state in (the backend's). */
brt_status brt_kvpool_create(brt_backend *be, int64_t budget_bytes, int32_t block_bytes, brt_kvpool **out,
                             brt_err *err);
void brt_kvpool_destroy(brt_kvpool *p);
brt_backend *brt_kvpool_backend(const brt_kvpool *p);
brt_dtype brt_kvpool_state_dtype(const brt_kvpool *p);
int32_t brt_kvpool_block_bytes(const brt_kvpool *p);
int64_t brt_kvpool_used_bytes(const brt_kvpool *p);
int64_t brt_kvpool_peak_bytes(const brt_kvpool *p);
int64_t brt_kvpool_budget_bytes(const brt_kvpool *p);
/* A new budget (only when nothing beyond it is in use). */
void brt_kvpool_set_budget(brt_kvpool *p, int64_t budget_bytes);

/* Slots of `width` elements of one dtype, in pool blocks. */
typedef struct brt_kvseq {
    brt_dtype dtype;       /* F32 or BF16 */
    int32_t width;         /* elements per slot */
    int32_t per_block;     /* slots per block */
    int32_t n;             /* slots in use */
    int32_t n_blocks, cap_blocks;
    int32_t *blocks;       /* block ids in the pool */
} brt_kvseq;

void brt_kvseq_init(brt_kvseq *s, brt_dtype dt, int32_t width, const brt_kvpool *p);
void brt_kvseq_clear(brt_kvseq *s, brt_kvpool *p);          /* give every block back */
/* Make room for n more slots (allocating blocks); returns BRT_ERR_CAPACITY if the pool is full. */
brt_status brt_kvseq_reserve(brt_kvseq *s, brt_kvpool *p, int32_t more, brt_err *err);
/* The view of slots [i, i + n) (they must lie in one block: n <= slots left in i's block). */
brt_mat brt_kvseq_view(const brt_kvseq *s, const brt_kvpool *p, int32_t i);
/* Runs covering slots [i, i + n) (one per block touched) appended to *runs; returns the count
 * written (at most cap). */
int32_t brt_kvseq_runs(const brt_kvseq *s, const brt_kvpool *p, int32_t i, int32_t n, brt_run *runs, int32_t cap);
/* Make dst (in pool dp) a copy of src (in pool sp, of the same backend and block size): its old
 * slots given back, src's dtype, width and slots copied by the backend. BRT_ERR_CAPACITY when dp
 * is full (dst then holds no slots). */
brt_status brt_kvseq_copy(brt_kvseq *dst, brt_kvpool *dp, const brt_kvseq *src, const brt_kvpool *sp, brt_err *err);
/* Keep only slots [from, n): moves the survivors to the front (a backend copy). */
brt_status brt_kvseq_drop_front(brt_kvseq *s, brt_kvpool *p, int32_t from, brt_err *err);
/* Read slot i as f32 into host dst[width] (tests and diagnostics). */
brt_status brt_kvseq_read_f32(const brt_kvseq *s, const brt_kvpool *p, int32_t i, float *dst, brt_err *err);

/* Spans over slots [0, n) of two parallel sequences (K and V), one per block, appended to out.
 * Returns the number of spans written (at most cap). */
int32_t brt_kvseq_spans(const brt_kvseq *k, const brt_kvseq *v, const brt_kvpool *p, brt_kv_span *out, int32_t cap);

/* Blocks needed to hold n slots of width elements of dtype. */
int64_t brt_kvpool_blocks_for(int32_t block_bytes, brt_dtype dt, int32_t width, int64_t n);

#endif
