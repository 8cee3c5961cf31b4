/* An existing results file as `beaconrt run` reopens it to resume (brt_journal_open takes a
 * path): the scan of its lines, the cut of a torn last line, and one append after it. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/journal.h"
#include "fuzz_util.h"

static const char k_id[] = "fuzz-appended";
static const char k_line[] = "{\"id\":\"batch_req_fuzz-appended\",\"custom_id\":\"fuzz-appended\",\"response\":null,"
                             "\"error\":{\"code\":\"invalid_request\",\"message\":\"x\"}}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("results.jsonl", data, size);
    if (!path)
        return 0;
    brt_journal *j = NULL;
    brt_err e;
    brt_err_clear(&e);
    if (brt_journal_open(path, &j, &e) != BRT_OK) {
        FUZZ_CHECK(j == NULL && e.msg[0] != '\0');
        return 0;
    }
    /* only a torn tail is cut, and what is left ends at a line boundary */
    size_t cut = brt_journal_truncated_bytes(j);
    FUZZ_CHECK(cut <= size);
    struct stat sb;
    FUZZ_CHECK(stat(path, &sb) == 0 && (size_t)sb.st_size == size - cut);
    FUZZ_CHECK(sb.st_size == 0 || data[sb.st_size - 1] == '\n');
    FUZZ_CHECK(!brt_journal_is_done(j, ""));
    if (!brt_journal_is_done(j, k_id)) {
        size_t before = brt_journal_n_done(j);
        FUZZ_CHECK(brt_journal_append(j, k_id, k_line, &e) == BRT_OK);
        FUZZ_CHECK(brt_journal_n_done(j) == before + 1 && brt_journal_is_done(j, k_id));
        FUZZ_CHECK(stat(path, &sb) == 0 && (size_t)sb.st_size == size - cut + sizeof k_line - 1);
    } else
        FUZZ_CHECK(brt_journal_append(j, k_id, k_line, &e) == BRT_ERR_INTERNAL);
    brt_journal_close(j);
    return 0;
}
