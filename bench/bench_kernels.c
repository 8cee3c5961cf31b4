/* GEMM throughput of a backend at the shapes the models use, beside the machine's measured
 * fp32 peak (CPU).
 *   bench_kernels [--device cpu|cuda] [--precision bf16|f32] [--threads N] [--isa avx512|avx2|generic] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "kernels.h"
#include "bench_util.h"
#include "peak.h"

/* GFLOP/s of c[m, n] = a[m, k] . w[n, k]^T, best of reps */
static double gemm_gflops(brt_backend *be, int64_t m, int64_t n, int64_t k, brt_dtype dt, int reps)
{
    brt_weight W = bench_random_weight(n, k, dt, 1);
    brt_err err;
    double s = W.data ? bench_gemm_seconds(be, &W, m, reps, NULL, &err) : 0;
    if (s <= 0)
        fprintf(stderr, "bench_kernels: %s\n", W.data ? err.msg : "out of memory");
    free((void *)W.data);
    return s > 0 ? 2.0 * m * n * k / s / 1e9 : 0;
}

int main(int argc, char **argv)
{
    brt_backend_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            o.n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            o.isa = argv[++i];
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            o.device = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc)
            o.precision = argv[++i];
    }
    brt_backend *be;
    brt_err err;
    if (brt_backend_create(&o, &be, &err) != BRT_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return 1;
    }
    const int cpu = !strcmp(be->device, "cpu");
    double peak = cpu ? bench_fp32_peak(be->n_threads) : 0;
    if (cpu)
        printf("backend %s, %d threads; measured fp32 FMA peak %.1f GFLOP/s\n", be->name, be->n_threads, peak);
    else
        printf("backend %s (state %s); the device's own ceilings: bench_gpu\n", be->name,
               brt_dtype_name(be->state_dtype));
    struct {
        int64_t m, n, k;
        brt_dtype dt;
        const char *what;
    } cases[] = {
        {1024, 768, 768, BRT_DT_F32, "prefill q/o proj (hidden 768)"},
        {1024, 2048, 768, BRT_DT_F32, "prefill gate/up (768 -> 2048)"},
        {1024, 768, 2048, BRT_DT_F32, "prefill down (2048 -> 768)"},
        {1024, 3072, 1024, BRT_DT_F32, "prefill mlp (1024 -> 3072)"},
        {2048, 4096, 4096, BRT_DT_F32, "4096^2 x 2048 rows"},
        {1024, 4096, 4096, BRT_DT_BF16, "4096^2 bf16 weights"},
        {1, 4096, 4096, BRT_DT_F32, "decode 1 row 4096^2 (memory bound)"},
        {8, 4096, 4096, BRT_DT_F32, "decode 8 rows 4096^2"},
    };
    printf("%-36s %6s %6s %6s %5s %10s %8s\n", "gemm", "M", "N", "K", "dtype", "GFLOP/s", "of peak");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int reps = cases[i].m >= 1024 ? 3 : 20;
        double g = gemm_gflops(be, cases[i].m, cases[i].n, cases[i].k, cases[i].dt, reps);
        printf("%-36s %6lld %6lld %6lld %5s %10.1f %7.0f%%\n", cases[i].what, (long long)cases[i].m,
               (long long)cases[i].n, (long long)cases[i].k, brt_dtype_name(cases[i].dt), g,
               peak > 0 ? 100 * g / peak : 0.0);
    }
    be->destroy(be);
    return 0;
}
