#include "cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/log.h"

/* Workers spin briefly for the next run before sleeping: decode runs many small ops per
 * token, and a condition-variable wake-up per op would dominate them. Spinning is bounded and
 * yields: when the machine has more runnable threads than cores (ranks sharing a node, other
 * work), a spinning thread would otherwise take the core the thread it waits for needs. */
#define SPIN_ITERS 4000
#define SPIN_BEFORE_YIELD 64

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

void brt_pool_thread_setup(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* Flush denormals to zero: values below 1e-38 (far under any tolerance: softmax tails times
     * values) otherwise cost a microcode assist each, which slowed peaky attention several-fold. */
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}

struct brt_pool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint_fast64_t gen;   /* bumped per run */
    atomic_int_fast64_t next;   /* next task to claim */
    atomic_int busy;            /* workers still inside the current run */
    int64_t n_tasks;
    brt_task_fn fn;
    void *arg;
    int stop;
};

typedef struct {
    brt_pool *p;
    int id;
} worker_arg;

static void drain(brt_pool *p, int thread)
{
    for (;;) {
        int64_t t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks)
            break;
        p->fn(p->arg, t, thread);
    }
}

static void *worker(void *va)
{
    worker_arg *wa = va;
    brt_pool *p = wa->p;
    int id = wa->id;
    free(wa);
    brt_pool_thread_setup();
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen && spins < SPIN_ITERS) {
            if (++spins % SPIN_BEFORE_YIELD == 0)
                sched_yield();
            else
                cpu_relax();
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !p->stop)
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (p->stop)
            return NULL;
        seen = g;
        drain(p, id);
        atomic_fetch_sub(&p->busy, 1);
    }
}

brt_pool *brt_pool_create(int n)
{
    brt_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    brt_pool_thread_setup(); /* the calling thread computes too */
    p->n = n < 1 ? 1 : n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->th = calloc((size_t)p->n, sizeof *p->th);
    for (int i = 1; i < p->n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        wa->p = p;
        wa->id = i;
        if (pthread_create(&p->th[i], NULL, worker, wa) != 0) {
            brt_log_warn("could not start kernel thread %d; running with %d", i, i);
            free(wa);
            p->n = i;
            break;
        }
    }
    return p;
}

void brt_pool_destroy(brt_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p);
}

int brt_pool_threads(const brt_pool *p) { return p ? p->n : 1; }

void brt_pool_run(brt_pool *p, int64_t n_tasks, brt_task_fn fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (!p || p->n == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    for (int spins = 0; atomic_load(&p->busy) > 0;)
        if (++spins % SPIN_BEFORE_YIELD == 0)
            sched_yield();
        else
            cpu_relax();
}
