/* The CPU backend: the op table over a fixed thread pool, dispatching to the best SIMD kernels
 * this processor runs. Work is split by output (columns and rows of a GEMM, query vectors of
 * attention), never by a reduction, so the thread count does not change any number. Its memory is
 * host memory; it is the reference every other backend is tested against (tests/ops). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_impl.h"

brt_status brt_cpu_scratch(brt_backend *be, int64_t floats, brt_err *err)
{
    cpu_impl *ci = cpu_of(be);
    if (floats <= ci->scratch_floats)
        return BRT_OK;
    for (int i = 0; i < be->n_threads; i++) {
        free(ci->scratch[i]);
        ci->scratch[i] = aligned_alloc(64, (size_t)((floats * 4 + 63) / 64 * 64));
        if (!ci->scratch[i]) {
            ci->scratch_floats = 0;
            return brt_errf(err, BRT_ERR_NOMEM, "CPU backend: out of memory for %lld floats of scratch per thread",
                            (long long)floats);
        }
    }
    ci->scratch_floats = floats;
    return BRT_OK;
}

static void cpu_destroy(brt_backend *be)
{
    if (!be)
        return;
    cpu_impl *ci = cpu_of(be);
    if (ci) {
        brt_pool_destroy(ci->pool);
        for (int i = 0; ci->scratch && i < be->n_threads; i++)
            free(ci->scratch[i]);
        free(ci->scratch);
        free(ci->spans);
        free(ci->segs);
        free(ci->work);
        for (int i = 0; i < ci->n_packed; i++)
            free(ci->packed[i].panels);
        free(ci->packed);
        free(ci);
    }
    free(be);
}

static const brt_simd_ops *pick_isa(const char *isa)
{
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (isa && !strcmp(isa, "generic"))
        return &brt_simd_generic;
    if (isa && !strcmp(isa, "avx2"))
        return has2 ? &brt_simd_avx2 : NULL;
    if (isa && !strcmp(isa, "avx512"))
        return has512 ? &brt_simd_avx512 : NULL;
    if (isa && *isa)
        return NULL;
    return has512 ? &brt_simd_avx512 : has2 ? &brt_simd_avx2 : &brt_simd_generic;
}

/* CPUs this process may run on (Slurm's cgroup, taskset, --cpus-per-task), else the online cores. */
static int cpus_allowed(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

brt_status brt_cpu_backend_create(int n_threads, const char *isa, brt_backend **out, brt_err *err)
{
    *out = NULL;
    const brt_simd_ops *simd = pick_isa(isa);
    if (!simd)
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "CPU kernels for instruction set '%s' are not available here (avx512, avx2 or generic)",
                        isa ? isa : "?");
    if (n_threads <= 0)
        n_threads = cpus_allowed();
    brt_backend *be = calloc(1, sizeof *be);
    cpu_impl *ci = calloc(1, sizeof *ci);
    if (!be || !ci) {
        free(be);
        free(ci);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory creating the CPU backend");
    }
    be->impl = ci;
    ci->simd = simd;
    ci->pool = brt_pool_create(n_threads);
    if (!ci->pool) {
        cpu_destroy(be);
        return brt_errf(err, BRT_ERR_NOMEM, "cannot start %d kernel threads", n_threads);
    }
    be->n_threads = brt_pool_threads(ci->pool);
    ci->scratch = calloc((size_t)be->n_threads, sizeof *ci->scratch);
    if (!ci->scratch) {
        cpu_destroy(be);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory creating the CPU backend");
    }
    static const char *names[] = {"cpu-avx512", "cpu-avx2", "cpu-generic"};
    be->name = simd == &brt_simd_avx512 ? names[0] : simd == &brt_simd_avx2 ? names[1] : names[2];
    be->device = "cpu";
    be->state_dtype = BRT_DT_F32;
    be->min_alloc = 0;
    be->destroy = cpu_destroy;
    brt_cpu_set_memory_ops(be);
    brt_cpu_set_compute_ops(be);
    *out = be;
    return BRT_OK;
}
