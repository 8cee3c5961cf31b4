#include "api/batch_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/batch_file.h"
#include "api/journal.h"
#include "base/log.h"

#define WINDOW 512 /* jobs submitted ahead of the scheduler (queued, not yet admitted) */

struct brt_batch_source {
    brt_source base;
    brt_api_model *am;
    brt_batch batch;
    brt_journal *journal;
    const char *out_path;
    size_t next;                /* next request to submit */
    int bad_written;
    brt_sched *sched;           /* halted when the output cannot be written */
    brt_batch_stats st;
};

static void write_line(brt_batch_source *b, const char *id, char *line)
{
    brt_err e;
    if (!line)
        return;
    /* a result that cannot be written is lost: stop the run rather than compute more of them
     * (the rerun redoes what the output lacks) */
    if (brt_journal_append(b->journal, id, line, &e) != BRT_OK) {
        b->st.lost++;
        if (b->st.io_err.status == BRT_OK) {
            b->st.io_err = e;
            if (b->sched)
                brt_sched_halt(b->sched, &e);
        }
    }
    free(line);
}

static void write_error(brt_batch_source *b, const char *id, brt_status st, const char *msg)
{
    char *line = NULL;
    brt_err e;
    if (brt_batch_format_error(id, brt_status_name(st), msg, &line, &e) == BRT_OK)
        write_line(b, id, line);
    b->st.failed++;
}

static brt_status bs_poll(brt_source *src, brt_sched *s, brt_err *err)
{
    brt_batch_source *b = src->impl;
    b->sched = s;
    if (!b->bad_written) {
        for (size_t i = 0; i < b->batch.n_bad; i++) {
            struct brt_batch_bad *bad = &b->batch.bad[i];
            if (!brt_journal_is_done(b->journal, bad->custom_id))
                write_error(b, bad->custom_id, bad->status, bad->message);
        }
        b->bad_written = 1;
    }
    while (b->next < b->batch.n && brt_sched_jobs_queued(s) < WINDOW) {
        if (b->st.io_err.status != BRT_OK) { /* an error line could not be written */
            *err = b->st.io_err;
            return err->status;
        }
        brt_request *r = &b->batch.reqs[b->next++];
        if (brt_journal_is_done(b->journal, r->custom_id))
            continue;
        brt_job_spec spec;
        int32_t *ids = NULL;
        brt_err e;
        if (brt_api_job_spec(b->am, r, r->custom_id, &spec, &ids, &e) != BRT_OK) {
            char msg[BRT_ERR_MSG_MAX + 32];
            snprintf(msg, sizeof msg, "line %zu: %s", r->line_no, e.msg);
            write_error(b, r->custom_id, e.status, msg);
            continue;
        }
        spec.source = src;
        brt_job *job;
        brt_status st = brt_sched_submit(s, &spec, &job, err);
        free(ids);
        if (st != BRT_OK)
            return st;
        b->st.submitted++;
    }
    if (b->st.io_err.status != BRT_OK) {
        *err = b->st.io_err;
        return err->status;
    }
    return BRT_OK;
}

static void bs_on_done(brt_source *src, brt_job *job)
{
    brt_batch_source *b = src->impl;
    const brt_request *r = job->user;
    if (job->status == BRT_JOB_CANCELLED) { /* a server stopping: nothing written, the rerun does it */
        b->st.cancelled++;
        return;
    }
    if (job->status != BRT_JOB_DONE) {
        write_error(b, job->name, job->err_status ? job->err_status : BRT_ERR_INTERNAL, job->error);
        return;
    }
    brt_api_result res;
    brt_err e;
    char *line = NULL;
    if (brt_api_result_make(b->am, r, b->sched, job, &res, &e) != BRT_OK) {
        write_error(b, job->name, e.status, e.msg);
        return;
    }
    if (brt_batch_format_success(job->name, b->am->name, (int64_t)time(NULL), &res.c, &line, &e) != BRT_OK)
        write_error(b, job->name, e.status, e.msg);
    else {
        write_line(b, job->name, line);
        b->st.ok++;
        b->st.gen_tokens += job->n_gen;
        b->st.prompt_tokens += job->prompt_len;
    }
    brt_api_result_free(&res);
}

/* SIGTERM on a server: submit nothing more, and what has not started is left for the rerun. */
static void bs_stop(brt_source *src, brt_sched *s)
{
    brt_batch_source *b = src->impl;
    b->next = b->batch.n;
    brt_sched_cancel_queued(s, src); /* on_done counts them */
}

static int bs_closed(brt_source *src)
{
    brt_batch_source *b = src->impl;
    return b->next >= b->batch.n;
}

static int64_t bs_pending(brt_source *src)
{
    brt_batch_source *b = src->impl;
    int64_t n = 0;
    for (size_t i = b->next; i < b->batch.n; i++)
        n += !brt_journal_is_done(b->journal, b->batch.reqs[i].custom_id);
    return n;
}

brt_status brt_batch_source_open(const char *input, const char *output, brt_api_model *am, brt_batch_source **out,
                                 brt_err *err)
{
    *out = NULL;
    brt_batch_source *b = calloc(1, sizeof *b);
    if (!b)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    b->am = am;
    b->out_path = output;
    brt_status st = brt_batch_read(input, &b->batch, err);
    if (st == BRT_OK)
        st = brt_journal_open(output, &b->journal, err);
    if (st != BRT_OK) {
        brt_batch_source_close(b);
        return st;
    }
    b->st.lines = b->batch.n + b->batch.n_bad;
    b->st.refused = b->batch.n_bad;
    b->st.done_before = brt_journal_n_done(b->journal);
    b->st.truncated = brt_journal_truncated_bytes(b->journal);
    b->base = (brt_source){"batch file", bs_poll, NULL, bs_on_done, bs_stop, bs_closed, bs_pending, NULL, b};
    *out = b;
    return BRT_OK;
}

brt_source *brt_batch_source_base(brt_batch_source *b) { return &b->base; }
const brt_batch_stats *brt_batch_source_stats(const brt_batch_source *b) { return &b->st; }

void brt_batch_source_close(brt_batch_source *b)
{
    if (!b)
        return;
    if (b->journal)
        brt_journal_close(b->journal);
    brt_batch_free(&b->batch);
    free(b);
}
