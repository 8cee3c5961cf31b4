/* Where jobs come from and where their results go: a batch file, the HTTP server. The coordinator
 * polls every source each turn of its loop, and ends when every source is closed and no job is
 * left. Sources run on the coordinator's thread (world rank 0); a source fed by other threads (the
 * HTTP server) hands work over through its own queue and never lets those threads touch the
 * scheduler or MPI. */
#ifndef BRT_SOURCE_H
#define BRT_SOURCE_H

#include <stdint.h>

#include "base/status.h"

typedef struct brt_sched brt_sched;
typedef struct brt_job brt_job;
typedef struct brt_source brt_source;

struct brt_source {
    const char *name;
    /* Submit what has arrived (brt_sched_submit with spec.source = this source) and cancel what
     * its clients gave up (brt_sched_cancel); never blocks for long. */
    brt_status (*poll)(brt_source *src, brt_sched *s, brt_err *err);
    /* A job of this source generated a token (job->tokens[job->n_tokens - 1]); may be NULL. */
    void (*on_token)(brt_source *src, brt_job *job);
    /* A job of this source ended: done, failed or cancelled. The job is freed after this returns. */
    void (*on_done)(brt_source *src, brt_job *job);
    /* Stop taking new work (SIGTERM on a server): what was submitted goes on; may be NULL. */
    void (*stop)(brt_source *src, brt_sched *s);
    /* 1 when no job will come any more. */
    int (*closed)(brt_source *src);
    /* Jobs known but not submitted yet (progress totals); may be NULL. */
    int64_t (*pending)(brt_source *src);
    /* Wait at most `seconds` for something to poll, returning early when it arrives; may be NULL
     * (a source that has everything at hand). */
    void (*wait)(brt_source *src, double seconds);
    void *impl;
};

#endif
