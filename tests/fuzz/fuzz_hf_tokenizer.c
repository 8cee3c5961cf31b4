/* A Hugging Face tokenizer.json (brt_tokenizer_load of a path ending in .json: the JSON through
 * jansson, regexes through PCRE2). A tokenizer that loads must then tokenize (tok_exercise.h);
 * one that does not has a message. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "model/tokenizer.h"
#include "tok_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tok_load("tokenizer.json", data, size);
    return 0;
}
