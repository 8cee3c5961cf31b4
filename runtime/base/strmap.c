#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

static uint64_t hash_str(const char *s) { return brt_fnv1a(BRT_FNV_INIT, s, strlen(s)); }

void brt_strmap_init(brt_strmap *m) { memset(m, 0, sizeof *m); }

void brt_strmap_free(brt_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(char **keys, size_t cap, const char *key)
{
    size_t i = (size_t)hash_str(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(brt_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    char **keys = calloc(cap, sizeof *keys);
    intptr_t *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = find_slot(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int brt_strmap_put(brt_strmap *m, const char *key, intptr_t val)
{
    if ((m->n + 1) * 2 > m->cap && grow(m) != 0)
        return -1;
    size_t i = find_slot(m->keys, m->cap, key);
    if (!m->keys[i]) {
        m->keys[i] = strdup(key);
        if (!m->keys[i])
            return -1;
        m->n++;
    }
    m->vals[i] = val;
    return 0;
}

int brt_strmap_get(const brt_strmap *m, const char *key, intptr_t *val)
{
    if (!m->cap)
        return 0;
    size_t i = find_slot(m->keys, m->cap, key);
    if (!m->keys[i])
        return 0;
    if (val)
        *val = m->vals[i];
    return 1;
}
