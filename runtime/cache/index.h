/* The coordinator's view of the state cache: which states are kept where (device memory or host
 * memory of which pipeline's stages, the disk folder), how many bytes each takes on each stage, and the
 * least-recently-used order. The stages keep only what this index tells them to; budgets are per
 * stage and tier, so every stage holds at most its budget whatever the layer split.
 *
 * Entries on disk outlive the run: the index writes them to <dir>/manifest.jsonl (atomically),
 * and a later run under the same settings and layer split reads them back. A manifest line that
 * does not parse or does not match is skipped; the files themselves are checked by the stages
 * when they load them. */
#ifndef BRT_CACHE_INDEX_H
#define BRT_CACHE_INDEX_H

#include <stdint.h>

#include "base/status.h"
#include "cache/key.h"

#define BRT_CACHE_MAX_PIPELINES 32

typedef struct brt_cache_entry {
    brt_cache_key key;
    uint32_t next_index;        /* steps the state covers */
    int64_t fed;                /* tokens it covers */
    int64_t *bytes;             /* [n_stages] its image on each stage (0 until a save reports) */
    int64_t *dev_bytes;         /* [n_stages] its device copy on each stage: what a save reported, or
                                   while none has, what the coordinator set aside for it */
    uint32_t dev;               /* pipelines whose stages hold it in device memory */
    uint32_t dev_pending;       /* saves to device memory in flight */
    uint32_t host;              /* pipelines whose stages hold it in host memory */
    uint32_t host_pending;      /* saves to host memory in flight */
    int disk, disk_pending;
    int pins;                   /* loads in flight: not evicted meanwhile */
    uint64_t tick;              /* last use */
    uint64_t owner;             /* a job's mid-document checkpoint: that job (0: none) */
    struct brt_cache_entry *next;
} brt_cache_entry;

typedef struct brt_cache_index brt_cache_index;

typedef struct brt_cache_index_opts {
    int32_t n_pipelines, n_stages;
    const int32_t *stage_layers;   /* [n_stages + 1] */
    int64_t dev_budget;            /* bytes per stage in device memory (0: no device tier) */
    int64_t host_budget;           /* bytes per stage in host memory (0: no host tier) */
    int64_t disk_budget;           /* bytes per stage on disk (0: no disk tier) */
    const char *dir;               /* the disk tier's folder (for the manifest) */
    brt_cache_key settings;
} brt_cache_index_opts;

brt_status brt_cache_index_create(const brt_cache_index_opts *o, brt_cache_index **out, brt_err *err);
void brt_cache_index_destroy(brt_cache_index *x);
int brt_cache_index_dev(const brt_cache_index *x);
int brt_cache_index_host(const brt_cache_index *x);
int brt_cache_index_disk(const brt_cache_index *x);
const brt_cache_key *brt_cache_index_settings(const brt_cache_index *x);

brt_cache_entry *brt_cache_index_get(brt_cache_index *x, const brt_cache_key *k);
/* A new entry (nothing kept yet); NULL when out of memory or the key's map slot is taken. */
brt_cache_entry *brt_cache_index_add(brt_cache_index *x, const brt_cache_key *k, uint32_t next_index, int64_t fed);
void brt_cache_index_remove(brt_cache_index *x, brt_cache_entry *e);
void brt_cache_index_touch(brt_cache_index *x, brt_cache_entry *e);
/* Usable on pipeline p now: in its device or host memory or on disk, no save pending. */
int brt_cache_entry_ready(const brt_cache_entry *e, int32_t pipeline);

/* Bytes an entry's copies take: call after a change of e->bytes, dev_bytes, dev, host or disk
 * (the index sums them per stage and tier; device copies pending count at what was set aside). */
void brt_cache_index_account(brt_cache_index *x);
/* The least recently used entry to take out of pipeline p's device or host memory (tier
 * BRT_TIER_DEVICE or BRT_TIER_HOST; p is ignored for BRT_TIER_DISK) because a stage is over that
 * tier's budget, or, with need (bytes per stage), would be with need more; NULL when every stage
 * is within it, or nothing there may go. */
brt_cache_entry *brt_cache_index_victim(brt_cache_index *x, int tier, int32_t pipeline, const int64_t *need);
/* Whether pipeline p's stages have need (bytes per stage; NULL: nothing) more room in that tier;
 * could_fit: whether they would have once every copy there that may go (unpinned, not pending)
 * went (device and host tiers). */
int brt_cache_index_fits(const brt_cache_index *x, int tier, int32_t pipeline, const int64_t *need);
int brt_cache_index_could_fit(const brt_cache_index *x, int tier, int32_t pipeline, const int64_t *need);
int64_t brt_cache_index_dev_bytes(const brt_cache_index *x, int32_t pipeline, int32_t stage);
int64_t brt_cache_index_host_bytes(const brt_cache_index *x, int32_t pipeline, int32_t stage);
int64_t brt_cache_index_disk_bytes(const brt_cache_index *x, int32_t stage);

/* Disk entries to and from <dir>/manifest.jsonl. load: how many were read (0 with no manifest). */
brt_status brt_cache_index_save_manifest(brt_cache_index *x, brt_err *err);
int32_t brt_cache_index_load_manifest(brt_cache_index *x);

/* Counters for the run summary and /metrics. */
typedef struct brt_cache_counters {
    int64_t lookups, hits, misses, hit_tokens, saves, save_failures, load_failures, evictions, demotions;
    int64_t dev_hits;           /* hits served by a copy in device memory */
} brt_cache_counters;
brt_cache_counters *brt_cache_index_counters(brt_cache_index *x);
/* One summary line (info level) of a run's counters. */
void brt_cache_log_summary(const brt_cache_counters *c);

#endif
