/* A hash map from uint64 keys (job ids) to pointers. Key 0 is reserved. */
#ifndef BRT_U64MAP_H
#define BRT_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct brt_u64map {
    uint64_t *keys;   /* 0 = empty, UINT64_MAX = deleted */
    void **vals;
    size_t cap, n, used;
} brt_u64map;

void brt_u64map_init(brt_u64map *m);
void brt_u64map_free(brt_u64map *m);
int brt_u64map_put(brt_u64map *m, uint64_t key, void *val); /* 0 ok, -1 no memory */
void *brt_u64map_get(const brt_u64map *m, uint64_t key);
void *brt_u64map_del(brt_u64map *m, uint64_t key);          /* returns the value removed */
/* Iterate: for (size_t i = 0; brt_u64map_next(m, &i, &k, &v);) */
int brt_u64map_next(const brt_u64map *m, size_t *it, uint64_t *key, void **val);

#endif
