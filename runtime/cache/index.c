#define _GNU_SOURCE /* getline */
#include "cache/index.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/u64map.h"
#include "engine/step.h"

struct brt_cache_index {
    brt_cache_index_opts o;
    int32_t *layers;            /* [n_stages + 1] */
    char *dir;
    brt_u64map map;             /* brt_key_u64 -> entry */
    brt_cache_entry *all;
    uint64_t clock;
    int64_t *dev_used;          /* [n_pipelines * n_stages] */
    int64_t *host_used;         /* [n_pipelines * n_stages] */
    int64_t *disk_used;         /* [n_stages] */
    brt_cache_counters c;
};

brt_status brt_cache_index_create(const brt_cache_index_opts *o, brt_cache_index **out, brt_err *err)
{
    *out = NULL;
    if (o->n_pipelines > BRT_CACHE_MAX_PIPELINES)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "the state cache handles up to %d data-parallel replicas",
                        BRT_CACHE_MAX_PIPELINES);
    brt_cache_index *x = calloc(1, sizeof *x);
    if (!x)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    x->o = *o;
    x->layers = malloc((size_t)(o->n_stages + 1) * sizeof *x->layers);
    x->host_used = calloc((size_t)o->n_pipelines * (size_t)o->n_stages, sizeof *x->host_used);
    x->dev_used = calloc((size_t)o->n_pipelines * (size_t)o->n_stages, sizeof *x->dev_used);
    x->disk_used = calloc((size_t)o->n_stages, sizeof *x->disk_used);
    x->dir = o->dir ? strdup(o->dir) : NULL;
    if (!x->layers || !x->host_used || !x->dev_used || !x->disk_used || (o->dir && !x->dir)) {
        brt_cache_index_destroy(x);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    memcpy(x->layers, o->stage_layers, (size_t)(o->n_stages + 1) * sizeof *x->layers);
    x->o.stage_layers = x->layers;
    x->o.dir = x->dir;
    brt_u64map_init(&x->map);
    *out = x;
    return BRT_OK;
}

static void entry_free(brt_cache_entry *e)
{
    if (e) {
        free(e->bytes);
        free(e->dev_bytes);
        free(e);
    }
}

void brt_cache_index_destroy(brt_cache_index *x)
{
    if (!x)
        return;
    for (brt_cache_entry *e = x->all, *n; e; e = n) {
        n = e->next;
        entry_free(e);
    }
    brt_u64map_free(&x->map);
    free(x->layers);
    free(x->host_used);
    free(x->dev_used);
    free(x->disk_used);
    free(x->dir);
    free(x);
}

int brt_cache_index_dev(const brt_cache_index *x) { return x && x->o.dev_budget > 0; }
int brt_cache_index_host(const brt_cache_index *x) { return x && x->o.host_budget > 0; }
int brt_cache_index_disk(const brt_cache_index *x) { return x && x->o.disk_budget > 0 && x->dir; }
const brt_cache_key *brt_cache_index_settings(const brt_cache_index *x) { return &x->o.settings; }
brt_cache_counters *brt_cache_index_counters(brt_cache_index *x) { return &x->c; }

void brt_cache_log_summary(const brt_cache_counters *c)
{
    if (!c)
        return;
    brt_log_info("state cache: %lld hits of %lld lookups (%lld from device memory; %lld prompt tokens not "
                 "recomputed), %lld states kept, %lld evicted, %lld moved down a tier, %lld failed to load, %lld "
                 "failed to keep",
                 (long long)c->hits, (long long)c->lookups, (long long)c->dev_hits, (long long)c->hit_tokens,
                 (long long)c->saves, (long long)c->evictions, (long long)c->demotions, (long long)c->load_failures,
                 (long long)c->save_failures);
}

brt_cache_entry *brt_cache_index_get(brt_cache_index *x, const brt_cache_key *k)
{
    brt_cache_entry *e = brt_u64map_get(&x->map, brt_key_u64(k));
    return e && brt_key_equal(&e->key, k) ? e : NULL;
}

brt_cache_entry *brt_cache_index_add(brt_cache_index *x, const brt_cache_key *k, uint32_t next_index, int64_t fed)
{
    if (brt_u64map_get(&x->map, brt_key_u64(k)))
        return NULL;
    brt_cache_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->bytes = calloc((size_t)x->o.n_stages, sizeof *e->bytes)) ||
        !(e->dev_bytes = calloc((size_t)x->o.n_stages, sizeof *e->dev_bytes)) ||
        brt_u64map_put(&x->map, brt_key_u64(k), e) != 0) {
        entry_free(e);
        return NULL;
    }
    e->key = *k;
    e->next_index = next_index;
    e->fed = fed;
    e->tick = ++x->clock;
    e->next = x->all;
    x->all = e;
    return e;
}

void brt_cache_index_remove(brt_cache_index *x, brt_cache_entry *e)
{
    brt_u64map_del(&x->map, brt_key_u64(&e->key));
    for (brt_cache_entry **p = &x->all; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            break;
        }
    entry_free(e);
    brt_cache_index_account(x);
}

void brt_cache_index_touch(brt_cache_index *x, brt_cache_entry *e) { e->tick = ++x->clock; }

int brt_cache_entry_ready(const brt_cache_entry *e, int32_t pipeline)
{
    return !e->dev_pending && !e->host_pending && !e->disk_pending &&
           ((e->dev >> pipeline & 1u) || (e->host >> pipeline & 1u) || e->disk);
}

void brt_cache_index_account(brt_cache_index *x)
{
    const int32_t S = x->o.n_stages, P = x->o.n_pipelines;
    memset(x->host_used, 0, (size_t)P * (size_t)S * sizeof *x->host_used);
    memset(x->dev_used, 0, (size_t)P * (size_t)S * sizeof *x->dev_used);
    memset(x->disk_used, 0, (size_t)S * sizeof *x->disk_used);
    for (const brt_cache_entry *e = x->all; e; e = e->next)
        for (int32_t s = 0; s < S; s++) {
            for (int32_t p = 0; p < P; p++) {
                if (e->host >> p & 1u)
                    x->host_used[p * S + s] += e->bytes[s];
                if ((e->dev | e->dev_pending) >> p & 1u)
                    x->dev_used[p * S + s] += e->dev_bytes[s];
            }
            if (e->disk)
                x->disk_used[s] += e->bytes[s];
        }
}

int64_t brt_cache_index_dev_bytes(const brt_cache_index *x, int32_t p, int32_t s)
{
    return x->dev_used[p * x->o.n_stages + s];
}
int64_t brt_cache_index_host_bytes(const brt_cache_index *x, int32_t p, int32_t s)
{
    return x->host_used[p * x->o.n_stages + s];
}
int64_t brt_cache_index_disk_bytes(const brt_cache_index *x, int32_t s) { return x->disk_used[s]; }

/* A tier as the functions below see it: bytes in use per stage on pipeline p, the budget, and
 * whether an entry has a copy there (confirmed) and the bytes it takes on stage st. */
static const int64_t *tier_used(const brt_cache_index *x, int tier, int32_t p)
{
    const int32_t S = x->o.n_stages;
    return tier == BRT_TIER_DEVICE ? x->dev_used + p * S : tier == BRT_TIER_HOST ? x->host_used + p * S : x->disk_used;
}
static int64_t tier_budget(const brt_cache_index *x, int tier)
{
    return tier == BRT_TIER_DEVICE ? x->o.dev_budget : tier == BRT_TIER_HOST ? x->o.host_budget : x->o.disk_budget;
}
static int tier_has(const brt_cache_entry *e, int tier, int32_t p)
{
    return tier == BRT_TIER_DEVICE ? (int)(e->dev >> p & 1u) : tier == BRT_TIER_HOST ? (int)(e->host >> p & 1u) : e->disk;
}
static int64_t tier_bytes(const brt_cache_entry *e, int tier, int32_t st)
{
    return tier == BRT_TIER_DEVICE ? e->dev_bytes[st] : e->bytes[st];
}

int brt_cache_index_fits(const brt_cache_index *x, int tier, int32_t p, const int64_t *need)
{
    const int64_t *used = tier_used(x, tier, p), budget = tier_budget(x, tier);
    for (int32_t s = 0; s < x->o.n_stages; s++)
        if (used[s] + (need ? need[s] : 0) > budget)
            return 0;
    return 1;
}

int brt_cache_index_could_fit(const brt_cache_index *x, int tier, int32_t p, const int64_t *need)
{
    const int64_t *used = tier_used(x, tier, p), budget = tier_budget(x, tier);
    for (int32_t s = 0; s < x->o.n_stages; s++) {
        int64_t left = used[s];
        for (const brt_cache_entry *e = x->all; e; e = e->next)
            if (tier_has(e, tier, p) && !e->pins)
                left -= tier_bytes(e, tier, s);
        if (left + need[s] > budget)
            return 0;
    }
    return 1;
}

brt_cache_entry *brt_cache_index_victim(brt_cache_index *x, int tier, int32_t p, const int64_t *need)
{
    if (brt_cache_index_fits(x, tier, p, need))
        return NULL;
    brt_cache_entry *best = NULL;
    for (brt_cache_entry *e = x->all; e; e = e->next)
        if (tier_has(e, tier, p) && !e->pins && (!best || e->tick < best->tick))
            best = e;
    return best;
}

/* ---- the manifest ----------------------------------------------------------------------------- */

static void layers_text(const brt_cache_index *x, char *out, size_t cap)
{
    size_t n = 0;
    for (int32_t s = 0; s <= x->o.n_stages && n < cap; s++)
        n += (size_t)snprintf(out + n, cap - n, "%s%d", s ? "," : "", x->layers[s]);
}

brt_status brt_cache_index_save_manifest(brt_cache_index *x, brt_err *err)
{
    if (!x->dir)
        return BRT_OK;
    char path[4200], tmp[4300], settings[2 * BRT_KEY_BYTES + 1], layers[512];
    snprintf(path, sizeof path, "%s/manifest.jsonl", x->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    brt_key_hex(&x->o.settings, settings);
    layers_text(x, layers, sizeof layers);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return brt_errf(err, BRT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = 0;
    for (const brt_cache_entry *e = x->all; e; e = e->next) {
        if (!e->disk)
            continue;
        char key[2 * BRT_KEY_BYTES + 1];
        brt_key_hex(&e->key, key);
        bad |= fprintf(f, "{\"settings\": \"%s\", \"layers\": \"%s\", \"key\": \"%s\", \"next_index\": %u, \"fed\": %lld, "
                          "\"bytes\": [",
                       settings, layers, key, e->next_index, (long long)e->fed) < 0;
        for (int32_t s = 0; s < x->o.n_stages; s++)
            bad |= fprintf(f, "%s%lld", s ? ", " : "", (long long)e->bytes[s]) < 0;
        bad |= fprintf(f, "]}\n") < 0;
    }
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return brt_errf(err, BRT_ERR_IO, "%s: cannot write", path);
    }
    return BRT_OK;
}

static int hex_key(const char *s, brt_cache_key *k)
{
    if (!s || strlen(s) != 2 * BRT_KEY_BYTES)
        return -1;
    for (int i = 0; i < BRT_KEY_BYTES; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        k->b[i] = (uint8_t)v;
    }
    return 0;
}

/* an integer in [lo, hi] */
static int in_range(const json_t *v, json_int_t lo, json_int_t hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

/* every element a byte count: an integer in [0, 2^48) */
static int sizes_ok(const json_t *a)
{
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v)
        if (!in_range(v, 0, (json_int_t)1 << 48))
            return 0;
    return 1;
}

int32_t brt_cache_index_load_manifest(brt_cache_index *x)
{
    if (!x->dir)
        return 0;
    char path[4200], settings[2 * BRT_KEY_BYTES + 1], layers[512];
    snprintf(path, sizeof path, "%s/manifest.jsonl", x->dir);
    brt_key_hex(&x->o.settings, settings);
    layers_text(x, layers, sizeof layers);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int32_t n = 0, skipped = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        brt_cache_key k;
        json_t *b = o ? json_object_get(o, "bytes") : NULL;
        const char *st = o ? json_string_value(json_object_get(o, "settings")) : NULL,
                   *ly = o ? json_string_value(json_object_get(o, "layers")) : NULL;
        if (!o || !st || !ly || hex_key(json_string_value(json_object_get(o, "key")), &k) != 0 ||
            !in_range(json_object_get(o, "next_index"), 1, INT32_MAX) ||
            !in_range(json_object_get(o, "fed"), 1, INT64_MAX) || !json_is_array(b) ||
            json_array_size(b) != (size_t)x->o.n_stages || !sizes_ok(b)) {
            skipped++;
            json_decref(o);
            continue;
        }
        if (strcmp(st, settings) != 0 || strcmp(ly, layers) != 0) { /* another model, settings or split */
            json_decref(o);
            continue;
        }
        brt_cache_entry *e = brt_cache_index_get(x, &k);
        if (!e)
            e = brt_cache_index_add(x, &k, (uint32_t)json_integer_value(json_object_get(o, "next_index")),
                                    (int64_t)json_integer_value(json_object_get(o, "fed")));
        if (e) {
            for (int32_t s = 0; s < x->o.n_stages; s++)
                e->bytes[s] = json_integer_value(json_array_get(b, (size_t)s));
            e->disk = 1;
            n++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    if (skipped)
        brt_log_warn("%s: skipped %d lines that do not parse", path, skipped);
    brt_cache_index_account(x);
    return n;
}
