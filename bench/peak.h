/* The machine's own fp32 ceiling, measured in the same run as the benchmark: independent FMA
 * chains in registers on every thread (the figure a GEMM can at best approach). */
#ifndef BRT_BENCH_PEAK_H
#define BRT_BENCH_PEAK_H

#include <pthread.h>

#include "base/log.h"

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static double peak_chain256(long iters)
{
    __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2), a3 = _mm256_set1_ps(3),
           a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5), a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7),
           a8 = _mm256_set1_ps(8), a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    for (long k = 0; k < iters; k++) {
#define PEAK_F(x) x = _mm256_fmadd_ps(x, b, c);
        PEAK_F(a0) PEAK_F(a1) PEAK_F(a2) PEAK_F(a3) PEAK_F(a4) PEAK_F(a5)
        PEAK_F(a6) PEAK_F(a7) PEAK_F(a8) PEAK_F(a9) PEAK_F(a10) PEAK_F(a11)
#undef PEAK_F
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}
__attribute__((target("avx512f"))) static double peak_chain512(long iters)
{
    __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3),
           a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7),
           a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    for (long k = 0; k < iters; k++) {
#define PEAK_F(x) x = _mm512_fmadd_ps(x, b, c);
        PEAK_F(a0) PEAK_F(a1) PEAK_F(a2) PEAK_F(a3) PEAK_F(a4) PEAK_F(a5)
        PEAK_F(a6) PEAK_F(a7) PEAK_F(a8) PEAK_F(a9) PEAK_F(a10) PEAK_F(a11)
#undef PEAK_F
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}
#endif

typedef struct {
    long iters;
    int wide;
    double sink;
} peak_arg;

static void *peak_thread(void *p)
{
    peak_arg *a = p;
#if defined(__x86_64__)
    a->sink = a->wide ? peak_chain512(a->iters) : peak_chain256(a->iters);
#endif
    return NULL;
}

/* GFLOP/s of fused multiply-adds on n_threads threads (best of the 256- and 512-bit forms). */
static double bench_fp32_peak(int n_threads)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    double best = 0;
    for (int wide = 0; wide < 2; wide++) {
        if (wide && !__builtin_cpu_supports("avx512f"))
            continue;
        if (!wide && !__builtin_cpu_supports("fma"))
            continue;
        const long iters = 20000000;
        pthread_t th[256];
        peak_arg args[256];
        int n = n_threads > 256 ? 256 : n_threads;
        double t0 = brt_now();
        for (int i = 0; i < n; i++) {
            args[i] = (peak_arg){iters, wide, 0};
            pthread_create(&th[i], NULL, peak_thread, &args[i]);
        }
        for (int i = 0; i < n; i++)
            pthread_join(th[i], NULL);
        double dt = brt_now() - t0;
        double flops = (double)n * iters * 12 * (wide ? 16 : 8) * 2;
        if (flops / dt / 1e9 > best)
            best = flops / dt / 1e9;
    }
    return best;
#else
    (void)n_threads;
    return 0;
#endif
}

#endif
