/* A job's state on a stage, taken out and put back: as an image (bytes, for host memory and
 * disk) and as a kept copy in the backend's own memory (the state cache's device tier: GPU memory
 * with the CUDA backend), which goes back into a job by a copy between pools, with no host round
 * trip. */
#include <stdlib.h>
#include <string.h>

#include "engine/stage_impl.h"

#define IMAGE_MAGIC 0x4a545242u /* "BRTJ" */
#define IMAGE_VERSION 1u

/* js's image, its slots in pool, appended to out. */
static brt_status image_of(brt_stage *s, const brt_job_state *js, brt_kvpool *pool, brt_buf *out, brt_err *err)
{
    const uint32_t head[] = {IMAGE_MAGIC, IMAGE_VERSION, (uint32_t)s->o.layer_begin, (uint32_t)s->o.layer_end,
                             js->next_index, (uint32_t)js->raw_kind_n};
    if (brt_buf_append(out, head, sizeof head) || brt_buf_append(out, js->raw_kind, (size_t)js->raw_kind_n))
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for a state image");
    for (int32_t l = 0; l < js->n_layers; l++)
        BRT_TRY(brt_layer_state_export(&js->layers[l], pool, out, err));
    return s->be->synchronize(s->be, err);
}

brt_status brt_stage_job_export(brt_stage *s, uint64_t job, brt_buf *out, brt_err *err)
{
    const brt_job_state *js = brt_u64map_get(&s->jobs, job);
    if (!js)
        return brt_errf(err, BRT_ERR_NOT_FOUND, "job %llu has no state on this stage", (unsigned long long)job);
    return image_of(s, js, s->pool, out, err);
}

brt_status brt_stage_job_import(brt_stage *s, uint64_t job, const void *image, size_t len, brt_err *err)
{
    brt_stage_release(s, job);
    uint32_t head[6];
    if (len < sizeof head)
        return brt_errf(err, BRT_ERR_FORMAT, "a state image of %zu bytes is shorter than its header", len);
    memcpy(head, image, sizeof head);
    if (head[0] != IMAGE_MAGIC || head[1] != IMAGE_VERSION)
        return brt_errf(err, BRT_ERR_FORMAT, "not a version-%u state image", IMAGE_VERSION);
    if (head[2] != (uint32_t)s->o.layer_begin || head[3] != (uint32_t)s->o.layer_end)
        return brt_errf(err, BRT_ERR_FORMAT, "a state image of layers %u-%u for a stage of layers %d-%d", head[2],
                        head[3] - 1, s->o.layer_begin, s->o.layer_end - 1);
    const uint8_t *cur = (const uint8_t *)image + sizeof head, *end = (const uint8_t *)image + len;
    if (head[5] > (uint32_t)(end - cur))
        return brt_errf(err, BRT_ERR_FORMAT, "the state image is shorter than its slot kinds");
    brt_job_state *js = brt_stage_job_new(s, job);
    if (!js)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for job state");
    brt_status st = BRT_OK;
    if (head[5]) {
        js->raw_kind = malloc(head[5]);
        if (!js->raw_kind)
            st = brt_errf(err, BRT_ERR_NOMEM, "out of memory for job state");
        else {
            memcpy(js->raw_kind, cur, head[5]);
            js->raw_kind_n = js->raw_kind_cap = (int32_t)head[5];
            cur += head[5];
        }
    }
    for (int32_t l = 0; st == BRT_OK && l < js->n_layers; l++)
        st = brt_layer_state_import(&js->layers[l], s->pool, &cur, end, err);
    if (st == BRT_OK && cur != end)
        st = brt_errf(err, BRT_ERR_FORMAT, "%zu bytes follow the state image", (size_t)(end - cur));
    if (st == BRT_OK)
        st = s->be->synchronize(s->be, err);
    if (st != BRT_OK) {
        brt_stage_release(s, job);
        return st;
    }
    js->next_index = head[4];
    return BRT_OK;
}

/* ---- kept copies ---------------------------------------------------------------------------- */

struct brt_stage_kept {
    brt_job_state js;   /* its layers' slots in the stage's keep pool */
    int64_t bytes;      /* keep-pool bytes it holds */
};

brt_status brt_stage_keep_pool(brt_stage *s, int64_t bytes, brt_err *err)
{
    if (s->keep_pool || bytes <= 0)
        return BRT_OK;
    return brt_kvpool_create(s->be, bytes, s->o.block_bytes, &s->keep_pool, err);
}

/* dst (layers zeroed, or given back to dp; raw_kind NULL) becomes a copy of src: its next step,
 * its slot kinds, its layers' regions copied from pool sp into pool dp by the backend. On failure
 * dst may hold part of the copy: the caller frees it. */
static brt_status state_copy(brt_job_state *dst, brt_kvpool *dp, const brt_job_state *src, brt_kvpool *sp,
                             brt_err *err)
{
    if (src->raw_kind_n && !(dst->raw_kind = malloc((size_t)src->raw_kind_n)))
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for job state");
    if (src->raw_kind_n)
        memcpy(dst->raw_kind, src->raw_kind, (size_t)src->raw_kind_n);
    dst->raw_kind_n = dst->raw_kind_cap = src->raw_kind_n;
    for (int32_t l = 0; l < src->n_layers; l++)
        BRT_TRY(brt_layer_state_copy(&dst->layers[l], dp, &src->layers[l], sp, err));
    dst->next_index = src->next_index;
    return BRT_OK;
}

void brt_stage_kept_free(brt_stage *s, brt_stage_kept *k)
{
    if (!k)
        return;
    for (int32_t l = 0; l < k->js.n_layers; l++)
        brt_layer_state_clear(&k->js.layers[l], s->keep_pool);
    free(k->js.layers);
    free(k->js.raw_kind);
    free(k);
}

int64_t brt_stage_kept_bytes(const brt_stage_kept *k) { return k ? k->bytes : 0; }

brt_status brt_stage_keep(brt_stage *s, uint64_t job, brt_stage_kept **out, brt_err *err)
{
    *out = NULL;
    if (!s->keep_pool)
        return brt_errf(err, BRT_ERR_INVALID, "this stage keeps no states in device memory");
    const brt_job_state *js = brt_u64map_get(&s->jobs, job);
    if (!js)
        return brt_errf(err, BRT_ERR_NOT_FOUND, "job %llu has no state on this stage", (unsigned long long)job);
    brt_stage_kept *k = calloc(1, sizeof *k);
    if (!k || !(k->js.layers = calloc((size_t)(js->n_layers ? js->n_layers : 1), sizeof *k->js.layers))) {
        free(k);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for a kept state");
    }
    k->js.job = job;
    k->js.n_layers = js->n_layers;
    const int64_t before = brt_kvpool_used_bytes(s->keep_pool);
    brt_status st = state_copy(&k->js, s->keep_pool, js, s->pool, err);
    k->bytes = brt_kvpool_used_bytes(s->keep_pool) - before;
    if (st == BRT_OK)
        st = s->be->synchronize(s->be, err);
    if (st != BRT_OK) {
        if (st == BRT_ERR_CAPACITY)
            brt_errf(err, st, "the device tier is full (%lld of %lld bytes in use)",
                     (long long)brt_kvpool_used_bytes(s->keep_pool), (long long)brt_kvpool_budget_bytes(s->keep_pool));
        brt_stage_kept_free(s, k);
        return st;
    }
    *out = k;
    return BRT_OK;
}

brt_status brt_stage_restore(brt_stage *s, uint64_t job, const brt_stage_kept *k, brt_err *err)
{
    brt_stage_release(s, job);
    if (k->js.n_layers != s->n_local)
        return brt_errf(err, BRT_ERR_INTERNAL, "a kept state of %d layers for a stage of %d", k->js.n_layers,
                        s->n_local);
    brt_job_state *js = brt_stage_job_new(s, job);
    if (!js)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for job state");
    brt_status st = state_copy(js, s->pool, &k->js, s->keep_pool, err);
    if (st == BRT_OK)
        st = s->be->synchronize(s->be, err);
    if (st != BRT_OK)
        brt_stage_release(s, job);
    return st;
}

brt_status brt_stage_kept_export(brt_stage *s, const brt_stage_kept *k, brt_buf *out, brt_err *err)
{
    return image_of(s, &k->js, s->keep_pool, out, err);
}
