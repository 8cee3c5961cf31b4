/* A binary heap over an array the caller owns and sizes, for any element type: what the BPE
 * encoders pop their next merge from. BRT_HEAP_DEFINE(name, T, before) defines
 *   static void name_push(T *h, size_t *n, T x)   (h has room for *n + 1)
 *   static T    name_pop(T *h, size_t *n)         (*n > 0)
 * where before(const T *a, const T *b) says a pops first; ties pop in whatever order `before`
 * breaks them, so a total order gives one result. */
#ifndef BRT_BASE_HEAP_H
#define BRT_BASE_HEAP_H

#include <stddef.h>

#define BRT_HEAP_DEFINE(name, T, before)                                                                    \
    static inline void name##_push(T *h, size_t *n, T x)                                                    \
    {                                                                                                       \
        size_t i = (*n)++;                                                                                  \
        while (i > 0) {                                                                                     \
            size_t parent = (i - 1) / 2;                                                                    \
            if (!before(&x, &h[parent]))                                                                    \
                break;                                                                                      \
            h[i] = h[parent];                                                                               \
            i = parent;                                                                                     \
        }                                                                                                   \
        h[i] = x;                                                                                           \
    }                                                                                                       \
    static inline T name##_pop(T *h, size_t *n)                                                             \
    {                                                                                                       \
        T top = h[0], last = h[--(*n)];                                                                     \
        size_t m = *n, i = 0;                                                                               \
        for (;;) {                                                                                          \
            size_t c = 2 * i + 1;                                                                           \
            if (c >= m)                                                                                     \
                break;                                                                                      \
            if (c + 1 < m && before(&h[c + 1], &h[c]))                                                      \
                c++;                                                                                        \
            if (!before(&h[c], &last))                                                                      \
                break;                                                                                      \
            h[i] = h[c];                                                                                    \
            i = c;                                                                                          \
        }                                                                                                   \
        if (m > 0)                                                                                          \
            h[i] = last;                                                                                    \
        return top;                                                                                         \
    }

#endif
