/* The results journal of `beaconrt run`: the output file itself (see api/batch_file.h for the
 * format of its lines). */
#ifndef BRT_API_JOURNAL_H
#define BRT_API_JOURNAL_H

#include <stddef.h>

#include "base/status.h"

typedef struct brt_journal brt_journal;

/* Open (or create) the output file for appending, and take an exclusive flock on it so two runs
 * cannot interleave (skipped where the filesystem has no flock, e.g. Lustre without -o flock).
 * An existing file is scanned: every complete line that is a JSON object with a non-empty
 * string custom_id marks that id done (success and error lines alike). A torn tail - a last
 * line without '\n', or a last line that is not such an object - is cut off with ftruncate and
 * its length reported by brt_journal_truncated_bytes(); that job will be redone. A bad line
 * anywhere before the last one, or a custom_id on two lines, is BRT_ERR_FORMAT naming the line:
 * the file was not written by one beaconrt run and guessing could lose or duplicate results.
 * Blank lines are skipped. The file must be a regular file. */
brt_status brt_journal_open(const char *path, brt_journal **out, brt_err *err);
int brt_journal_is_done(const brt_journal *j, const char *custom_id);
size_t brt_journal_n_done(const brt_journal *j);
size_t brt_journal_truncated_bytes(const brt_journal *j);

/* Append one formatted line (exactly one '\n', at its end) with a single write() and fsync, and
 * mark custom_id done. An id already done is BRT_ERR_INTERNAL and nothing is written. If the
 * write fails part-way the partial line is cut off again; if that or the fsync fails, the
 * journal refuses further appends (BRT_ERR_IO) - stop, and let the rerun's scan decide. */
brt_status brt_journal_append(brt_journal *j, const char *custom_id, const char *line,
                              brt_err *err);
void brt_journal_close(brt_journal *j);

#endif
