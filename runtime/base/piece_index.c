#include "base/piece_index.h"

#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

static size_t slot_of(const brt_piece_index *x, const char *s, size_t n)
{
    uint64_t h = brt_fnv1a(BRT_FNV_INIT, s, n);
    h ^= h >> 33; /* the low bits pick the slot: fold the high ones in */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & x->mask;
}

static int same(brt_pieces p, int32_t id, const char *s, size_t n)
{
    return p.len[id] == n && memcmp(p.pool + p.off[id], s, n) == 0;
}

int brt_piece_index_init(brt_piece_index *x, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 1)
        cap <<= 1;
    x->slots = malloc(cap * sizeof *x->slots);
    if (!x->slots)
        return -1;
    memset(x->slots, 0xFF, cap * sizeof *x->slots); /* all -1 */
    x->mask = cap - 1;
    return 0;
}

void brt_piece_index_free(brt_piece_index *x)
{
    free(x->slots);
    x->slots = NULL;
    x->mask = 0;
}

int32_t brt_piece_index_find(const brt_piece_index *x, brt_pieces p, const char *s, size_t n)
{
    if (!x->slots)
        return -1;
    for (size_t i = slot_of(x, s, n);; i = (i + 1) & x->mask) {
        const int32_t id = x->slots[i];
        if (id < 0 || same(p, id, s, n))
            return id;
    }
}

int32_t brt_piece_index_add(brt_piece_index *x, brt_pieces p, int32_t id)
{
    const char *s = p.pool + p.off[id];
    const size_t n = p.len[id];
    for (size_t i = slot_of(x, s, n);; i = (i + 1) & x->mask) {
        const int32_t cur = x->slots[i];
        if (cur < 0) {
            x->slots[i] = id;
            return -1;
        }
        if (same(p, cur, s, n))
            return cur;
    }
}
