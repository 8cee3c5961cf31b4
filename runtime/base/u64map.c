#include "u64map.h"

#include <stdlib.h>
#include <string.h>

#define TOMB UINT64_MAX

static size_t slot(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

void brt_u64map_init(brt_u64map *m) { memset(m, 0, sizeof *m); }

void brt_u64map_free(brt_u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int rehash(brt_u64map *m, size_t cap)
{
    uint64_t *keys = calloc(cap, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != TOMB) {
            size_t j = slot(m->keys[i], cap);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->n;
    return 0;
}

int brt_u64map_put(brt_u64map *m, uint64_t key, void *val)
{
    if ((m->used + 1) * 2 > m->cap) {
        /* grow only for live entries: a map that adds and deletes (one entry per micro-batch in
         * flight) is rebuilt at its size, dropping the tombstones, instead of doubling forever */
        size_t cap = m->cap ? m->cap : 64;
        while ((m->n + 1) * 4 > cap)
            cap *= 2;
        if (rehash(m, cap) != 0)
            return -1;
    }
    size_t i = slot(key, m->cap), tomb = (size_t)-1;
    while (m->keys[i] && m->keys[i] != key) {
        if (m->keys[i] == TOMB && tomb == (size_t)-1)
            tomb = i;
        i = (i + 1) & (m->cap - 1);
    }
    if (m->keys[i] == key) {
        m->vals[i] = val;
        return 0;
    }
    if (tomb != (size_t)-1)
        i = tomb;
    else
        m->used++;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return 0;
}

void *brt_u64map_get(const brt_u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t i = slot(key, m->cap);
    while (m->keys[i]) {
        if (m->keys[i] == key)
            return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

void *brt_u64map_del(brt_u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t i = slot(key, m->cap);
    while (m->keys[i]) {
        if (m->keys[i] == key) {
            void *v = m->vals[i];
            m->keys[i] = TOMB;
            m->vals[i] = NULL;
            m->n--;
            return v;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

int brt_u64map_next(const brt_u64map *m, size_t *it, uint64_t *key, void **val)
{
    for (; *it < m->cap; (*it)++)
        if (m->keys[*it] && m->keys[*it] != TOMB) {
            if (key)
                *key = m->keys[*it];
            if (val)
                *val = m->vals[*it];
            (*it)++;
            return 1;
        }
    return 0;
}
