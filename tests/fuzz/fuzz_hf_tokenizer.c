/* A Hugging Face tokenizer.json (brt_tokenizer_load of a path ending in .json: the JSON through
 * jansson, regexes through PCRE2). A tokenizer that loads must then tokenize (tok_exercise.h);
 * one that does not has a message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/tokenizer.h"
#include "tok_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("tokenizer.json", data, size);
    if (!path)
        return 0;
    brt_tokenizer *tok = NULL;
    brt_err e;
    brt_err_clear(&e);
    if (brt_tokenizer_load(path, &tok, &e) == BRT_OK)
        fuzz_tok_exercise(tok);
    else
        FUZZ_CHECK(tok == NULL && e.msg[0] != '\0');
    brt_tokenizer_free(tok);
    return 0;
}
