/* CPU kernels at the shapes the served models use, beside the machine's own ceilings measured in
 * the same run (fp32 FMA peak, memory copy bandwidth) and, with --openblas, OpenBLAS's sgemm at the
 * same shape and thread count (numpy from PyPI through bench/gemm_openblas.py, run right after
 * ours so both see the same machine load).
 *   bench_kernels [--device cpu|cuda] [--precision bf16|f32] [--threads N] [--isa avx512|avx2|generic]
 *                 [--only gemm|attn|decode] [--quick] [--filter TEXT] [--cpu-time] [--openblas PYTHON]
 * --filter runs only the cases whose description contains TEXT; --cpu-time times our kernels by the
 * process's CPU time instead of wall time (one thread on a shared machine: other work taking turns
 * on the core then does not count; OpenBLAS and the peak stay wall-clock). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "kernels.h"
#include "bench_util.h"
#include "peak.h"

/* Best seconds of c[m, n] = a[m, k] . w[n, k]^T (0 on failure). */
static double gemm_seconds(brt_backend *be, int64_t m, int64_t n, int64_t k, brt_dtype dt, int reps)
{
    brt_weight W = bench_random_weight(n, k, dt, 1);
    brt_err err;
    double s = W.data ? bench_gemm_seconds(be, &W, m, reps, NULL, &err) : 0;
    if (s <= 0)
        fprintf(stderr, "bench_kernels: %s\n", W.data ? err.msg : "out of memory");
    free((void *)W.data);
    return s;
}

/* OpenBLAS's GFLOP/s at the same shape (f32: numpy has no bf16 GEMM), or 0. */
static double openblas_gflops(const char *python, const char *script, int64_t m, int64_t n, int64_t k, int threads,
                              int reps)
{
    char cmd[8192];
    /* OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset: the environment's Haswell setting would run a
     * third as fast (BASELINES.md) */
    snprintf(cmd, sizeof cmd,
             "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=%d '%s' '%s' %lld %lld %lld %d",
             threads, python, script, (long long)m, (long long)n, (long long)k, reps);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    double g = 0;
    if (fscanf(p, "%lf", &g) != 1)
        g = 0;
    pclose(p);
    return g;
}

/* ---- attention ------------------------------------------------------------------------------- */

typedef struct attn_case {
    int32_t rows, mem, heads, kv_heads, hd;
    brt_dtype kvdt;
    const char *what;
    int quick;
} attn_case;

/* GFLOP/s of one attention call: `rows` query rows at the end of `mem` keys all of them see (a
 * beacon memory, earlier windows), causal among themselves; FLOPs = 4 x head_dim x heads x the
 * visible (query, key) pairs (QK^T and PV; the softmax is not counted). Best of reps. */
static double attn_gflops(brt_backend *be, const attn_case *c, int reps)
{
    const int64_t nk = (int64_t)c->mem + c->rows, qd = (int64_t)c->heads * c->hd, kd = (int64_t)c->kv_heads * c->hd;
    const size_t es = brt_dtype_size(c->kvdt);
    brt_buffer *qb = NULL, *ob = NULL, *kb = NULL, *vb = NULL;
    brt_err err;
    double best = 0;
    float *host = malloc((size_t)((c->rows > nk ? c->rows : nk) * (qd > kd ? qd : kd)) * 4);
    brt_attn_vis *vis = malloc((size_t)c->rows * sizeof *vis);
    if (!host || !vis || be->buffer_alloc(be, (size_t)(c->rows * qd) * 4, BRT_MEM_DEVICE, &qb, &err) != BRT_OK ||
        be->buffer_alloc(be, (size_t)(c->rows * qd) * 4, BRT_MEM_DEVICE, &ob, &err) != BRT_OK ||
        be->buffer_alloc(be, (size_t)(nk * kd) * es, BRT_MEM_DEVICE, &kb, &err) != BRT_OK ||
        be->buffer_alloc(be, (size_t)(nk * kd) * es, BRT_MEM_DEVICE, &vb, &err) != BRT_OK)
        goto out;
    uint64_t s = 11;
    brt_mat mats[3] = {brt_buffer_mat(qb, qd, BRT_DT_F32), brt_buffer_mat(kb, kd, c->kvdt), brt_buffer_mat(vb, kd, c->kvdt)};
    int64_t nrows[3] = {c->rows, nk, nk}, ncols[3] = {qd, kd, kd};
    for (int t = 0; t < 3; t++) {
        for (int64_t i = 0; i < nrows[t] * ncols[t]; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            float f = (float)(s >> 40 & 0xffff) / 16384.0f - 2.0f;
            if (mats[t].dtype == BRT_DT_F32)
                host[i] = f;
            else
                ((uint16_t *)host)[i] = brt_f32_to_bf16(f);
        }
        if (be->set_rows(be, mats[t], host, nrows[t], ncols[t], &err) != BRT_OK)
            goto out;
    }
    double pairs = 0;
    for (int32_t r = 0; r < c->rows; r++) {
        vis[r] = (brt_attn_vis){{0}, {c->mem + r + 1}, 1};
        pairs += c->mem + r + 1;
    }
    brt_kv_span span = {mats[1], mats[2], (int32_t)nk};
    brt_attn_seg seg = {mats[0], brt_buffer_mat(ob, qd, BRT_DT_F32), c->rows, &span, 1, (int32_t)nk, vis};
    brt_attn_args args = {&seg, 1, c->heads, c->kv_heads, c->hd, sqrtf((float)c->hd)};
    best = 1e30;
    for (int r = 0; r <= reps; r++) { /* the first call warms up */
        double t0 = bench_clock();
        if (be->attention(be, &args, &err) != BRT_OK || be->synchronize(be, &err) != BRT_OK) {
            best = 0;
            goto out;
        }
        double dt = bench_clock() - t0;
        if (r && dt < best)
            best = dt;
    }
    best = 4.0 * c->hd * c->heads * pairs / best / 1e9;
out:
    if (best <= 0)
        fprintf(stderr, "bench_kernels: attention: %s\n", err.msg);
    brt_buffer *bs[4] = {qb, ob, kb, vb};
    for (int i = 0; i < 4; i++)
        if (bs[i])
            be->buffer_free(be, bs[i]);
    free(host);
    free(vis);
    return best;
}

typedef struct gemm_case {
    int64_t m, n, k;
    brt_dtype dt;
    const char *what;
    int quick; /* in --quick */
} gemm_case;

/* Prefill shapes of the models beaconrt serves (configs/models, SmolLM2, the mid benchmark model,
 * 70B-class hidden 8192): projections with GQA, the gated MLP, lm_head over 32K-152K tokens. M is a
 * prefill micro-batch (a beacon window of 1024 rows), smaller where one call would take seconds. */
static const gemm_case k_gemm[] = {
    {1024, 768, 768, BRT_DT_F32, "mid q/o proj (issue 13)", 1},
    {2048, 4096, 4096, BRT_DT_F32, "4096^2 x 2048 rows (issue 13)", 1},
    {1024, 576, 576, BRT_DT_F32, "SmolLM2 q/o 576", 0},
    {1024, 192, 576, BRT_DT_F32, "SmolLM2 k/v (GQA 3)", 0},
    {1024, 1536, 576, BRT_DT_F32, "SmolLM2 gate/up", 0},
    {1024, 576, 1536, BRT_DT_F32, "SmolLM2 down", 0},
    {1024, 49152, 576, BRT_DT_F32, "SmolLM2 lm_head 49K", 0},
    {1024, 2048, 768, BRT_DT_F32, "mid gate/up", 1},
    {1024, 768, 2048, BRT_DT_F32, "mid down", 1},
    {1024, 32000, 768, BRT_DT_F32, "mid lm_head 32K", 0},
    {1024, 3200, 3200, BRT_DT_F32, "LongLLaMA-3B q/o 3200", 0},
    {1024, 8640, 3200, BRT_DT_F32, "LongLLaMA-3B gate/up", 0},
    {1024, 3200, 8640, BRT_DT_F32, "LongLLaMA-3B down", 0},
    {1024, 512, 3584, BRT_DT_BF16, "Qwen2-7B k/v (GQA 7)", 0},
    {1024, 3584, 3584, BRT_DT_BF16, "Qwen2-7B q/o", 0},
    {1024, 18944, 3584, BRT_DT_BF16, "Qwen2-7B gate/up", 0},
    {1024, 3584, 18944, BRT_DT_BF16, "Qwen2-7B down", 0},
    {128, 152064, 3584, BRT_DT_BF16, "Qwen2-7B lm_head 152K", 0},
    {1024, 4096, 4096, BRT_DT_F32, "Llama-2-7B q/k/v/o", 0},
    {1024, 4096, 4096, BRT_DT_BF16, "Llama-2-7B q/k/v/o", 1},
    {1024, 11008, 4096, BRT_DT_BF16, "Llama-2-7B gate/up", 0},
    {1024, 4096, 11008, BRT_DT_BF16, "Llama-2-7B down", 0},
    {512, 32000, 4096, BRT_DT_BF16, "Llama-2-7B lm_head 32K", 0},
    {512, 1024, 8192, BRT_DT_BF16, "hidden 8192 k/v (GQA 8)", 0},
    {512, 8192, 8192, BRT_DT_BF16, "hidden 8192 q/o", 0},
    {256, 28672, 8192, BRT_DT_BF16, "hidden 8192 gate/up", 0},
};

static const attn_case k_attn[] = {
    {1024, 0, 12, 12, 64, BRT_DT_F32, "mid: a 1024-row window, causal", 1},
    {1024, 1024, 12, 12, 64, BRT_DT_F32, "mid: window after 1024 keys", 0},
    {1024, 8192, 12, 12, 64, BRT_DT_F32, "mid beacon 64K (ratio 8: 8192 beacons)", 1},
    {1024, 3072, 12, 12, 64, BRT_DT_BF16, "mid fot memory (bf16), 3072 keys", 0},
    {512, 2048, 32, 32, 100, BRT_DT_F32, "LongLLaMA-3B, head dim 100", 1},
    {512, 4096, 32, 8, 128, BRT_DT_F32, "Llama-3-like GQA 4, head dim 128", 1},
    {512, 4096, 28, 4, 128, BRT_DT_F32, "Qwen2-7B GQA 7, head dim 128", 0},
    {1, 16384, 12, 12, 64, BRT_DT_F32, "decode: 1 row, 16K keys", 1},
};

int main(int argc, char **argv)
{
    brt_backend_opts o = {0};
    const char *only = NULL, *python = NULL, *filter = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            o.n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            o.isa = argv[++i];
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            o.device = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc)
            o.precision = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--openblas") && i + 1 < argc)
            python = argv[++i];
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            filter = argv[++i];
        else if (!strcmp(argv[i], "--cpu-time"))
            bench_use_cpu_time();
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: bench_kernels [--device cpu|cuda] [--precision bf16|f32] [--threads N] "
                            "[--isa avx512|avx2|generic] [--only gemm|attn|decode] [--quick] [--filter TEXT] [--cpu-time] [--openblas PYTHON]\n");
            return 2;
        }
    }
    brt_backend *be;
    brt_err err;
    if (brt_backend_create(&o, &be, &err) != BRT_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return 1;
    }
    const int cpu = !strcmp(be->device, "cpu");
    double peak = cpu ? bench_fp32_peak(be->n_threads) : 0;
    double copy = cpu ? bench_copy_bandwidth(be->n_threads, (size_t)512 << 20, 3) : 0;
    if (cpu)
        printf("backend %s, %d threads; measured fp32 FMA peak %.1f GFLOP/s, memcpy %.1f GB/s (read + written)\n",
               be->name, be->n_threads, peak, copy);
    else
        printf("backend %s (state %s); the device's own ceilings: bench_gpu\n", be->name,
               brt_dtype_name(be->state_dtype));
    char script[4200] = "";
    if (python) {
        /* the script lies beside this program's sources: bench/gemm_openblas.py */
        snprintf(script, sizeof script, "%s/gemm_openblas.py", BRT_BENCH_DIR);
    }
    if (!only || !strcmp(only, "gemm")) {
        printf("\n%-32s %6s %6s %6s %5s %9s %7s", "gemm", "M", "N", "K", "dtype", "GFLOP/s", "of peak");
        if (python)
            printf(" %9s %8s", "OpenBLAS", "ours/OB");
        printf("\n");
        for (size_t i = 0; i < sizeof k_gemm / sizeof k_gemm[0]; i++) {
            const gemm_case *c = &k_gemm[i];
            if ((quick && !c->quick) || (filter && !strstr(c->what, filter)))
                continue;
            double flop = 2.0 * c->m * c->n * c->k;
            int reps = flop > 2e10 ? 2 : flop > 2e9 ? 3 : 10;
            double s = gemm_seconds(be, c->m, c->n, c->k, c->dt, reps);
            double g = s > 0 ? flop / s / 1e9 : 0;
            printf("%-32s %6lld %6lld %6lld %5s %9.1f %6.0f%%", c->what, (long long)c->m, (long long)c->n,
                   (long long)c->k, brt_dtype_name(c->dt), g, peak > 0 ? 100 * g / peak : 0.0);
            if (python) {
                double ob = openblas_gflops(python, script, c->m, c->n, c->k, be->n_threads, reps);
                printf(" %9.1f %7.2fx", ob, ob > 0 ? g / ob : 0.0);
            }
            printf("\n");
            fflush(stdout);
        }
        if (python)
            printf("(OpenBLAS: numpy's PyPI wheel, OPENBLAS_NUM_THREADS=%d, OPENBLAS_CORETYPE unset, f32 weights "
                   "for every row: numpy has no bf16 GEMM)\n",
                   be->n_threads);
    }
    if (!only || !strcmp(only, "decode")) {
        printf("\n%-32s %6s %6s %6s %5s %9s %9s %9s\n", "decode gemm (weights streamed)", "M", "N", "K", "dtype",
               "ms", "GB/s", "of copy");
        const struct {
            int64_t m, n, k;
            brt_dtype dt;
        } dc[] = {{1, 4096, 4096, BRT_DT_F32}, {8, 4096, 4096, BRT_DT_F32}, {1, 4096, 4096, BRT_DT_BF16},
                  {8, 4096, 4096, BRT_DT_BF16}, {16, 4096, 4096, BRT_DT_BF16}, {1, 32000, 768, BRT_DT_F32}, {1, 11008, 4096, BRT_DT_BF16}};
        for (size_t i = 0; i < sizeof dc / sizeof dc[0]; i++) {
            double s = gemm_seconds(be, dc[i].m, dc[i].n, dc[i].k, dc[i].dt, 20);
            double gbs = s > 0 ? (double)dc[i].n * dc[i].k * brt_dtype_size(dc[i].dt) / s / 1e9 : 0;
            printf("%-32s %6lld %6lld %6lld %5s %9.3f %9.1f %8.0f%%\n", "", (long long)dc[i].m, (long long)dc[i].n,
                   (long long)dc[i].k, brt_dtype_name(dc[i].dt), s * 1e3, gbs, copy > 0 ? 100 * gbs / copy : 0.0);
            fflush(stdout);
        }
        printf("(weights larger than the last-level cache are read from memory on every call; a GEMM only reads "
               "them, so more than 100%% of the copy figure is possible)\n");
    }
    if (!only || !strcmp(only, "attn")) {
        printf("\n%-40s %5s %6s %5s %4s %4s %5s %9s %7s\n", "attention (f32 scores, online softmax)", "rows", "mem",
               "heads", "kv", "hd", "KV", "GFLOP/s", "of peak");
        for (size_t i = 0; i < sizeof k_attn / sizeof k_attn[0]; i++) {
            const attn_case *c = &k_attn[i];
            if ((quick && !c->quick) || (filter && !strstr(c->what, filter)))
                continue;
            double g = attn_gflops(be, c, c->rows > 1 ? 3 : 50);
            printf("%-40s %5d %6d %5d %4d %4d %5s %9.1f %6.0f%%\n", c->what, c->rows, c->mem, c->heads, c->kv_heads,
                   c->hd, brt_dtype_name(c->kvdt), g, peak > 0 ? 100 * g / peak : 0.0);
            fflush(stdout);
        }
        printf("(FLOPs = 4 x head_dim x heads x visible (query, key) pairs; the softmax's exp is not counted)\n");
    }
    if (cpu)
        printf("\nmeasured fp32 FMA peak at the end: %.1f GFLOP/s\n", bench_fp32_peak(be->n_threads));
    be->destroy(be);
    return 0;
}
