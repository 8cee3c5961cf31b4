/* Batch files: OpenAI-Batch JSONL requests in, one JSON result line per job out, and the
 * results journal that makes `beaconrt run` resumable.
 *
 * The output file IS the journal. Each result line is appended with one write() and fsync'ed
 * the moment its job ends; a rerun opens the same file, learns which custom_ids are done, cuts
 * off a line torn by a crash, and runs only the rest. Success and error lines both count as
 * done: to retry failed jobs, remove their lines (or the file).
 *
 * Ids in the output: every line carries a custom_id that is unique in the file. A bad input
 * line whose custom_id cannot be read, or that repeats an earlier line's custom_id, is reported
 * under the synthetic id "line-<N>" (N = its 1-based input line; "line-<N>#<k>" in the unlikely
 * case the input itself uses that id). Synthetic ids depend only on the input file, so a rerun
 * with the same input recognises those error lines as done too. */
#ifndef BRT_API_BATCH_FILE_H
#define BRT_API_BATCH_FILE_H

#include "api/request.h"

/* A whole input file. reqs and bad are each in file order. */
typedef struct brt_batch {
    brt_request *reqs; /* [n] parsed OK, custom_ids unique */
    size_t n;
    struct brt_batch_bad {
        size_t line_no;
        char *custom_id;   /* the id to report the error under: the line's own when readable and
                              not already taken, else the synthetic "line-<N>" (see top of file).
                              Unique across reqs and bad. brt_batch_read never leaves it NULL. */
        brt_status status; /* why the line was refused; brt_status_name() gives the error code */
        char *message;     /* "line N: ..." */
    } *bad;            /* [n_bad] */
    size_t n_bad;
} brt_batch;

/* Read and parse a JSONL file. Blank (whitespace-only) lines are skipped; a trailing '\r'
 * (CRLF files) and a UTF-8 BOM on line 1 are tolerated. A line that fails to parse, or whose
 * custom_id repeats an earlier line's (the message names that line), goes to out->bad and the
 * rest of the file is still read. Only I/O and allocation failures fail the call; out is then
 * empty. */
brt_status brt_batch_read(const char *path, brt_batch *out, brt_err *err);
void brt_batch_free(brt_batch *b);

#endif
