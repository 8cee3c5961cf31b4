/* What the tokenizer harnesses check of a tokenizer that loaded (fuzz_tokenizer.c: tokenizer.model,
 * fuzz_hf_tokenizer.c: tokenizer.json): every per-id query answers within its promises, and a short
 * text holding every path of the encoders (dummy prefix, runs of spaces, byte fallback, a character
 * no small vocabulary has, special-token text) encodes to ids in range, decodes and joins to
 * NUL-terminated text. */
#ifndef BRT_FUZZ_TOK_EXERCISE_H
#define BRT_FUZZ_TOK_EXERCISE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/tokenizer.h"

static const char k_text[] = "Once upon a time,  two  spaces\n\tna\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC "
                             "\xF0\x9F\xA6\x99 </s> <0x41> <|im_end|>x 123 ";

static inline void fuzz_tok_exercise(const brt_tokenizer *tok)
{
    int32_t n = brt_tokenizer_vocab_size(tok);
    FUZZ_CHECK(n > 0);
    size_t max_bytes = brt_tokenizer_max_token_bytes(tok);
    char *buf = malloc(max_bytes + 1);
    FUZZ_CHECK(buf != NULL);
    /* fuzzed models are small (max_len), so every id is cheap to visit */
    for (int32_t id = 0; id < n; id++) {
        const char *piece = brt_tokenizer_piece(tok, id);
        FUZZ_CHECK(piece != NULL);
        FUZZ_CHECK(brt_tokenizer_piece_type(tok, id) >= BRT_PIECE_NORMAL &&
                   brt_tokenizer_piece_type(tok, id) <= BRT_PIECE_BYTE);
        FUZZ_CHECK(brt_tokenizer_token_bytes(tok, id, buf, max_bytes) <= max_bytes);
        /* the lookup by text finds a piece of that text (a control piece may share the text of
         * a normal one: they live in separate tables) */
        int32_t back = brt_tokenizer_piece_id(tok, piece, strlen(piece));
        /* an id no token has (a gap in a tokenizer.json vocabulary) has the piece "" */
        FUZZ_CHECK((piece[0] == '\0' && back < 0) ||
                   (back >= 0 && back < n && strcmp(brt_tokenizer_piece(tok, back), piece) == 0));
    }
    FUZZ_CHECK(brt_tokenizer_piece(tok, n) == NULL && brt_tokenizer_piece(tok, -1) == NULL);
    free(buf);

    for (int add_bos = 0; add_bos < 2; add_bos++) {
        int32_t *ids = NULL;
        size_t n_ids = 0;
        brt_err e;
        brt_err_clear(&e);
        if (brt_tokenizer_encode(tok, k_text, sizeof k_text - 1, add_bos, &ids, &n_ids, &e) == BRT_OK) {
            FUZZ_CHECK(ids != NULL);
            for (size_t i = 0; i < n_ids; i++)
                FUZZ_CHECK(ids[i] >= 0 && ids[i] < n);
            char *text = NULL;
            size_t len = 0;
            if (brt_tokenizer_decode(tok, ids, n_ids, &text, &len, &e) == BRT_OK)
                FUZZ_CHECK(text != NULL && text[len] == '\0');
            free(text);
            text = NULL;
            if (brt_tokenizer_join(tok, ids, n_ids, &text, &len, &e) == BRT_OK)
                FUZZ_CHECK(text != NULL && text[len] == '\0');
            free(text);
        } else {
            /* only BOS can be missing: the text is valid UTF-8 and byte fallback covers the rest
             * when the model has it */
            FUZZ_CHECK(e.msg[0] != '\0');
        }
        free(ids);
    }
}

/* Loads data as the tokenizer file `name` (its suffix picks the parser); one that loads must
 * tokenize, one that does not must say why. */
static inline void fuzz_tok_load(const char *name, const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(name, data, size);
    if (!path)
        return;
    brt_tokenizer *tok = NULL;
    brt_err e;
    brt_err_clear(&e);
    if (brt_tokenizer_load(path, &tok, &e) == BRT_OK)
        fuzz_tok_exercise(tok);
    else
        FUZZ_CHECK(tok == NULL && e.msg[0] != '\0');
    brt_tokenizer_free(tok);
}

#endif
