/* Strings to ids over strings kept elsewhere: a pool of pieces with each id's offset and length,
 * as both tokenizers store their vocabularies. Open addressing over ids; nothing is copied. */
#ifndef BRT_PIECE_INDEX_H
#define BRT_PIECE_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct brt_pieces {
    const char *pool;       /* the pieces, back to back */
    const uint32_t *off;    /* [ids] start of each in pool */
    const uint32_t *len;    /* [ids] length in bytes */
} brt_pieces;

typedef struct brt_piece_index {
    int32_t *slots;         /* [mask + 1] ids, -1 = empty; NULL before init */
    size_t mask;
} brt_piece_index;

/* Room for n ids (at most half full). 0, or -1 when out of memory. */
int brt_piece_index_init(brt_piece_index *x, size_t n);
void brt_piece_index_free(brt_piece_index *x);
/* The id whose piece is s[0..n), or -1 (also before init). */
int32_t brt_piece_index_find(const brt_piece_index *x, brt_pieces p, const char *s, size_t n);
/* Adds id under its piece: -1 when added, else the id already holding the same bytes (kept).
 * At most the n ids given to init. */
int32_t brt_piece_index_add(brt_piece_index *x, brt_pieces p, int32_t id);

#endif
