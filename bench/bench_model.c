/* The whole engine on a mid-size random model: prefill and decode throughput, and GEMM
 * throughput at the model's own shapes, each beside the machine's measured ceilings (fp32 FMA
 * peak; weights bytes / memory copy bandwidth for decode).
 *   bench_model [--model DIR] [--threads N] [--prompt N] [--decode-prompt N] [--gen N] [--batch N]
 *               [--reps N] [--dtype f32|bf16] [--keep DIR] [--no-gemm]
 * Without --model a random Llama (hidden 1024, intermediate 2816, 8 layers, 16 heads, vocab 32000)
 * is generated into a temporary folder (or into --keep DIR, reused when it is already there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "bench_util.h"
#include "kernels.h"
#include "mkmodel.h"
#include "model/weights.h"
#include "peak.h"

static const char *const k_help =
    "usage: bench_model [options]\n"
    "  --model DIR        model folder to run (default: generate a random one)\n"
    "  --keep DIR         generate the random model into DIR and keep it (reused if present)\n"
    "  --dtype f32|bf16   weights of the generated model (f32)\n"
    "  --threads N        kernel threads (default: all cores)\n"
    "  --prompt N         prefill prompt tokens (1024)\n"
    "  --decode-prompt N  prompt before decoding (256)\n"
    "  --gen N            greedy tokens per decode job (64)\n"
    "  --batch N          decode jobs run together (8; 1 skips the batched run)\n"
    "  --reps N           repetitions, best reported (3)\n"
    "  --no-gemm          skip the GEMM table\n";

/* Read a buffer larger than the last-level cache, so the next GEMM finds its weights in memory
 * (as a decode step does: every other weight of the model was read since this one). */
static volatile uint64_t g_evict_sink;
static void evict_caches(void)
{
    static uint64_t *buf;
    const size_t n = ((size_t)256 << 20) / sizeof *buf;
    if (!buf) {
        buf = malloc(n * sizeof *buf);
        if (!buf)
            return;
        for (size_t i = 0; i < n; i++)
            buf[i] = i;
    }
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 8)
        s += buf[i];
    g_evict_sink = s;
}

/* Best seconds of c[m, w.rows] = a[m, w.cols] w^T; cold: caches evicted before each call. */
static double time_gemm(brt_backend *be, const brt_weight *w, int64_t m, int reps, int cold)
{
    brt_weight copy = *w; /* the CPU backend leaves it as it is */
    brt_err err;
    return bench_gemm_seconds(be, &copy, m, reps, cold ? evict_caches : NULL, &err);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *keep = NULL;
    int threads = 0, reps = 3, batch = 8, gemm = 1;
    int64_t prompt = 1024, dprompt = 256;
    int32_t gen = 64;
    brt_dtype dtype = BRT_DT_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_help, stdout);
            return 0;
        } else if (!strcmp(a, "--no-gemm"))
            gemm = 0;
        else if (!v) {
            fprintf(stderr, "bench_model: %s needs a value (see --help)\n", a);
            return 2;
        } else if (!strcmp(a, "--model"))
            model = v, i++;
        else if (!strcmp(a, "--keep"))
            keep = v, i++;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v), i++;
        else if (!strcmp(a, "--prompt"))
            prompt = atoll(v), i++;
        else if (!strcmp(a, "--decode-prompt"))
            dprompt = atoll(v), i++;
        else if (!strcmp(a, "--gen"))
            gen = atoi(v), i++;
        else if (!strcmp(a, "--batch"))
            batch = atoi(v), i++;
        else if (!strcmp(a, "--reps"))
            reps = atoi(v), i++;
        else if (!strcmp(a, "--dtype")) {
            dtype = !strcmp(v, "bf16") ? BRT_DT_BF16 : BRT_DT_F32;
            if (strcmp(v, "bf16") && strcmp(v, "f32")) {
                fprintf(stderr, "bench_model: --dtype f32|bf16\n");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "bench_model: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (prompt < 1 || dprompt < 1 || gen < 2 || batch < 1 || batch > BENCH_MAX_JOBS || reps < 1) {
        fprintf(stderr, "bench_model: need --prompt >= 1, --decode-prompt >= 1, --gen >= 2, 1 <= --batch <= %d, "
                        "--reps >= 1\n", BENCH_MAX_JOBS);
        return 2;
    }
    brt_err err;
    char tmpdir[256] = "", gen_dir[4096] = "";
    if (!model) {
        mk_spec s = mk_spec_mid();
        s.hidden = 1024, s.intermediate = 2816, s.layers = 8, s.heads = 16, s.kv_heads = 16, s.vocab = 32000;
        s.dtype = dtype;
        if (keep)
            snprintf(gen_dir, sizeof gen_dir, "%s", keep);
        else {
            snprintf(tmpdir, sizeof tmpdir, "/tmp/brt-bench-model-XXXXXX");
            if (!mkdtemp(tmpdir)) {
                perror("bench_model: mkdtemp");
                return 1;
            }
            snprintf(gen_dir, sizeof gen_dir, "%s/model", tmpdir);
        }
        char cfgp[4200], wp[4200];
        snprintf(cfgp, sizeof cfgp, "%s/config.json", gen_dir);
        snprintf(wp, sizeof wp, "%s/model.safetensors", gen_dir);
        if (keep && file_exists(cfgp) && file_exists(wp))
            printf("model: reusing %s\n", gen_dir);
        else {
            double t0 = brt_now();
            if (mk_write(&s, gen_dir, NULL, NULL, &err) != BRT_OK) {
                fprintf(stderr, "bench_model: %s\n", err.msg);
                return 1;
            }
            printf("model: generated %s in %.1f s\n", gen_dir, brt_now() - t0);
        }
        model = gen_dir;
    }
    int rc = 1;
    brt_node_opts o = {0};
    o.model_dir = model;
    o.threads = threads;
    brt_node *node = NULL;
    bench_jobs jobs;
    if (brt_node_open(&o, NULL, &node, &err) != BRT_OK || brt_node_start_sched(node, bench_on_done, &jobs, &err) != BRT_OK) {
        fprintf(stderr, "bench_model: %s\n", err.msg);
        goto out;
    }
    const brt_model_config *cfg = &node->model.cfg;
    const brt_weights *w = brt_stage_weights(node->stage);
    brt_backend *be = node->be;
    /* bytes a decode step reads: every bound weight but the embedding table (one row of it) */
    int64_t step_bytes = w->bytes - (w->has_embed ? w->embed.rows * w->embed.cols * (int64_t)brt_dtype_size(w->embed.dtype) : 0);
    if (cfg->tie_embeddings)
        step_bytes = w->bytes;
    char b1[32];
    printf("model: %s: %s %s, hidden %d, intermediate %d, %d layers, %d heads (%d kv), vocab %d, weights %s %s\n",
           model, cfg->model_type, brt_policy_name(cfg->policy), cfg->hidden, cfg->intermediate, cfg->n_layers,
           cfg->n_heads, cfg->n_kv_heads, cfg->vocab_size, bench_bytes((double)w->bytes, b1, sizeof b1),
           brt_dtype_name(w->layers[0].wq.dtype));
    double peak = bench_fp32_peak(be->n_threads);
    double bw = bench_copy_bandwidth(be->n_threads, (size_t)512 << 20, 3);
    double bound_s = step_bytes / (bw * 1e9);
    printf("machine: backend %s, %d threads; measured fp32 FMA peak %.1f GFLOP/s; memcpy %.1f GB/s (read + written)\n",
           be->name, be->n_threads, peak, bw);
    printf("decode bound: %s of weights per step / %.1f GB/s = %.2f ms/token (%.1f tok/s at batch 1)\n\n",
           bench_bytes((double)step_bytes, b1, sizeof b1), bw, 1e3 * bound_s, 1.0 / bound_s);

    /* warm-up: touch every weight page and grow the stage's buffers */
    bench_batch bb;
    if (bench_run_batch(node, &jobs, 1, prompt < 128 ? prompt : 128, 2, 0, 99, &bb) != 0) {
        fprintf(stderr, "bench_model: warm-up: %s\n", jobs.error);
        goto out;
    }

    /* prefill: one job of `prompt` tokens generating 1 token (lm_head on the last row only) */
    double best = 1e30;
    const brt_stage_work w0 = brt_stage_work_done(node->stage);
    for (int r = 0; r < reps; r++) {
        if (bench_run_batch(node, &jobs, 1, prompt, 1, 0, 1000 + (uint64_t)r, &bb) != 0) {
            fprintf(stderr, "bench_model: prefill: %s\n", jobs.error);
            goto out;
        }
        if (bb.seconds < best)
            best = bb.seconds;
    }
    double P = (double)prompt;
    /* the arithmetic of one job, as the stage counted it (every rep does the same) */
    brt_stage_work done = brt_stage_work_done(node->stage);
    done.layer_rows = (done.layer_rows - w0.layer_rows) / reps;
    done.attn_pairs = (done.attn_pairs - w0.attn_pairs) / reps;
    done.logit_rows = (done.logit_rows - w0.logit_rows) / reps;
    const double flops = brt_stage_work_flops(cfg, &done);
    printf("prefill  %6lld tokens, policy %s:  %8.3f s  %8.1f tok/s  %7.1f GFLOP/s counted = %3.0f%% of peak %.1f "
           "(best of %d)\n",
           (long long)prompt, brt_policy_name(cfg->policy), best, P / best, flops / best / 1e9,
           100 * flops / best / 1e9 / peak, peak, reps);

    /* decode: (time of prompt + gen tokens) - (time of prompt + 1 token), per generated token */
    int sizes[2] = {1, batch};
    for (int si = 0; si < (batch > 1 ? 2 : 1); si++) {
        int nb = sizes[si];
        double t1 = 1e30, tg = 1e30;
        for (int r = 0; r < reps; r++) {
            if (bench_run_batch(node, &jobs, nb, dprompt, 1, 0, 2000 + (uint64_t)r * 64, &bb) != 0) {
                fprintf(stderr, "bench_model: decode: %s\n", jobs.error);
                goto out;
            }
            if (bb.seconds < t1)
                t1 = bb.seconds;
            if (bench_run_batch(node, &jobs, nb, dprompt, gen, 0, 2000 + (uint64_t)r * 64, &bb) != 0) {
                fprintf(stderr, "bench_model: decode: %s\n", jobs.error);
                goto out;
            }
            if (bb.n_gen != (int64_t)nb * gen) {
                fprintf(stderr, "bench_model: decode: %lld of %lld tokens generated\n", (long long)bb.n_gen,
                        (long long)nb * gen);
                goto out;
            }
            if (bb.seconds < tg)
                tg = bb.seconds;
        }
        double steps = gen - 1, dt = tg - t1;
        double per_step = dt / steps;
        printf("decode   batch %2d, %lld-token prompt, %d greedy tokens: %7.2f ms/step  %8.1f tok/s   bound %.2f "
               "ms/step = %.1f tok/s (%3.0f%% of it)\n",
               nb, (long long)dprompt, gen, 1e3 * per_step, nb / per_step, 1e3 * bound_s, nb / bound_s,
               100 * bound_s / per_step);
    }

    if (gemm) {
        const brt_layer_weights *L = &w->layers[0];
        struct {
            const brt_weight *w;
            const char *what;
        } ws[] = {{&L->wq, "q_proj"}, {&L->wk, "k_proj"}, {&L->w_gate, "gate_proj"},
                  {&L->w_down, "down_proj"}, {&w->lm_head, "lm_head"}};
        int64_t ms[] = {prompt < 2048 ? prompt : 2048, 8, 1};
        printf("\ngemm at the model's shapes (weights of layer 0, %s; M <= 8: caches flushed before each call, "
               "weights come from memory as in decode):\n",
               brt_dtype_name(L->wq.dtype));
        printf("%-10s %6s %6s %6s %10s %8s %12s %8s\n", "weight", "M", "N", "K", "GFLOP/s", "of peak", "weights GB/s",
               "of copy");
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            if (!ws[i].w->data)
                continue;
            for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                int64_t m = ms[mi];
                int r = m >= 256 ? 3 : 10;
                if (ws[i].w == &w->lm_head && m > 256)
                    r = 1;
                double s = time_gemm(be, ws[i].w, m, r, m <= 8);
                double g = 2.0 * m * ws[i].w->rows * ws[i].w->cols / s / 1e9;
                double gbs = (double)ws[i].w->rows * ws[i].w->cols * brt_dtype_size(ws[i].w->dtype) / s / 1e9;
                if (m <= 8)
                    printf("%-10s %6lld %6lld %6lld %10.1f %7.0f%% %12.1f %7.0f%%\n", ws[i].what, (long long)m,
                           (long long)ws[i].w->rows, (long long)ws[i].w->cols, g, 100 * g / peak, gbs, 100 * gbs / bw);
                else
                    printf("%-10s %6lld %6lld %6lld %10.1f %7.0f%% %12s %8s\n", ws[i].what, (long long)m,
                           (long long)ws[i].w->rows, (long long)ws[i].w->cols, g, 100 * g / peak, "-", "-");
            }
        }
        printf("(peak %.1f GFLOP/s fp32 FMA, copy %.1f GB/s read + written; \"of copy\" > 100%% is possible: a GEMM "
               "only reads its weights)\n",
               peak, bw);
        printf("machine at the end: fp32 FMA peak %.1f GFLOP/s (if far from the first figure, the machine's load "
               "changed during the run)\n",
               bench_fp32_peak(be->n_threads));
    }
    rc = 0;
out:
    brt_node_close(node);
    if (tmpdir[0]) {
        mk_remove(gen_dir);
        rmdir(tmpdir);
    }
    return rc;
}
