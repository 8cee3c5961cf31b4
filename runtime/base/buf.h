/* A growable byte buffer (text being assembled). */
#ifndef BRT_BUF_H
#define BRT_BUF_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct brt_buf {
    char *data; /* NUL-terminated when non-NULL */
    size_t len, cap;
} brt_buf;

/* Room for n more bytes (and the NUL); returns 0, or -1 when out of memory. */
static inline int brt_buf_reserve(brt_buf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nd = realloc(b->data, cap);
        if (!nd)
            return -1;
        b->data = nd;
        b->cap = cap;
    }
    return 0;
}

/* Append n bytes; returns 0, or -1 when out of memory (the buffer is left as it was). */
static inline int brt_buf_append(brt_buf *b, const void *p, size_t n)
{
    if (brt_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static inline void brt_buf_free(brt_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
