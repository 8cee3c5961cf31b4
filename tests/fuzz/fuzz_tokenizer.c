/* A tokenizer.model (SentencePiece's ModelProto through protobuf-c; brt_tokenizer_load takes a
 * path). A model that loads must then tokenize (tok_exercise.h). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "model/tokenizer.h"
#include "tok_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tok_load("tokenizer.model", data, size);
    return 0;
}
