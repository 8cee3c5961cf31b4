/* A stage's part of the state cache: the ops a micro-batch carries, run on this rank's stage and
 * store (copies the stage keeps in the backend's memory, images in host memory and on disk), each
 * answered by a report that travels on with the micro-batch to the coordinator. Loads and drops
 * run before the micro-batch's steps, saves and demotions after them. A failed op (a damaged
 * file, a full pool, a full disk) is a report, never a failure of the stage: the coordinator then
 * recomputes or forgets the entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cluster/node_impl.h"
#include "cluster/wire.h"

static brt_status report(brt_node *n, brt_microbatch *mb, const brt_cache_op *op, int ok, int64_t bytes,
                         const char *why, brt_err *err)
{
    brt_cache_report r = {op->kind, op->tier, {0}, op->job, n->grid.my_pp, ok, bytes, ""};
    memcpy(r.key, op->key, sizeof r.key);
    snprintf(r.error, sizeof r.error, "%s", why ? why : "");
    if (!ok)
        brt_log_warn("state cache: stage %d: %s", n->grid.my_pp, why ? why : "failed");
    return brt_mb_add_report(mb, &r) == 0 ? BRT_OK : brt_errf(err, BRT_ERR_NOMEM, "out of memory");
}

static brt_status load(brt_node *n, brt_microbatch *mb, const brt_cache_op *op, const brt_cache_key *k, brt_err *err)
{
    brt_err e;
    const brt_stage_kept *kept = brt_state_store_get_dev(n->store, k);
    if (kept) { /* the device tier: a copy between pools, no image */
        brt_status st = brt_stage_restore(n->stage, op->job, kept, &e);
        return report(n, mb, op, st == BRT_OK, brt_stage_kept_bytes(kept), st == BRT_OK ? NULL : e.msg, err);
    }
    size_t len = 0;
    const void *image = brt_state_store_get_host(n->store, k, &len);
    void *owned = NULL;
    brt_status st = BRT_OK;
    if (!image) {
        st = brt_state_store_read_disk(n->store, k, &owned, &len, &e);
        image = owned;
    }
    if (st == BRT_OK)
        st = brt_stage_job_import(n->stage, op->job, image, len, &e);
    free(owned);
    return report(n, mb, op, st == BRT_OK, (int64_t)len, st == BRT_OK ? NULL : e.msg, err);
}

static brt_status save(brt_node *n, brt_microbatch *mb, const brt_cache_op *op, const brt_cache_key *k, brt_err *err)
{
    brt_err e;
    if (op->tier == BRT_TIER_DEVICE) {
        brt_stage_kept *kept = NULL;
        brt_status st = brt_stage_keep(n->stage, op->job, &kept, &e);
        const int64_t bytes = brt_stage_kept_bytes(kept);
        if (st == BRT_OK)
            st = brt_state_store_put_dev(n->store, k, kept, &e);
        return report(n, mb, op, st == BRT_OK, bytes, st == BRT_OK ? NULL : e.msg, err);
    }
    brt_buf img = {0};
    brt_status st = brt_stage_job_export(n->stage, op->job, &img, &e);
    const int64_t bytes = (int64_t)img.len;
    if (st == BRT_OK && op->tier == BRT_TIER_HOST) {
        st = brt_state_store_put_host(n->store, k, img.data, img.len, &e);
        img.data = NULL; /* the store has it (or freed it) */
    } else if (st == BRT_OK)
        st = brt_state_store_write_disk(n->store, k, img.data, img.len, &e);
    brt_buf_free(&img);
    return report(n, mb, op, st == BRT_OK, bytes, st == BRT_OK ? NULL : e.msg, err);
}

static brt_status demote(brt_node *n, brt_microbatch *mb, const brt_cache_op *op, const brt_cache_key *k,
                         brt_err *err)
{
    brt_err e;
    size_t len = 0;
    const void *image = brt_state_store_get_host(n->store, k, &len);
    brt_status st = image ? brt_state_store_write_disk(n->store, k, image, len, &e)
                          : brt_errf(&e, BRT_ERR_NOT_FOUND, "no host copy to write to disk");
    brt_state_store_drop_host(n->store, k);
    return report(n, mb, op, st == BRT_OK, (int64_t)len, st == BRT_OK ? NULL : e.msg, err);
}

/* The device copy to host memory or disk (op tier), as an image; the device copy is dropped
 * either way. */
static brt_status demote_dev(brt_node *n, brt_microbatch *mb, const brt_cache_op *op, const brt_cache_key *k,
                             brt_err *err)
{
    brt_err e;
    brt_buf img = {0};
    const brt_stage_kept *kept = brt_state_store_get_dev(n->store, k);
    brt_status st = kept ? brt_stage_kept_export(n->stage, kept, &img, &e)
                         : brt_errf(&e, BRT_ERR_NOT_FOUND, "no device copy to move");
    const int64_t bytes = (int64_t)img.len;
    if (st == BRT_OK && op->tier == BRT_TIER_HOST) {
        st = brt_state_store_put_host(n->store, k, img.data, img.len, &e);
        img.data = NULL;
    } else if (st == BRT_OK)
        st = brt_state_store_write_disk(n->store, k, img.data, img.len, &e);
    brt_buf_free(&img);
    brt_state_store_drop_dev(n->store, k);
    return report(n, mb, op, st == BRT_OK, bytes, st == BRT_OK ? NULL : e.msg, err);
}

brt_status brt_node_cache_ops(brt_node *n, brt_microbatch *mb, int after_steps, brt_err *err)
{
    for (int32_t i = 0; i < mb->n_cache_ops; i++) {
        const brt_cache_op *op = &mb->cache_ops[i];
        const int after = op->kind == BRT_CACHE_SAVE || op->kind == BRT_CACHE_DEMOTE || op->kind == BRT_CACHE_DEMOTE_DEV;
        if (after != after_steps)
            continue;
        brt_cache_key k;
        memcpy(k.b, op->key, sizeof k.b);
        if (!n->store) { /* a rank started without a state cache: say so, the coordinator copes */
            if (op->kind != BRT_CACHE_DROP_HOST && op->kind != BRT_CACHE_DROP_DISK && op->kind != BRT_CACHE_DROP_DEV)
                BRT_TRY(report(n, mb, op, 0, 0, "this rank has no state cache", err));
            continue;
        }
        switch (op->kind) {
        case BRT_CACHE_LOAD: BRT_TRY(load(n, mb, op, &k, err)); break;
        case BRT_CACHE_SAVE: BRT_TRY(save(n, mb, op, &k, err)); break;
        case BRT_CACHE_DEMOTE: BRT_TRY(demote(n, mb, op, &k, err)); break;
        case BRT_CACHE_DROP_HOST: brt_state_store_drop_host(n->store, &k); break;
        case BRT_CACHE_DROP_DISK: brt_state_store_drop_disk(n->store, &k); break;
        case BRT_CACHE_DEMOTE_DEV: BRT_TRY(demote_dev(n, mb, op, &k, err)); break;
        case BRT_CACHE_DROP_DEV: brt_state_store_drop_dev(n->store, &k); break;
        default: break;
        }
    }
    return BRT_OK;
}
