/* One line of an OpenAI-Batch input file (brt_batch_parse_line): the bytes are the line as
 * brt_batch_read hands it over, without its newline. */
#include <stddef.h>
#include <stdint.h>

#include "api/request.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    brt_request r;
    brt_err e;
    brt_err_clear(&e);
    brt_status st = brt_batch_parse_line((const char *)data, size, 7, &r, &e);
    /* the header's promises: a line number always, a message on failure, and a custom_id only
     * when it is a non-empty string the caller can report the error under */
    FUZZ_CHECK(r.line_no == 7);
    FUZZ_CHECK(st == BRT_OK || e.msg[0] != '\0');
    FUZZ_CHECK(!r.custom_id || r.custom_id[0] != '\0');
    if (st == BRT_OK) {
        FUZZ_CHECK(r.custom_id != NULL);
        FUZZ_CHECK(r.kind == BRT_API_COMPLETIONS || r.kind == BRT_API_CHAT);
        FUZZ_CHECK(r.n_stop >= 0 && r.n_stop <= 4);
        FUZZ_CHECK(!r.stream); /* a batch line may not stream */
        FUZZ_CHECK(r.kind == BRT_API_CHAT ? r.messages != NULL : (r.prompt || r.prompt_ids));
    }
    brt_request_free(&r);
    return 0;
}
