/* Text and JSON helpers of the OpenAI surface: UTF-8 checks, lossy JSON strings, token rendering. */
#include "api/text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *brt_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

int brt_is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* A JSON string for text that should be UTF-8 but may not be (a completion cut mid-character,
 * a message cut by a fixed buffer): bad bytes become U+FFFD rather than failing a finished job. */
json_t *brt_json_string_lossy(const char *s, size_t len)
{
    if (brt_utf8_valid(s, len))
        return json_stringn(s, len);
    brt_buf b = {0};
    json_t *v = brt_utf8_lossy(&b, s, len) == 0 ? json_stringn(b.data ? b.data : "", b.len) : NULL;
    brt_buf_free(&b);
    return v;
}

/* OpenAI's rendering of a token that is not valid UTF-8 on its own: "bytes:" then the bytes the
 * way Python's bytes repr writes them (printable ASCII kept, '\' doubled, the rest \xNN). */
char *brt_render_token(const char *tok)
{
    size_t len = strlen(tok);
    if (brt_utf8_valid(tok, len))
        return strdup(tok);
    char *out = malloc(6 + len * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    memcpy(out, "bytes:", 6);
    o = 6;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (c >= 0x20 && c < 0x7F) {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
        }
    }
    out[o] = '\0';
    return out;
}

