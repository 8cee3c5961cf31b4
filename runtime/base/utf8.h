/* UTF-8 as JSON (jansson) and Hugging Face `tokenizers` read it. */
#ifndef BRT_BASE_UTF8_H
#define BRT_BASE_UTF8_H

#include <stddef.h>

#include "base/buf.h"

/* Length of the well-formed UTF-8 character at s (1..4), or 0: no overlongs, no surrogates,
 * nothing above U+10FFFF (as strict as jansson, so what passes here json_stringn accepts). */
size_t brt_utf8_seq_len(const unsigned char *s, size_t left);
/* 1 when all of s[0, len) is well-formed UTF-8 */
int brt_utf8_valid(const char *s, size_t len);
/* Appends s[0, n) to o with each maximal ill-formed subpart (a lead byte and the continuation
 * bytes that could still complete it) replaced by one U+FFFD: Unicode's recommended practice, and
 * what Rust's String::from_utf8_lossy (tokenizers' decoders) and Python's "replace" do.
 * 0, or -1 when out of memory. */
int brt_utf8_lossy(brt_buf *o, const char *s, size_t n);

#endif
