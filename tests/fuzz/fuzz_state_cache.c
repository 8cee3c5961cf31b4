/* The state cache's files, as a later run finds them in --state-cache-dir. Byte 0 even: the rest is
 * a state file (<key>.L0-1.state) that brt_state_store_read_disk checks for one fixed key, settings
 * digest and layer range; odd: the rest is manifest.jsonl, which brt_cache_index_load_manifest
 * reads into an index of one pipeline and two stages. A state file is accepted only when it is one
 * that brt_state_store_write_disk writes for that key (checked here by writing it back and
 * comparing); every entry a manifest gives is usable: one the index can find, whose byte counts
 * are sizes and whose step and token counts are positive. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/index.h"
#include "cache/store.h"
#include "fuzz_util.h"

static brt_cache_key fixed(uint8_t v)
{
    brt_cache_key k;
    memset(k.b, v, sizeof k.b);
    return k;
}

static void state_file(const char *dir, const uint8_t *data, size_t size)
{
    const brt_cache_key settings = fixed(0x5e), key = fixed(0x4b);
    char hex[2 * BRT_KEY_BYTES + 1], name[128];
    brt_key_hex(&key, hex);
    snprintf(name, sizeof name, "%s.L0-1.state", hex);
    if (!fuzz_write_file(name, data, size))
        return;
    brt_state_store_opts o = {.dir = dir, .settings = settings, .layer_begin = 0, .layer_end = 2};
    brt_state_store *s = NULL;
    brt_err e;
    brt_err_clear(&e);
    FUZZ_CHECK(brt_state_store_open(&o, &s, &e) == BRT_OK);
    void *image = NULL;
    size_t len = 0;
    brt_status st = brt_state_store_read_disk(s, &key, &image, &len, &e);
    if (st == BRT_OK) {
        /* what was accepted is exactly what the writer makes of that image */
        FUZZ_CHECK(image != NULL);
        FUZZ_CHECK(brt_state_store_write_disk(s, &key, image, len, &e) == BRT_OK);
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "rb");
        FUZZ_CHECK(f != NULL);
        uint8_t *back = malloc(size + 1);
        FUZZ_CHECK(back != NULL);
        FUZZ_CHECK(fread(back, 1, size + 1, f) == size && memcmp(back, data, size) == 0);
        fclose(f);
        free(back);
    } else {
        FUZZ_CHECK(image == NULL && len == 0 && e.msg[0] != '\0');
        FUZZ_CHECK(st == BRT_ERR_FORMAT || st == BRT_ERR_NOMEM);
    }
    free(image);
    brt_state_store_close(s);
}

static void manifest(const char *dir, const uint8_t *data, size_t size)
{
    if (!fuzz_write_file("manifest.jsonl", data, size))
        return;
    const int32_t layers[3] = {0, 1, 2};
    brt_cache_index_opts o = {.n_pipelines = 1, .n_stages = 2, .stage_layers = layers, .host_budget = 1 << 20,
                              .disk_budget = 1 << 30, .dir = dir, .settings = fixed(0x5e)};
    brt_cache_index *x = NULL;
    brt_err e;
    brt_err_clear(&e);
    FUZZ_CHECK(brt_cache_index_create(&o, &x, &e) == BRT_OK);
    int32_t n = brt_cache_index_load_manifest(x);
    FUZZ_CHECK(n >= 0);
    for (int32_t s = 0; s < 2; s++)
        FUZZ_CHECK(brt_cache_index_disk_bytes(x, s) >= 0 && brt_cache_index_host_bytes(x, 0, s) == 0);
    /* evicting from the disk tier until every stage is within budget ends, and leaves no entry
     * the index cannot find */
    for (int guard = 0; guard <= n; guard++) {
        brt_cache_entry *v = brt_cache_index_victim(x, BRT_TIER_DISK, 0, NULL);
        if (!v)
            break;
        FUZZ_CHECK(v->disk && v->next_index >= 1 && v->fed >= 1 && v->bytes[0] >= 0 && v->bytes[1] >= 0);
        FUZZ_CHECK(brt_cache_index_get(x, &v->key) == v);
        brt_cache_index_remove(x, v);
        brt_cache_index_account(x);
    }
    FUZZ_CHECK(brt_cache_index_disk_bytes(x, 0) <= o.disk_budget && brt_cache_index_disk_bytes(x, 1) <= o.disk_budget);
    brt_cache_index_destroy(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_dir();
    if (!dir || size < 1)
        return 0;
    if (data[0] % 2 == 0)
        state_file(dir, data + 1, size - 1);
    else
        manifest(dir, data + 1, size - 1);
    return 0;
}
