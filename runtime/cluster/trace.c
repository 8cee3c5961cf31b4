/* Traces: each rank's micro-batches and their times (--trace), and the summary lines at shutdown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/log.h"
#include "cluster/node_impl.h"
#include "cluster/wire.h"

struct brt_trace_buf {
    Brt__TraceEvent *ev;
    size_t n, cap;
};

void brt_trace_start(brt_node *n) { n->trace = calloc(1, sizeof *n->trace); }

void brt_trace_add(brt_node *n, const brt_microbatch *mb, double t0, double t1)
{
    if (!n->trace)
        return;
    brt_trace_buf *t = n->trace;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        Brt__TraceEvent *ne = realloc(t->ev, cap * sizeof *ne);
        if (!ne)
            return;
        t->ev = ne;
        t->cap = cap;
    }
    Brt__TraceEvent *e = &t->ev[t->n++];
    brt__trace_event__init(e);
    e->mb_id = mb->id;
    e->t_begin = t0;
    e->t_end = t1;
    e->rows = mb->n_rows;
    e->n_jobs = e->n_steps = (size_t)mb->n_steps;
    e->jobs = malloc((size_t)(mb->n_steps ? mb->n_steps : 1) * sizeof *e->jobs);
    e->steps = malloc((size_t)(mb->n_steps ? mb->n_steps : 1) * sizeof *e->steps);
    for (int32_t i = 0; e->jobs && e->steps && i < mb->n_steps; i++) {
        e->jobs[i] = mb->steps[i].job;
        e->steps[i] = mb->steps[i].index;
    }
}

static long rss_peak_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

void brt_trace_fill(brt_node *n, Brt__Trace *tr)
{
    brt__trace__init(tr);
    tr->version = BRT_WIRE_VERSION;
    tr->rank = n->grid.rank;
    tr->dp = n->grid.my_dp;
    tr->pp = n->grid.my_pp;
    int64_t mbs;
    brt_stage_stats(n->stage, &tr->busy_seconds, &mbs);
    tr->microbatches = mbs;
    tr->kv_peak_bytes = brt_stage_kv_peak(n->stage);
    tr->rss_peak_kb = rss_peak_kb();
    tr->t_start = n->t_start;
    tr->t_end = brt_now();
    tr->weight_bytes = n->weight_bytes;
    if (n->trace) {
        tr->n_events = n->trace->n;
        tr->events = malloc((n->trace->n ? n->trace->n : 1) * sizeof *tr->events);
        for (size_t i = 0; tr->events && i < n->trace->n; i++)
            tr->events[i] = &n->trace->ev[i];
    }
}

void brt_trace_free(brt_node *n)
{
    if (!n->trace)
        return;
    for (size_t i = 0; i < n->trace->n; i++) {
        free(n->trace->ev[i].jobs);
        free(n->trace->ev[i].steps);
    }
    free(n->trace->ev);
    free(n->trace);
    n->trace = NULL;
}

static void write_trace_line(FILE *f, const Brt__Trace *t, double t_ref)
{
    fprintf(f,
            "{\"rank\":%d,\"pipeline\":%d,\"stage\":%d,\"busy_s\":%.6f,\"wall_s\":%.6f,\"microbatches\":%lld,"
            "\"kv_peak_bytes\":%lld,\"rss_peak_kb\":%lld,\"weight_bytes\":%lld,\"events\":[",
            t->rank, t->dp, t->pp, t->busy_seconds, t->t_end - t->t_start, (long long)t->microbatches,
            (long long)t->kv_peak_bytes, (long long)t->rss_peak_kb, (long long)t->weight_bytes);
    for (size_t i = 0; i < t->n_events; i++) {
        const Brt__TraceEvent *e = t->events[i];
        fprintf(f, "%s{\"mb\":%llu,\"t0\":%.6f,\"t1\":%.6f,\"rows\":%d,\"steps\":[", i ? "," : "",
                (unsigned long long)e->mb_id, e->t_begin - t_ref, e->t_end - t_ref, e->rows);
        for (size_t k = 0; k < e->n_jobs; k++)
            fprintf(f, "%s[%llu,%u]", k ? "," : "", (unsigned long long)e->jobs[k], e->steps[k]);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
}

static void summarize(brt_node *n, Brt__Trace **traces, int32_t count)
{
    double wall = brt_now() - n->t_start;
    for (int32_t i = 0; i < count && n->o.progress; i++) {
        const Brt__Trace *t = traces[i];
        brt_log_info("rank %d (pipeline %d, stage %d): busy %.1f%% of %.1fs, %lld micro-batches, KV peak %.1f MiB, RSS "
                     "peak %.0f MiB",
                     t->rank, t->dp, t->pp, wall > 0 ? 100 * t->busy_seconds / wall : 0, wall,
                     (long long)t->microbatches, t->kv_peak_bytes / 1048576.0, t->rss_peak_kb / 1024.0);
    }
    if (n->o.trace_path) {
        FILE *f = fopen(n->o.trace_path, "w");
        if (!f) {
            brt_log_warn("cannot write the trace to %s", n->o.trace_path);
            return;
        }
        for (int32_t i = 0; i < count; i++)
            write_trace_line(f, traces[i], n->t_start);
        fclose(f);
    }
}

brt_status brt_trace_gather(brt_node *n, double timeout, brt_err *err)
{
    const int32_t world = n->grid.world;
    brt_status st = BRT_OK;
    if (!n->tr || world == 1) {
        if (n->o.trace_path) {
            Brt__Trace mine, *one = &mine;
            brt_trace_fill(n, &mine);
            summarize(n, &one, 1);
            free(mine.events);
        }
        return BRT_OK;
    }
    Brt__Trace **traces = calloc((size_t)world, sizeof *traces);
    Brt__Trace **list = calloc((size_t)world, sizeof *list);
    if (!traces || !list) {
        free(traces);
        free(list);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    Brt__Trace mine;
    brt_trace_fill(n, &mine);
    traces[0] = &mine;
    int32_t have = 1;
    while (have < world) {
        brt_msg m;
        int got;
        if ((st = n->tr->recv(n->tr, &m, timeout, &got, err)) != BRT_OK)
            break;
        if (!got) {
            brt_log_warn("only %d of %d ranks reported at shutdown", have, world);
            break;
        }
        if (m.tag == BRT_TAG_TRACE) {
            Brt__Trace *tr = brt__trace__unpack(NULL, m.hdr_len, m.hdr);
            if (tr && tr->rank > 0 && tr->rank < world && !traces[tr->rank]) {
                traces[tr->rank] = tr;
                have++;
            } else if (tr)
                brt__trace__free_unpacked(tr, NULL);
        }
        free(m.buf);
    }
    int32_t cnt = 0;
    for (int32_t r = 0; r < world; r++)
        if (traces[r])
            list[cnt++] = traces[r];
    summarize(n, list, cnt);
    free(list);
    free(mine.events);
    for (int32_t r = 1; r < world; r++)
        if (traces[r])
            brt__trace__free_unpacked(traces[r], NULL);
    free(traces);
    return st;
}
