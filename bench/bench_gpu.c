/* GPU benchmarks: the card's own ceilings measured in the same run (a large bf16 GEMM through the
 * backend's cuBLASLt path, and a device-to-device copy), then a Llama-2-7B-shaped Activation
 * Beacon v1 model with random bf16 weights: prefill tokens/s and MFU for one and several documents
 * at once at each length, and decode tokens/s with many jobs in flight.
 *   bench_gpu [--precision bf16|f32] [--lengths 32768,131072] [--docs 1,8] [--decode-jobs 64]
 *             [--decode-prompt 512] [--gen 32] [--layers 32] [--ratio 8] [--keep DIR] [--gpu N]
 * Built only with the CUDA backend. Every figure is printed with what it is measured against. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "bench_util.h"
#include "engine/policy.h"
#include "mkmodel.h"

static const char *const k_help =
    "usage: bench_gpu [options]\n"
    "  --precision P        bf16 (default) | f32\n"
    "  --lengths L,L,..     document lengths for prefill (32768,131072)\n"
    "  --docs N,N,..        documents at once (1,8)\n"
    "  --decode-jobs N      jobs in flight for the decode figure (64)\n"
    "  --decode-prompt N    their prompt length (512)\n"
    "  --gen N              tokens each generates (32)\n"
    "  --layers N           layers of the 7B-shaped model (32; fewer for a quick look)\n"
    "  --ratio R            beacon condensing ratio (8)\n"
    "  --keep DIR           the model folder (generated there once, reused; default /tmp/brt-bench-7b-beacon)\n"
    "  --gpu N              which GPU (0)\n";

static int parse_list(const char *s, int64_t *out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0)
            return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* TFLOP/s of the backend's GEMM at m = n = k = size, bf16 (or f32) weights */
static double gemm_ceiling(brt_backend *be, int64_t size, brt_dtype wdt)
{
    brt_weight W = bench_random_weight(size, size, wdt, 12345);
    brt_err err;
    double s = W.data ? bench_gemm_seconds(be, &W, size, 10, NULL, &err) : 0;
    if (s <= 0)
        fprintf(stderr, "bench_gpu: GEMM ceiling: %s\n", W.data ? err.msg : "out of memory");
    free((void *)W.data);
    return s > 0 ? 2.0 * size * size * size / s / 1e12 : 0;
}

/* GB/s of a device-to-device copy, bytes read + written (CUDA runtime, the same GPU) */
static double copy_ceiling(size_t bytes)
{
    void *x = NULL, *y = NULL;
    cudaEvent_t e0, e1;
    double gbs = 0;
    if (cudaMalloc(&x, bytes) != cudaSuccess || cudaMalloc(&y, bytes) != cudaSuccess)
        goto out;
    cudaMemset(x, 1, bytes);
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaMemcpy(y, x, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e0, 0);
    for (int r = 0; r < 10; r++)
        cudaMemcpy(y, x, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    gbs = ms > 0 ? 2.0 * (double)bytes * 10 / (ms / 1e3) / 1e9 : 0;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
out:
    cudaFree(x);
    cudaFree(y);
    cudaGetLastError();
    return gbs;
}

int main(int argc, char **argv)
{
    const char *precision = "bf16", *keep = "/tmp/brt-bench-7b-beacon";
    int64_t lengths[8] = {32768, 131072}, docs[8] = {1, 8};
    int n_len = 2, n_docs = 2, layers = 32, ratio = 8, gpu = 0;
    int64_t decode_jobs = 64, dprompt = 512, gen = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_help, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_gpu: %s needs a value\n%s", a, k_help);
            return 2;
        }
        i++;
        if (!strcmp(a, "--precision"))
            precision = v;
        else if (!strcmp(a, "--lengths") && (n_len = parse_list(v, lengths, 8)) > 0)
            ;
        else if (!strcmp(a, "--docs") && (n_docs = parse_list(v, docs, 8)) > 0)
            ;
        else if (!strcmp(a, "--decode-jobs"))
            decode_jobs = atoll(v);
        else if (!strcmp(a, "--decode-prompt"))
            dprompt = atoll(v);
        else if (!strcmp(a, "--gen"))
            gen = atoll(v);
        else if (!strcmp(a, "--layers"))
            layers = atoi(v);
        else if (!strcmp(a, "--ratio"))
            ratio = atoi(v);
        else if (!strcmp(a, "--keep"))
            keep = v;
        else if (!strcmp(a, "--gpu"))
            gpu = atoi(v);
        else {
            fprintf(stderr, "bench_gpu: bad option %s %s\n%s", a, v, k_help);
            return 2;
        }
    }
    if (decode_jobs > BENCH_MAX_JOBS || layers < 1 || ratio < 1 || gen < 2) {
        fprintf(stderr, "bench_gpu: --decode-jobs at most %d, --layers and --ratio >= 1, --gen >= 2\n", BENCH_MAX_JOBS);
        return 2;
    }
    brt_err err;
    if (brt_backend_gpu_count() == 0) {
        printf("SKIP: bench_gpu: no GPU visible (or no CUDA driver)\n");
        return 77;
    }
    /* ---- the card's ceilings ---- */
    brt_backend_opts bo = {"cuda", 0, NULL, gpu, precision};
    brt_backend *be;
    if (brt_backend_create(&bo, &be, &err) != BRT_OK) {
        fprintf(stderr, "bench_gpu: %s\n", err.msg);
        return 1;
    }
    const brt_dtype wdt = !strcmp(precision, "f32") ? BRT_DT_F32 : BRT_DT_BF16;
    double tflops = gemm_ceiling(be, 8192, wdt);
    double hbm = copy_ceiling((size_t)2 << 30);
    printf("card: %s\n", be->name);
    printf("ceilings (this run): %s GEMM 8192^3 through the backend (cuBLASLt, f32 activations converted) %.1f "
           "TFLOP/s; device copy %.0f GB/s (read + written)\n",
           brt_dtype_name(wdt), tflops, hbm);
    be->destroy(be);

    /* ---- the model ---- */
    mk_spec sp = mk_spec_mid();
    sp.hidden = 4096, sp.intermediate = 11008, sp.layers = layers, sp.heads = 32, sp.kv_heads = 32, sp.vocab = 32000;
    sp.max_pos = 4096;
    sp.dtype = BRT_DT_BF16;
    sp.kind = MK_BEACON_V1;
    sp.beacon_window = 1024, sp.beacon_stride = 1024, sp.beacon_ratio = ratio;
    sp.beacon_weights = 1;
    int64_t params, bytes;
    mk_size(&sp, &params, &bytes);
    char cfgpath[4096];
    snprintf(cfgpath, sizeof cfgpath, "%s/model.safetensors", keep);
    struct stat stt;
    if (stat(cfgpath, &stt) != 0 || stt.st_size < bytes) {
        double t0 = brt_now();
        printf("model: writing a Llama-2-7B-shaped beacon model (%d layers, %.2fB parameters, bf16) to %s ...\n", layers,
               params / 1e9, keep);
        fflush(stdout);
        if (mk_mkdir_p(keep, &err) != BRT_OK || mk_write(&sp, keep, NULL, NULL, &err) != BRT_OK) {
            fprintf(stderr, "bench_gpu: %s\n", err.msg);
            return 1;
        }
        printf("model: written in %.0f s\n", brt_now() - t0);
    }
    brt_node_opts o = {0};
    o.model_dir = keep;
    o.device = "cuda";
    o.precision = precision;
    o.max_jobs = 256;
    brt_node *node = NULL;
    bench_jobs jobs;
    if (brt_node_open(&o, NULL, &node, &err) != BRT_OK || brt_node_start_sched(node, bench_on_done, &jobs, &err) != BRT_OK) {
        fprintf(stderr, "bench_gpu: %s\n", err.msg);
        return 1;
    }
    const brt_model_config *cfg = &node->model.cfg;
    const int64_t D = cfg->hidden;
    char b1[32], b2[32];
    const double wbytes = (double)brt_stage_weights(node->stage)->bytes; /* bf16: as on the GPU */
    printf("model: %s, %d layers, hidden %lld, weights %s, KV budget %s, max rows %d\n", keep, cfg->n_layers,
           (long long)D, bench_bytes(wbytes, b1, sizeof b1),
           bench_bytes((double)node->kv_budget, b2, sizeof b2), node->max_rows);
    bench_batch bb;
    if (bench_run_batch(node, &jobs, 1, 2048, 1, 0, 9, &bb) != 0) { /* warm-up */
        fprintf(stderr, "bench_gpu: warm-up: %s\n", jobs.error);
        return 1;
    }
    printf("\nprefill (beacon_v1, window 1024, ratio %d; TFLOP/s = the arithmetic the engine counted "
           "(brt_stage_work_done: linear maps on every row, beacon rows included, attention pairs, lm_head rows) / "
           "time; MFU = that / the GEMM ceiling above)\n",
           ratio);
    printf("%8s %5s %10s %12s %12s %8s\n", "tokens", "docs", "seconds", "tok/s", "TFLOP/s", "MFU");
    for (int li = 0; li < n_len; li++)
        for (int di = 0; di < n_docs; di++) {
            const brt_stage_work w0 = brt_stage_work_done(node->stage);
            if (bench_run_batch(node, &jobs, (int)docs[di], lengths[li], 1, 0, 100 + (uint64_t)li * 16 + di, &bb) != 0) {
                printf("%8lld %5lld FAILED: %s\n", (long long)lengths[li], (long long)docs[di], jobs.error);
                continue;
            }
            brt_stage_work w = brt_stage_work_done(node->stage);
            w.layer_rows -= w0.layer_rows, w.attn_pairs -= w0.attn_pairs, w.logit_rows -= w0.logit_rows;
            const double toks = (double)lengths[li] * docs[di];
            const double tf = brt_stage_work_flops(cfg, &w) / bb.seconds / 1e12;
            printf("%8lld %5lld %10.2f %12.0f %12.1f %7.1f%%\n", (long long)lengths[li], (long long)docs[di], bb.seconds,
                   toks / bb.seconds, tf, tflops > 0 ? 100 * tf / tflops : 0.0);
            fflush(stdout);
        }
    /* decode: (prompt + gen tokens) - (prompt + 1 token), per step */
    double t1 = 0, tg = 0;
    if (bench_run_batch(node, &jobs, (int)decode_jobs, dprompt, 1, 0, 5000, &bb) == 0) {
        t1 = bb.seconds;
        if (bench_run_batch(node, &jobs, (int)decode_jobs, dprompt, (int32_t)gen, 0, 5000, &bb) == 0)
            tg = bb.seconds;
    }
    if (tg > t1 && t1 > 0) {
        const double step = (tg - t1) / (double)(gen - 1);
        /* every weight is read once per step whatever the batch: the bound is those bytes at the copy rate */
        printf("\ndecode: %lld jobs in flight, %lld-token prompts, %lld tokens each: %.2f ms/step, %.0f tok/s "
               "(weights read per step %s: bound %.2f ms/step at the copy ceiling)\n",
               (long long)decode_jobs, (long long)dprompt, (long long)gen, 1e3 * step, decode_jobs / step,
               bench_bytes(wbytes, b1, sizeof b1), hbm > 0 ? 1e3 * wbytes / (hbm * 1e9) : 0.0);
    } else
        printf("\ndecode: FAILED: %s\n", jobs.error);
    brt_node_close(node);
    return 0;
}
