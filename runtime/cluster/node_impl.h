/* What the files of a rank's life share (internal to runtime/cluster): the rank's status line
 * and signals, traces, progress lines, the coordinator's loop and the stage loop. */
#ifndef BRT_NODE_IMPL_H
#define BRT_NODE_IMPL_H

#include "brt.pb-c.h"
#include "cluster/node.h"

#define BRT_HEARTBEAT_SECONDS 5.0

/* What this rank is doing, for a clean message when the launcher kills it (rank_status.c). */
void brt_rank_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void brt_rank_status_init(int rank);
/* SIGTERM/SIGINT: print what the rank was doing and exit; with `graceful` set, the first signal
 * only sets *graceful (the server drains and stops) and the second exits. */
void brt_rank_signals(volatile int *graceful);

/* Traces (trace.c): per micro-batch timings when --trace is given, and the summary at shutdown. */
typedef struct brt_trace_buf brt_trace_buf;
void brt_trace_start(brt_node *n); /* record micro-batch timings from now on */
void brt_trace_add(brt_node *n, const brt_microbatch *mb, double t0, double t1);
void brt_trace_fill(brt_node *n, Brt__Trace *tr);
void brt_trace_free(brt_node *n);
/* Rank 0 at shutdown: its own trace and every other rank's (they send one as they exit), the
 * summary lines and the trace file. */
brt_status brt_trace_gather(brt_node *n, double timeout, brt_err *err);

/* Progress lines on stderr (progress.c). */
typedef struct brt_progress {
    double t0, last;
} brt_progress;
void brt_progress_report(brt_node *n, brt_progress *pg, int force);

/* Running micro-batches (stage_loop.c): one through this rank's stage and on to the next stage or
 * the coordinator; the loop of every rank but 0. */
/* The micro-batch's state-cache ops for this stage (cache_ops.c): loads and drops before its
 * steps (after_steps 0), saves and demotions after them (1); each adds a report to mb. */
brt_status brt_node_cache_ops(brt_node *n, brt_microbatch *mb, int after_steps, brt_err *err);
brt_status brt_node_run_mb(brt_node *n, brt_microbatch *mb, brt_step_result **res, int32_t *res_cap, brt_err *err);
brt_status brt_node_run_stage_rank(brt_node *n, brt_err *err);
/* World rank 0 (coordinator.c). */
brt_status brt_node_run_coordinator(brt_node *n, brt_err *err);
/* Rank 0: keep the stages' newest figures. */
void brt_node_record_stats(brt_node *n, const brt_stage_stat *st, int32_t count);
/* Bring the job down after printing why (every rank). */
void brt_node_abort_job(brt_node *n, const char *what);

#endif
