/* A batch file as a job source (`beaconrt run`): requests from an OpenAI Batch JSONL file, results
 * appended to the output journal as each job ends; on a rerun, requests already in the output
 * are skipped. Requests are tokenized and submitted a window at a time, so work starts at once and
 * a huge batch never sits tokenized in memory. */
#ifndef BRT_API_BATCH_SOURCE_H
#define BRT_API_BATCH_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "api/job.h"
#include "sched/source.h"

typedef struct brt_batch_source brt_batch_source;

typedef struct brt_batch_stats {
    size_t lines;               /* requests in the input (good and refused) */
    size_t done_before;         /* already in the output when the run started */
    size_t refused;             /* lines refused when parsing */
    size_t truncated;           /* bytes of a torn last line cut from the output */
    int64_t submitted, ok, failed, prompt_tokens, gen_tokens;
    int64_t lost;               /* results that could not be written */
    int64_t cancelled;          /* not finished when a server stopped: left for the rerun */
    brt_err io_err;             /* status != OK: the first output write that failed (the run stops) */
} brt_batch_stats;

/* Read the input and open the output journal (locked). */
brt_status brt_batch_source_open(const char *input, const char *output, brt_api_model *am, brt_batch_source **out,
                                 brt_err *err);
brt_source *brt_batch_source_base(brt_batch_source *b);
const brt_batch_stats *brt_batch_source_stats(const brt_batch_source *b);
void brt_batch_source_close(brt_batch_source *b);

#endif
