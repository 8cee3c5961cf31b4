/* Text through the two real tokenizers in the repository (the embedded stories260K model's and
 * Llama 2's): every prompt and chat message reaches brt_tokenizer_encode, so the encoder is a
 * parser of user input too. Encode, then decode and join what came out. */
#define _GNU_SOURCE /* memmem */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/tokenizer.h"

static brt_tokenizer *g_tok[2]; /* stories260K (512 pieces), Llama 2 (32000 pieces) */
static const char *const k_paths[2] = {BRT_SOURCE_DIR "/models/stories260K/tokenizer.model",
                                       BRT_SOURCE_DIR "/tests/data/llama2-tokenizer/tokenizer.model"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int i = 0; i < 2; i++) {
        brt_err e;
        if (brt_tokenizer_load(k_paths[i], &g_tok[i], &e) != BRT_OK) {
            fprintf(stderr, "fuzz_encode: %s\n", e.msg);
            abort();
        }
    }
    return 0;
}

/* Well-formed UTF-8 as RFC 3629 defines it (no surrogates, nothing above U+10FFFF, shortest
 * form): what the encoder must accept; anything else it must refuse. */
static int valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (l == 0 || i + l > n)
            return 0;
        uint32_t cp = l == 1 ? c : (uint32_t)(c & (0x7F >> l));
        for (size_t k = 1; k < l; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[l] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += l;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int ok_text = valid_utf8(data, size);
    for (int t = 0; t < 2; t++) {
        const brt_tokenizer *tok = g_tok[t];
        int32_t *ids = NULL;
        size_t n_ids = 0;
        brt_err e;
        brt_err_clear(&e);
        brt_status st = brt_tokenizer_encode(tok, (const char *)data, size, 1, &ids, &n_ids, &e);
        FUZZ_CHECK((st == BRT_OK) == ok_text);
        if (st == BRT_OK) {
            FUZZ_CHECK(n_ids >= 1 && ids[0] == brt_tokenizer_bos_id(tok));
            for (size_t i = 0; i < n_ids; i++)
                FUZZ_CHECK(ids[i] >= 0 && ids[i] < brt_tokenizer_vocab_size(tok));
            char *text = NULL;
            size_t len = 0;
            FUZZ_CHECK(brt_tokenizer_decode(tok, ids, n_ids, &text, &len, &e) == BRT_OK);
            FUZZ_CHECK(text[len] == '\0');
            /* Llama 2's normalizer keeps every space and byte fallback covers every character:
             * decoding gives the text back, unless it held U+2581, the normalizer's own space */
            if (t == 1 && !memmem(data, size, "\xE2\x96\x81", 3))
                FUZZ_CHECK(len == size && (size == 0 || memcmp(text, data, size) == 0));
            free(text);
            FUZZ_CHECK(brt_tokenizer_join(tok, ids, n_ids, &text, &len, &e) == BRT_OK);
            free(text);
        }
        free(ids);
    }
    return 0;
}
