/* Progress lines on stderr while a run goes on: jobs and tokens done (their results back from
 * the last stage), the rate since the start, and the time left at that rate. */
#include <stdio.h>

#include "base/log.h"
#include "cluster/node_impl.h"

void brt_progress_report(brt_node *n, brt_progress *pg, int force)
{
    double now = brt_now();
    if (!n->o.progress || (!force && now - pg->last < 2.0))
        return;
    pg->last = now;
    int64_t pending = 0;
    for (int i = 0; i < n->n_sources; i++)
        if (n->sources[i]->pending)
            pending += n->sources[i]->pending(n->sources[i]);
    const int64_t done = brt_sched_jobs_finished(n->sched), jobs = brt_sched_jobs_total(n->sched);
    const int64_t td = brt_sched_tokens_done(n->sched);
    int64_t tt = brt_sched_tokens_total(n->sched);
    if (pending && jobs) /* jobs not submitted yet: as long as the ones submitted so far, on average */
        tt += tt / jobs * pending;
    const double el = now - pg->t0, rate = el > 0 ? td / el : 0;
    char eta[48] = "";
    if (td >= tt)
        snprintf(eta, sizeof eta, "0s");
    else if (rate > 0)
        snprintf(eta, sizeof eta, "%.0fs", (tt - td) / rate > 1 ? (tt - td) / rate : 1.0);
    else
        snprintf(eta, sizeof eta, "unknown (no results yet)");
    brt_log_info("progress: jobs %lld/%lld done, tokens %lld/%lld (%.0f tok/s), elapsed %.0fs, ETA %s",
                 (long long)done, (long long)(jobs + pending), (long long)td, (long long)tt, rate, el, eta);
}
