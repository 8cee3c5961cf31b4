/* Helpers shared by the engine benchmarks: running jobs through an in-process node, the
 * machine's memory copy bandwidth, the process's memory figures. */
#ifndef BRT_BENCH_UTIL_H
#define BRT_BENCH_UTIL_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "cluster/node.h"

/* ---- memory figures ---------------------------------------------------------------------- */

/* A "Vm...:" line of /proc/self/status in KiB (-1 when unreadable). */
static inline int64_t bench_proc_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t kl = strlen(key);
    int64_t v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoll(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static inline const char *bench_bytes(double b, char *buf, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", b, u[i]);
    return buf;
}

/* ---- memory copy bandwidth ----------------------------------------------------------------- */

typedef struct {
    char *dst;
    const char *src;
    size_t n;
} bench_copy_arg;

static inline void *bench_copy_thread(void *p)
{
    bench_copy_arg *a = p;
    memcpy(a->dst, a->src, a->n);
    return NULL;
}

/* GB/s (1e9) of bytes read + written by a memcpy of `bytes` split over n_threads, best of reps. */
static inline double bench_copy_bandwidth(int n_threads, size_t bytes, int reps)
{
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > 64)
        n_threads = 64;
    char *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst) {
        free(src);
        free(dst);
        return 0;
    }
    memset(src, 1, bytes); /* fault every page in before timing */
    memset(dst, 2, bytes);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        pthread_t th[64];
        bench_copy_arg args[64];
        size_t per = bytes / (size_t)n_threads / 64 * 64;
        double t0 = brt_now();
        for (int i = 0; i < n_threads; i++) {
            args[i].dst = dst + (size_t)i * per;
            args[i].src = src + (size_t)i * per;
            args[i].n = i == n_threads - 1 ? bytes - (size_t)i * per : per;
            pthread_create(&th[i], NULL, bench_copy_thread, &args[i]);
        }
        for (int i = 0; i < n_threads; i++)
            pthread_join(th[i], NULL);
        double dt = brt_now() - t0;
        if (dt < best)
            best = dt;
    }
    free(src);
    free(dst);
    return 2.0 * (double)bytes / best / 1e9;
}

/* ---- GEMM through a backend ------------------------------------------------------------------- */

/* The clock kernel timings use: wall time, or with bench_use_cpu_time() this process's CPU time,
 * which a single-threaded run on a shared machine keeps when other work takes turns on its core
 * (cache sharing still shows; with several threads, spinning and waiting count too). */
static double bench_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double (*bench_clock)(void) = brt_now;
static inline void bench_use_cpu_time(void) { bench_clock = bench_cpu_seconds; }

/* Best seconds of c[m, w.rows] = a[m, w.cols] . w^T through the backend's gemm (w uploaded here),
 * over reps calls after one warm-up; before (may be NULL) runs ahead of each timed call (e.g. to
 * evict caches). Random activations. 0 on failure (the message in err). */
static inline double bench_gemm_seconds(brt_backend *be, brt_weight *w, int64_t m, int reps, void (*before)(void),
                                        brt_err *err)
{
    float *a = malloc((size_t)(m * w->cols) * 4);
    brt_buffer *ab = NULL, *cb = NULL;
    double best = 0;
    if (!a) {
        brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        return 0;
    }
    uint64_t s = 7;
    for (int64_t i = 0; i < m * w->cols; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        a[i] = (float)(s >> 40 & 0xffff) / 65536.0f - 0.5f; /* never zeros: they can run faster */
    }
    if (be->buffer_alloc(be, (size_t)(m * w->cols) * 4, BRT_MEM_DEVICE, &ab, err) != BRT_OK ||
        be->buffer_alloc(be, (size_t)(m * w->rows) * 4, BRT_MEM_DEVICE, &cb, err) != BRT_OK)
        goto out;
    brt_mat am = brt_buffer_mat(ab, w->cols, BRT_DT_F32), cm = brt_buffer_mat(cb, w->rows, BRT_DT_F32);
    if (be->weight_upload(be, w, err) != BRT_OK || be->set_rows(be, am, a, m, w->cols, err) != BRT_OK ||
        be->gemm(be, am, m, w, NULL, cm, err) != BRT_OK || be->synchronize(be, err) != BRT_OK) /* warm */
        goto out;
    best = 1e30;
    for (int r = 0; r < reps; r++) {
        if (before)
            before();
        double t0 = bench_clock();
        if (be->gemm(be, am, m, w, NULL, cm, err) != BRT_OK || be->synchronize(be, err) != BRT_OK) {
            best = 0;
            goto out;
        }
        double dt = bench_clock() - t0;
        if (dt < best)
            best = dt;
    }
out:
    if (ab)
        be->buffer_free(be, ab);
    if (cb)
        be->buffer_free(be, cb);
    free(a);
    return best;
}

/* A random weight [n, k] of dtype dt (host memory, free data with free()). */
static inline brt_weight bench_random_weight(int64_t n, int64_t k, brt_dtype dt, uint64_t seed)
{
    void *w = malloc((size_t)(n * k) * brt_dtype_size(dt));
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = 0; w && i < n * k; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float f = (float)(s >> 40 & 0xffff) / 65536.0f - 0.5f;
        if (dt == BRT_DT_F32)
            ((float *)w)[i] = f;
        else
            ((uint16_t *)w)[i] = brt_f32_to_bf16(f);
    }
    brt_weight W = {w, dt, n, k, "bench", NULL, dt, 0};
    return W;
}

/* ---- jobs through a node -------------------------------------------------------------------- */

#define BENCH_MAX_JOBS 256

typedef struct bench_jobs {
    brt_job *done[BENCH_MAX_JOBS];
    int n_done, n_failed;
    char error[1200];
} bench_jobs;

static inline void bench_on_done(void *ctx, brt_job *job)
{
    bench_jobs *b = ctx;
    if (job->status != BRT_JOB_DONE) {
        if (!b->n_failed)
            snprintf(b->error, sizeof b->error, "job %s failed: %s", job->name, job->error);
        b->n_failed++;
    }
    if (b->n_done < BENCH_MAX_JOBS)
        b->done[b->n_done] = job;
    b->n_done++;
}

/* What one batch of jobs took. */
typedef struct bench_batch {
    double seconds;      /* first admission to last completion */
    double wall;         /* around submit + brt_node_run */
    int64_t n_gen;       /* tokens generated, all jobs */
    int32_t first_token; /* first job's first generated token (-1 none) */
} bench_batch;

/* Deterministic prompt of n ids in [3, vocab) (clear of bos/eos/pad ids). */
static inline void bench_prompt(int32_t *ids, int64_t n, int32_t vocab, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        ids[i] = 3 + (int32_t)(s % (uint64_t)(vocab > 3 ? vocab - 3 : 1));
    }
}

/* n_jobs jobs of the same shape, all submitted at once, run to completion on the node (whose
 * scheduler was started with bench_on_done and ctx jobs). score_all: lm_head and log-softmax on
 * every prompt row (echo, as a forward returning every position's logits), else only where a
 * token is sampled. Returns 0, or -1 with jobs->error set. */
static inline int bench_run_batch(brt_node *node, bench_jobs *jobs, int n_jobs, int64_t prompt_len, int32_t max_new,
                                  int score_all, uint64_t seed, bench_batch *out)
{
    memset(out, 0, sizeof *out);
    out->first_token = -1;
    memset(jobs, 0, sizeof *jobs);
    int32_t *ids = malloc((size_t)prompt_len * sizeof *ids);
    if (!ids || n_jobs > BENCH_MAX_JOBS) {
        free(ids);
        snprintf(jobs->error, sizeof jobs->error, "out of memory / too many jobs");
        return -1;
    }
    brt_err err;
    double t0 = brt_now();
    for (int i = 0; i < n_jobs; i++) {
        bench_prompt(ids, prompt_len, node->model.cfg.vocab_size, seed + (uint64_t)i);
        brt_job_spec spec = {.name = "bench", .prompt = ids, .prompt_len = prompt_len, .max_new = max_new,
                             .top_p = 1.0f, .logprobs = score_all ? 0 : -1, .echo = score_all, .ignore_eos = 1};
        brt_job *job;
        if (brt_sched_submit(node->sched, &spec, &job, &err) != BRT_OK) {
            snprintf(jobs->error, sizeof jobs->error, "submit: %s", err.msg);
            free(ids);
            return -1;
        }
    }
    free(ids);
    if (brt_node_run(node, &err) != BRT_OK) {
        snprintf(jobs->error, sizeof jobs->error, "run: %s", err.msg);
        return -1;
    }
    out->wall = brt_now() - t0;
    int rc = jobs->n_failed || jobs->n_done != n_jobs ? -1 : 0;
    if (!rc) {
        double a = 1e300, z = 0;
        for (int i = 0; i < jobs->n_done; i++) {
            brt_job *j = jobs->done[i];
            if (j->t_admit < a)
                a = j->t_admit;
            if (j->t_done > z)
                z = j->t_done;
            out->n_gen += j->n_gen;
        }
        out->seconds = z - a;
        if (jobs->n_done && jobs->done[0]->n_gen > 0)
            out->first_token = jobs->done[0]->tokens[jobs->done[0]->prompt_len];
    } else if (!jobs->error[0])
        snprintf(jobs->error, sizeof jobs->error, "%d of %d jobs finished", jobs->n_done, n_jobs);
    for (int i = 0; i < jobs->n_done && i < BENCH_MAX_JOBS; i++)
        brt_sched_free_job(node->sched, jobs->done[i]);
    jobs->n_done = 0;
    return rc;
}

#endif
