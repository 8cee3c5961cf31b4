#include "serve/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const double k_ttft[BRT_METRICS_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                                   5,    10,    20,   40,  80,   160, 320, 640};
static const double k_tpot[BRT_METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                                   0.15,  0.2,    0.3,   0.5,  0.75,  1.0,  2.5,   5};

void brt_metrics_init(brt_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->ttft.bounds = k_ttft;
    m->tpot.bounds = k_tpot;
    m->e2e.bounds = k_ttft;
}

void brt_histogram_observe(brt_histogram *h, double v)
{
    int i = 0;
    while (i < BRT_METRICS_BUCKETS && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

void brt_metrics_stage(brt_metrics *m, const brt_stage_stat *s)
{
    for (int i = 0; i < m->n_stages; i++)
        if (m->stages[i].pipeline == s->pipeline && m->stages[i].stage == s->stage) {
            m->stages[i] = *s;
            return;
        }
    if (m->n_stages < BRT_METRICS_STAGES)
        m->stages[m->n_stages++] = *s;
}

static int outf(brt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int outf(brt_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return n < 0 ? -1 : brt_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static int histogram(brt_buf *b, const char *name, const char *help, const brt_histogram *h, const char *model)
{
    int bad = outf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    int64_t cum = 0;
    for (int i = 0; i < BRT_METRICS_BUCKETS; i++) {
        cum += h->counts[i];
        bad |= outf(b, "%s_bucket{model=\"%s\",le=\"%g\"} %lld\n", name, model, h->bounds[i], (long long)cum);
    }
    cum += h->counts[BRT_METRICS_BUCKETS];
    bad |= outf(b, "%s_bucket{model=\"%s\",le=\"+Inf\"} %lld\n", name, model, (long long)cum);
    bad |= outf(b, "%s_sum{model=\"%s\"} %.6f\n%s_count{model=\"%s\"} %lld\n", name, model, h->sum, name, model,
                (long long)h->n);
    return bad;
}

int brt_metrics_render(const brt_metrics *m, const char *model, brt_buf *b)
{
    int bad = 0;
#define GAUGE(name, help, v)                                                                              \
    bad |= outf(b, "# HELP " name " " help "\n# TYPE " name " gauge\n" name "{model=\"%s\"} %lld\n", model, \
                (long long)(v))
#define COUNTER(name, help, v)                                                                            \
    bad |= outf(b, "# HELP " name " " help "\n# TYPE " name " counter\n" name "{model=\"%s\"} %lld\n",     \
                model, (long long)(v))
    GAUGE("beaconrt_requests_running", "Requests whose job runs on a pipeline.", m->requests_running);
    GAUGE("beaconrt_requests_waiting", "Requests received and not yet running (waiting for room).",
          m->requests_waiting);
    COUNTER("beaconrt_prompt_tokens_total", "Prompt tokens of finished requests.", m->prompt_tokens);
    COUNTER("beaconrt_generation_tokens_total", "Tokens generated.", m->generated_tokens);
    COUNTER("beaconrt_prompt_tokens_cached_total", "Prompt tokens read from the state cache.", m->cached_tokens);
    bad |= outf(b, "# HELP beaconrt_requests_total Requests that ended, by how.\n# TYPE beaconrt_requests_total counter\n");
    bad |= outf(b, "beaconrt_requests_total{model=\"%s\",result=\"ok\"} %lld\n", model, (long long)m->requests_ok);
    bad |= outf(b, "beaconrt_requests_total{model=\"%s\",result=\"failed\"} %lld\n", model,
                (long long)m->requests_failed);
    bad |= outf(b, "beaconrt_requests_total{model=\"%s\",result=\"cancelled\"} %lld\n", model,
                (long long)m->requests_cancelled);
    bad |= outf(b, "# HELP beaconrt_requests_refused_total Requests refused before they ran, by reason.\n"
                   "# TYPE beaconrt_requests_refused_total counter\n");
    bad |= outf(b, "beaconrt_requests_refused_total{model=\"%s\",reason=\"admission\"} %lld\n", model,
                (long long)m->refused_admission);
    bad |= outf(b, "beaconrt_requests_refused_total{model=\"%s\",reason=\"queue_full\"} %lld\n", model,
                (long long)m->refused_queue_full);
    bad |= outf(b, "beaconrt_requests_refused_total{model=\"%s\",reason=\"invalid\"} %lld\n", model,
                (long long)m->refused_invalid);
    bad |= outf(b, "beaconrt_requests_refused_total{model=\"%s\",reason=\"stopping\"} %lld\n", model,
                (long long)m->refused_stopping);
    bad |= histogram(b, "beaconrt_time_to_first_token_seconds", "From arrival to the first generated token.", &m->ttft,
                     model);
    bad |= histogram(b, "beaconrt_time_per_output_token_seconds", "Between consecutive generated tokens.", &m->tpot,
                     model);
    bad |= histogram(b, "beaconrt_request_duration_seconds", "From arrival to the end of the response.", &m->e2e, model);
    bad |= outf(b, "# HELP beaconrt_stage_busy_fraction Share of its wall time a pipeline stage spent computing.\n"
                   "# TYPE beaconrt_stage_busy_fraction gauge\n");
    for (int i = 0; i < m->n_stages; i++) {
        const brt_stage_stat *s = &m->stages[i];
        bad |= outf(b, "beaconrt_stage_busy_fraction{model=\"%s\",pipeline=\"%d\",stage=\"%d\",rank=\"%d\"} %.4f\n", model,
                    s->pipeline, s->stage, s->rank, s->wall_s > 0 ? s->busy_s / s->wall_s : 0.0);
    }
    bad |= outf(b, "# HELP beaconrt_stage_kv_used_bytes Long-context state a stage holds now.\n"
                   "# TYPE beaconrt_stage_kv_used_bytes gauge\n");
    for (int i = 0; i < m->n_stages; i++)
        bad |= outf(b, "beaconrt_stage_kv_used_bytes{model=\"%s\",pipeline=\"%d\",stage=\"%d\"} %lld\n", model,
                    m->stages[i].pipeline, m->stages[i].stage, (long long)m->stages[i].kv_used);
    bad |= outf(b, "# HELP beaconrt_stage_kv_budget_bytes The most long-context state a stage may hold.\n"
                   "# TYPE beaconrt_stage_kv_budget_bytes gauge\n");
    for (int i = 0; i < m->n_stages; i++)
        bad |= outf(b, "beaconrt_stage_kv_budget_bytes{model=\"%s\",pipeline=\"%d\",stage=\"%d\"} %lld\n", model,
                    m->stages[i].pipeline, m->stages[i].stage, (long long)m->stages[i].kv_budget);
    if (m->cache) {
        const brt_cache_counters *c = &m->cache_counters;
        COUNTER("beaconrt_state_cache_hits_total", "Requests that started from a cached state.", c->hits);
        COUNTER("beaconrt_state_cache_device_hits_total", "Hits served by a copy in device memory.", c->dev_hits);
        COUNTER("beaconrt_state_cache_misses_total", "Requests looked up and not found in the state cache.", c->misses);
        COUNTER("beaconrt_state_cache_saves_total", "States kept in the cache.", c->saves);
        COUNTER("beaconrt_state_cache_evictions_total", "States dropped to stay within a tier's budget.",
                c->evictions);
        COUNTER("beaconrt_state_cache_demotions_total", "States moved down a tier (device to host memory or disk, host memory to disk).", c->demotions);
        COUNTER("beaconrt_state_cache_load_failures_total", "Cached states that did not load (recomputed).",
                c->load_failures);
    }
#undef GAUGE
#undef COUNTER
    return bad ? -1 : 0;
}
