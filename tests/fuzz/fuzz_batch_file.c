/* A whole batch input file (brt_batch_read takes a path): line splitting, CRLF, the BOM, blank
 * lines, duplicate ids and the synthetic "line-N" ids. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/batch_file.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("input.jsonl", data, size);
    if (!path)
        return 0;
    brt_batch b;
    brt_err e;
    brt_err_clear(&e);
    brt_status st = brt_batch_read(path, &b, &e);
    /* only I/O and allocation fail the call: a bad line is kept aside, never fatal */
    FUZZ_CHECK(st == BRT_OK);
    /* every id to report under is set, and ids are unique across good and bad lines (the output
     * file is keyed on them); the files are small, so quadratic is fine */
    size_t total = b.n + b.n_bad;
    for (size_t i = 0; i < total; i++) {
        const char *a = i < b.n ? b.reqs[i].custom_id : b.bad[i - b.n].custom_id;
        FUZZ_CHECK(a != NULL && a[0] != '\0');
        if (i >= b.n)
            FUZZ_CHECK(b.bad[i - b.n].message != NULL && b.bad[i - b.n].status != BRT_OK);
        for (size_t j = 0; j < i; j++) {
            const char *c = j < b.n ? b.reqs[j].custom_id : b.bad[j - b.n].custom_id;
            FUZZ_CHECK(strcmp(a, c) != 0);
        }
    }
    brt_batch_free(&b);
    return 0;
}
