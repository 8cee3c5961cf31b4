/* A rank's share of the state cache: the states of its own stage's layers, kept in the backend's
 * memory (the device tier: opaque handles the stage made), as images in host memory, and in a
 * disk folder. It keeps what the coordinator tells it to and drops what it is told to
 * drop (the coordinator owns the budgets and the eviction order); it never decides on its own.
 *
 * Disk files are <dir>/<key>.L<first>-<last>.state: a header (magic, version, the settings
 * digest, the layer range, the key, the image's length and BLAKE2b checksum) and the image.
 * They are written to a temporary name, synced and renamed, so a reader never sees half a file;
 * a file whose header, settings, layers, length or checksum do not match is refused with the
 * reason (the caller recomputes), never used. File names come from keys only. */
#ifndef BRT_CACHE_STORE_H
#define BRT_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "cache/key.h"

typedef struct brt_state_store brt_state_store;

typedef struct brt_state_store_opts {
    const char *dir;            /* disk tier folder (created); NULL: no disk tier */
    brt_cache_key settings;     /* images made under other settings are foreign */
    int32_t layer_begin, layer_end;
    void (*dev_free)(void *ctx, void *handle); /* frees a device-tier handle (needed to use that tier) */
    void *dev_ctx;
} brt_state_store_opts;

brt_status brt_state_store_open(const brt_state_store_opts *o, brt_state_store **out, brt_err *err);
void brt_state_store_close(brt_state_store *s);
int brt_state_store_has_disk(const brt_state_store *s);

/* Host tier: keep an image (the store takes `image`, malloc'ed, len bytes). */
brt_status brt_state_store_put_host(brt_state_store *s, const brt_cache_key *k, void *image, size_t len,
                                    brt_err *err);
/* The image held in host memory, or NULL. Valid until it is dropped. */
const void *brt_state_store_get_host(const brt_state_store *s, const brt_cache_key *k, size_t *len);
void brt_state_store_drop_host(brt_state_store *s, const brt_cache_key *k);
int64_t brt_state_store_host_bytes(const brt_state_store *s);

/* Device tier: keep a handle (the store owns it from now: dev_free frees it when it is dropped,
 * replaced or the store closes, or at once when this fails); get: the handle, or NULL. */
brt_status brt_state_store_put_dev(brt_state_store *s, const brt_cache_key *k, void *handle, brt_err *err);
void *brt_state_store_get_dev(const brt_state_store *s, const brt_cache_key *k);
void brt_state_store_drop_dev(brt_state_store *s, const brt_cache_key *k);

/* Disk tier: write an image (atomically); read one back, checked (*image malloc'ed); remove one.
 * read: BRT_ERR_NOT_FOUND when there is no file, BRT_ERR_FORMAT naming what is wrong with one. */
brt_status brt_state_store_write_disk(brt_state_store *s, const brt_cache_key *k, const void *image, size_t len,
                                      brt_err *err);
brt_status brt_state_store_read_disk(brt_state_store *s, const brt_cache_key *k, void **image, size_t *len,
                                     brt_err *err);
void brt_state_store_drop_disk(brt_state_store *s, const brt_cache_key *k);

#endif
