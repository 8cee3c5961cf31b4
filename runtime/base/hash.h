/* FNV-1a, for names, ids and config fingerprints (not for anything adversarial). */
#ifndef BRT_HASH_H
#define BRT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define BRT_FNV_INIT 1469598103934665603ULL

static inline uint64_t brt_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

#endif
