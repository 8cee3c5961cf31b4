/* Text and JSON helpers shared by the request parser, the response formatter and the journal. */
#ifndef BRT_API_TEXT_H
#define BRT_API_TEXT_H

#include <jansson.h>
#include <stddef.h>

#include "base/utf8.h" /* brt_utf8_valid, brt_utf8_seq_len */

/* "an object", "a string", ... for messages */
const char *brt_json_type_name(const json_t *v);
/* only spaces, tabs, CR and LF */
int brt_is_blank(const char *s, size_t len);
/* A JSON string from bytes that should be UTF-8 but may not be (a completion cut in the middle of
 * a character): each maximal ill-formed subpart becomes U+FFFD, as Hugging Face decoders do. NULL only when out of memory. */
json_t *brt_json_string_lossy(const char *s, size_t len);
/* OpenAI's rendering of a token that is not valid UTF-8 on its own: "bytes:" then the bytes as
 * Python's bytes repr writes them. malloc'ed; NULL when out of memory. */
char *brt_render_token(const char *tok);

#endif
