/* A fixed pool of worker threads for the CPU kernels. The caller runs tasks too, so a pool
 * of n threads has n - 1 workers. Tasks of one run are independent; which thread runs a task
 * never changes its result (the kernels make sure of that). */
#ifndef BRT_THREADPOOL_H
#define BRT_THREADPOOL_H

#include <stdint.h>

typedef struct brt_pool brt_pool;
typedef void (*brt_task_fn)(void *arg, int64_t task, int thread);

/* Set this thread's floating-point mode for the kernels (denormals flushed to zero). */
void brt_pool_thread_setup(void);
brt_pool *brt_pool_create(int n_threads);
void brt_pool_destroy(brt_pool *p);
int brt_pool_threads(const brt_pool *p);
/* Run fn(arg, t, thread) for t in [0, n_tasks); returns when all are done. */
void brt_pool_run(brt_pool *p, int64_t n_tasks, brt_task_fn fn, void *arg);

#endif
