/* A model folder's tokenizer_config.json as `serve` and `run` read it to pick the chat template
 * (brt_chat_detect takes the folder): the JSON, the "chat_template" string or list, and the
 * recognition of a family from the template text. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/chat_template.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_write_file("tokenizer_config.json", data, size))
        return 0;
    brt_chat_kind k = 0;
    brt_err e;
    brt_err_clear(&e);
    if (brt_chat_detect(fuzz_dir(), &k, &e) == BRT_OK) {
        /* a recognised family is one that renders */
        FUZZ_CHECK(strcmp(brt_chat_kind_name(k), "unknown") != 0);
        brt_chat_kind back;
        FUZZ_CHECK(brt_chat_kind_from_name(brt_chat_kind_name(k), &back, &e) == BRT_OK && back == k);
    } else
        FUZZ_CHECK(e.msg[0] != '\0');
    return 0;
}
