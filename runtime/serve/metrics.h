/* The server's metrics in Prometheus text format (GET /metrics): requests running and waiting,
 * prompt and generated tokens, time to first token and per-token latency histograms, requests
 * refused, and each pipeline stage's busy fraction and KV pool use. Updated on the coordinator's
 * thread, read by the HTTP threads, both under the server's lock. */
#ifndef BRT_SERVE_METRICS_H
#define BRT_SERVE_METRICS_H

#include <stdint.h>

#include "base/buf.h"
#include "cache/index.h"
#include "engine/step.h"

#define BRT_METRICS_BUCKETS 16
#define BRT_METRICS_STAGES 64

typedef struct brt_histogram {
    const double *bounds;                   /* [BRT_METRICS_BUCKETS] upper bounds, seconds */
    int64_t counts[BRT_METRICS_BUCKETS + 1]; /* the last: +Inf */
    double sum;
    int64_t n;
} brt_histogram;

typedef struct brt_metrics {
    int64_t requests_running, requests_waiting;
    int64_t prompt_tokens, generated_tokens, cached_tokens;
    int64_t requests_ok, requests_failed, requests_cancelled;
    int64_t refused_admission, refused_queue_full, refused_invalid, refused_stopping;
    brt_histogram ttft, tpot, e2e;
    int cache;                              /* a state cache is on: its counters follow */
    brt_cache_counters cache_counters;
    brt_stage_stat stages[BRT_METRICS_STAGES];
    int n_stages;
} brt_metrics;

void brt_metrics_init(brt_metrics *m);
void brt_histogram_observe(brt_histogram *h, double v);
/* Keep a stage's newest figures. */
void brt_metrics_stage(brt_metrics *m, const brt_stage_stat *s);
/* The exposition text; 0, or -1 out of memory. */
int brt_metrics_render(const brt_metrics *m, const char *model, brt_buf *out);

#endif
