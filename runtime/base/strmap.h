/* A string-keyed hash map (open addressing) for lookups by name: tensors, job ids.
 * Keys are copied; values are opaque pointers-or-integers. */
#ifndef BRT_STRMAP_H
#define BRT_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct brt_strmap {
    char **keys;      /* [cap], NULL = empty slot */
    intptr_t *vals;   /* [cap] */
    size_t cap, n;
} brt_strmap;

void brt_strmap_init(brt_strmap *m);
void brt_strmap_free(brt_strmap *m);
/* Insert or replace. Returns 0 on success, -1 on allocation failure. */
int brt_strmap_put(brt_strmap *m, const char *key, intptr_t val);
/* Returns 1 and sets *val when found, else 0. */
int brt_strmap_get(const brt_strmap *m, const char *key, intptr_t *val);

#endif
