/* A tokenizer.model (SentencePiece's ModelProto through protobuf-c; brt_tokenizer_load takes a
 * path). A model that loads must then tokenize (tok_exercise.h). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/tokenizer.h"
#include "tok_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("tokenizer.model", data, size);
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
