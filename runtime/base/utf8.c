/* UTF-8 checks and lossy repair. */
#include "base/utf8.h"

/* The range of the second byte after lead c, and how many continuation bytes c needs (0: c is
 * not a lead byte of a multi-byte character). */
static size_t lead_info(unsigned c, unsigned *lo, unsigned *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        return 1;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            *lo = 0xA0;
        else if (c == 0xED)
            *hi = 0x9F;
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            *lo = 0x90;
        else if (c == 0xF4)
            *hi = 0x8F;
        return 3;
    }
    return 0;
}

size_t brt_utf8_seq_len(const unsigned char *s, size_t left)
{
    if (s[0] < 0x80)
        return 1;
    unsigned lo, hi;
    size_t need = lead_info(s[0], &lo, &hi);
    if (need == 0 || left < need + 1 || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i <= need; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return need + 1;
}

int brt_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = brt_utf8_seq_len(p + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

int brt_utf8_lossy(brt_buf *o, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0; /* s[run, i) is well-formed and not yet appended */
    while (i < n) {
        size_t l = brt_utf8_seq_len(s + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        /* the maximal subpart: the lead byte, then continuation bytes while they could still
         * complete its character */
        unsigned lo, hi;
        size_t need = lead_info(s[i], &lo, &hi), k = 1;
        if (need > 0 && i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
            k = 2;
            while (k <= need && i + k < n && (s[i + k] & 0xC0) == 0x80)
                k++;
        }
        if (brt_buf_append(o, str + run, i - run) || brt_buf_append(o, "\xEF\xBF\xBD", 3))
            return -1;
        i += k;
        run = i;
    }
    return brt_buf_append(o, str + run, n - run);
}
