/* Long-document prefill: tokens/s, the FLOP rate against the measured peak, and peak memory
 * against document length for the policies full, beacon_v1 (ratio 8, and adaptive) and fot on the
 * BASELINES "mid" model, beside the official implementations' figures (BASELINES.md).
 *   bench_longctx [--max-len N] [--lengths 4096,8192,...] [--policies full,beacon_v1,beacon_adapt,fot]
 *                 [--mem-limit-gb G] [--threads N] [--reps N] [--head all|last]
 *                 [--mem-dtype bfloat16|float32] [--keep DIR]
 *
 * Each measurement runs in its own forked process (node opened, a 256-token warm-up job, then the
 * measured job), so its peak RSS (VmHWM) is its own. Models are generated once, before forking:
 * mid (plain llama, used by full), mid-beacon (Activation Beacon v1 fields + beacon weights:
 * window 1024, stride 1024, ratio 8, step-expansion), mid-beacon-adapt (the same weights, linked,
 * with ratios 2..128 chosen per document by adapt-1024: the released checkpoint's inference mode,
 * which bounds memory + window by max_position_embeddings) and mid-fot (LongLLaMA: window 2048,
 * last context 1024, memory layers 3, 6, 9; its model.safetensors is a link to mid's weights).
 * GFLOP/s counts the arithmetic the engine did (brt_stage_work_done: rows through the layers,
 * visible attention pairs, lm_head rows) over the measured job's seconds. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "bench_util.h"
#include "engine/policy.h"
#include "mkmodel.h"
#include "peak.h"

static const char *const k_help =
    "usage: bench_longctx [options]\n"
    "  --max-len N          longest document (65536); lengths above it are not run\n"
    "  --lengths L,L,..     document lengths (4096,8192,16384,32768,65536)\n"
    "  --policies P,P,..    full,beacon_v1,beacon_adapt,fot (all four)\n"
    "  --mem-limit-gb G     skip runs whose predicted memory exceeds G GiB (16)\n"
    "  --threads N          kernel threads (default: all cores)\n"
    "  --reps N             measured jobs per run, best reported (1)\n"
    "  --head all|last      lm_head on every prompt position, as one forward returning all logits\n"
    "                       (the official figures; default), or only on the last (time to first token)\n"
    "  --mem-dtype D        LongLLaMA memory dtype: bfloat16 (released configs; default) | float32\n"
    "  --keep DIR           generate the models into DIR and keep them (reused if present)\n";

enum { P_FULL = 0, P_BEACON, P_ADAPT, P_FOT, P_N };
static const char *const k_pol_name[P_N] = {"full", "beacon_v1", "beacon_adapt", "fot"};
static const char *const k_pol_dir[P_N] = {"mid", "mid-beacon", "mid-beacon-adapt", "mid-fot"};

/* BASELINES.md: the official PyTorch code on this machine, prefill tokens/s (0 = none). */
static double official_tok_s(int pol, int64_t len)
{
    static const struct {
        int pol;
        int64_t len;
        double tok_s;
    } k[] = {{P_BEACON, 4096, 282},  {P_BEACON, 16384, 233}, {P_BEACON, 32768, 177}, {P_BEACON, 65536, 112},
             {P_FOT, 4096, 280},     {P_FOT, 16384, 141},    {P_FULL, 4096, 148}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (k[i].pol == pol && k[i].len == len)
            return k[i].tok_s;
    return 0;
}

typedef struct child_result {
    int ok;
    double seconds;        /* best measured job: first admission to completion */
    int64_t kv_peak;       /* brt_stage_kv_peak */
    int64_t hwm_kib;       /* VmHWM at the end */
    int64_t rss_warm_kib;  /* VmRSS after the warm-up job (weights + buffers) */
    double flops;          /* of one measured job (brt_stage_work_flops) */
    char error[1200];
} child_result;

static void child_run(const char *dir, int64_t len, int head_all, int threads, int reps, int fd)
{
    child_result r;
    memset(&r, 0, sizeof r);
    brt_node_opts o = {0};
    o.model_dir = dir;
    o.threads = threads;
    brt_node *node = NULL;
    bench_jobs jobs;
    brt_err err;
    bench_batch bb;
    if (brt_node_open(&o, NULL, &node, &err) != BRT_OK || brt_node_start_sched(node, bench_on_done, &jobs, &err) != BRT_OK) {
        snprintf(r.error, sizeof r.error, "%s", err.msg);
        goto out;
    }
    if (bench_run_batch(node, &jobs, 1, 256, head_all ? 0 : 1, head_all, 7, &bb) != 0) {
        snprintf(r.error, sizeof r.error, "warm-up: %.1100s", jobs.error);
        goto out;
    }
    r.rss_warm_kib = bench_proc_status_kib("VmRSS");
    r.seconds = 1e30;
    const brt_stage_work w0 = brt_stage_work_done(node->stage);
    for (int i = 0; i < reps; i++) {
        if (bench_run_batch(node, &jobs, 1, len, head_all ? 0 : 1, head_all, 100 + (uint64_t)i, &bb) != 0) {
            snprintf(r.error, sizeof r.error, "%s", jobs.error);
            goto out;
        }
        if (bb.seconds < r.seconds)
            r.seconds = bb.seconds;
    }
    brt_stage_work w = brt_stage_work_done(node->stage);
    w.layer_rows = (w.layer_rows - w0.layer_rows) / reps;
    w.attn_pairs = (w.attn_pairs - w0.attn_pairs) / reps;
    w.logit_rows = (w.logit_rows - w0.logit_rows) / reps;
    r.flops = brt_stage_work_flops(&node->model.cfg, &w);
    r.kv_peak = brt_stage_kv_peak(node->stage);
    r.hwm_kib = bench_proc_status_kib("VmHWM");
    r.ok = 1;
out:
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(3);
    _exit(r.ok ? 0 : 1);
}

/* Fork, measure in the child, collect. Returns 0 when the child reported. */
static int measure(const char *dir, int64_t len, int head_all, int threads, int reps, child_result *r,
                   int64_t *maxrss_kib, char *why, size_t why_n)
{
    int fds[2];
    memset(r, 0, sizeof *r);
    if (pipe(fds) != 0) {
        snprintf(why, why_n, "pipe failed");
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_n, "fork failed");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* a fresh program image: nothing of this process's heap counts in the run's RSS */
        close(fds[0]);
        char a_len[32], a_head[8], a_thr[16], a_reps[16], a_fd[16];
        snprintf(a_len, sizeof a_len, "%lld", (long long)len);
        snprintf(a_head, sizeof a_head, "%d", head_all);
        snprintf(a_thr, sizeof a_thr, "%d", threads);
        snprintf(a_reps, sizeof a_reps, "%d", reps);
        snprintf(a_fd, sizeof a_fd, "%d", fds[1]);
        execl("/proc/self/exe", "bench_longctx", "--child", dir, a_len, a_head, a_thr, a_reps, a_fd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t n = read(fds[0], (char *)r + got, sizeof *r - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0)
        ;
    *maxrss_kib = ru.ru_maxrss;
    if (got != sizeof *r) {
        if (WIFSIGNALED(status))
            snprintf(why, why_n, "the run died of signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                     WTERMSIG(status) == SIGKILL ? " - out of memory?" : "");
        else
            snprintf(why, why_n, "the run exited with status %d without a result", WEXITSTATUS(status));
        return -1;
    }
    if (!r->ok) {
        snprintf(why, why_n, "%s", r->error);
        return -1;
    }
    return 0;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Make DIR/<name> for a policy unless it is there. */
static int ensure_model(const char *work, int pol, brt_dtype dt, const char *mem_dtype, brt_err *err)
{
    char dir[4096], cfgp[4200], wp[4200];
    snprintf(dir, sizeof dir, "%s/%s", work, k_pol_dir[pol]);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    snprintf(wp, sizeof wp, "%s/model.safetensors", dir);
    mk_spec s = pol == P_BEACON || pol == P_ADAPT ? mk_spec_mid_beacon() : pol == P_FOT ? mk_spec_mid_fot() : mk_spec_mid();
    s.dtype = dt;
    s.mem_dtype = mem_dtype;
    if (pol == P_ADAPT)
        s.beacon_adapt = 1024;
    if (pol == P_FOT || pol == P_ADAPT) {
        /* another policy's weights under this config; the config is cheap: always rewrite it (the
         * memory dtype may differ between runs) */
        const int base = pol == P_FOT ? P_FULL : P_BEACON;
        if (ensure_model(work, base, dt, mem_dtype, err) != 0 || mk_write_config(&s, dir, err) != BRT_OK)
            return -1;
        if (!file_exists(wp)) {
            char target[4200];
            snprintf(target, sizeof target, "%s/%s/model.safetensors", work, k_pol_dir[base]);
            char *abs = realpath(target, NULL);
            int bad = !abs || symlink(abs, wp) != 0;
            free(abs);
            if (bad) {
                brt_errf(err, BRT_ERR_IO, "cannot link %s to %s", wp, target);
                return -1;
            }
        }
        return 0;
    }
    if (file_exists(cfgp) && file_exists(wp))
        return 0;
    double t0 = brt_now();
    int64_t params = 0;
    if (mk_write(&s, dir, &params, NULL, err) != BRT_OK)
        return -1;
    printf("# generated %s (%lld parameters) in %.1f s\n", dir, (long long)params, brt_now() - t0);
    return 0;
}

/* Generate the models in a child process, so that this one (whose heap every run would
 * otherwise inherit) stays small. */
static int ensure_models(const char *work, const int *want, const char *mem_dtype)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        brt_err err;
        for (int p = 0; p < P_N; p++)
            if (want[p] && ensure_model(work, p, BRT_DT_F32, mem_dtype, &err) != 0) {
                fprintf(stderr, "bench_longctx: %s\n", err.msg);
                _exit(1);
            }
        fflush(stdout);
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc == 8 && !strcmp(argv[1], "--child")) {
        child_run(argv[2], atoll(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]));
        return 3;
    }
    int64_t lengths[32] = {4096, 8192, 16384, 32768, 65536};
    int n_len = 5, threads = 0, reps = 1, head_all = 1;
    int64_t max_len = 65536;
    int want[P_N] = {1, 1, 1, 1};
    double mem_limit_gb = 16;
    const char *keep = NULL, *mem_dtype = "bfloat16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_help, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_longctx: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--max-len"))
            max_len = atoll(v);
        else if (!strcmp(a, "--lengths")) {
            n_len = 0;
            for (const char *p = v; *p && n_len < 32;) {
                char *end;
                long long l = strtoll(p, &end, 10);
                if (end == p || l < 1) {
                    fprintf(stderr, "bench_longctx: bad --lengths\n");
                    return 2;
                }
                lengths[n_len++] = l;
                p = *end == ',' ? end + 1 : end;
            }
        } else if (!strcmp(a, "--policies")) {
            memset(want, 0, sizeof want);
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            char *save = NULL;
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int found = 0;
                for (int p = 0; p < P_N; p++)
                    if (!strcmp(t, k_pol_name[p]))
                        want[p] = found = 1;
                if (!found) {
                    fprintf(stderr, "bench_longctx: unknown policy %s (full, beacon_v1, beacon_adapt, fot)\n", t);
                    return 2;
                }
            }
        } else if (!strcmp(a, "--mem-limit-gb"))
            mem_limit_gb = atof(v);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--reps"))
            reps = atoi(v) > 0 ? atoi(v) : 1;
        else if (!strcmp(a, "--head")) {
            if (strcmp(v, "all") && strcmp(v, "last")) {
                fprintf(stderr, "bench_longctx: --head all|last\n");
                return 2;
            }
            head_all = !strcmp(v, "all");
        } else if (!strcmp(a, "--mem-dtype")) {
            if (strcmp(v, "bfloat16") && strcmp(v, "float32")) {
                fprintf(stderr, "bench_longctx: --mem-dtype bfloat16|float32\n");
                return 2;
            }
            mem_dtype = v;
        } else if (!strcmp(a, "--keep"))
            keep = v;
        else {
            fprintf(stderr, "bench_longctx: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    char work[4096], tmpdir[256] = "";
    if (keep) {
        snprintf(work, sizeof work, "%s", keep);
        brt_err e;
        if (mk_mkdir_p(work, &e) != BRT_OK) {
            fprintf(stderr, "bench_longctx: %s\n", e.msg);
            return 1;
        }
    } else {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/brt-bench-longctx-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("bench_longctx: mkdtemp");
            return 1;
        }
        snprintf(work, sizeof work, "%s", tmpdir);
    }
    int rc = 1;
    brt_err err;
    if (ensure_models(work, want, mem_dtype) != 0)
        goto out;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = threads > 0 ? threads : (int)(cores > 0 ? cores : 1);
    double peak = bench_fp32_peak(nt);
    printf("# bench_longctx: BASELINES \"mid\" model (hidden 768, intermediate 2048, 12 layers, 12 heads, vocab "
           "32000, f32 random weights), batch 1, %d threads; measured fp32 FMA peak %.1f GFLOP/s\n",
           nt, peak);
    printf("# lm_head on %s; tok/s = document tokens / (job admitted -> job done), best of %d; models in %s\n",
           head_all ? "every position (one forward returning all logits, as the official figures)"
                    : "the last position only (time to first token)",
           reps, work);
    printf("# KV peak = the engine's long-context state at its largest (brt_stage_kv_peak); KV planned = what "
           "admission reserves for the job (worst case, brt_plan_job_bytes);\n# RSS warm = after a 256-token warm-up "
           "(weights + stage buffers); peak RSS = VmHWM of the run's own process (fresh exec per run); runs whose "
           "predicted memory (weights + KV planned + stage buffers) exceeds --mem-limit-gb %.1f GiB are skipped\n",
           mem_limit_gb);
    printf("# GFLOP/s = the engine's arithmetic (layers' linear maps on every row, beacon rows included; 4 x "
           "head_dim per visible attention pair and head; lm_head rows) / seconds; of peak = against the peak at the "
           "start\n");
    printf("%-12s %7s %9s %8s %8s %7s %8s %7s %11s %11s %10s %10s  %s\n", "policy", "tokens", "seconds", "tok/s",
           "official", "ratio", "GFLOP/s", "of peak", "KV peak", "KV planned", "RSS warm", "peak RSS", "note");
    for (int p = 0; p < P_N; p++) {
        if (!want[p])
            continue;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", work, k_pol_dir[p]);
        brt_model_config cfg;
        if (brt_config_load(dir, NULL, &cfg, &err) != BRT_OK) {
            fprintf(stderr, "bench_longctx: %s\n", err.msg);
            goto out;
        }
        char wp[4300];
        snprintf(wp, sizeof wp, "%s/model.safetensors", dir);
        struct stat st;
        int64_t wbytes = stat(wp, &st) == 0 ? (int64_t)st.st_size : 0;
        const brt_policy_ops *ops = brt_policy_ops_for(cfg.policy);
        int32_t step_rows = ops->max_step_rows(&cfg, 512);
        int64_t R = step_rows > 2048 ? step_rows : 2048; /* the node's default max_rows */
        int64_t D = cfg.hidden, qd = (int64_t)cfg.n_heads * cfg.head_dim,
                kvd = (int64_t)cfg.n_kv_heads * cfg.head_dim, I = cfg.intermediate;
        int64_t wide = I > D ? I : D;
        wide = wide > qd ? wide : qd;
        int64_t act = R * (3 * D + 2 * qd + 3 * kvd + 2 * I + 2 * wide) * 4 + 64LL * cfg.vocab_size * 4;
        for (int li = 0; li < n_len; li++) {
            int64_t len = lengths[li];
            if (len > max_len)
                continue;
            char b1[32], b2[32], b3[32], b4[32], note[1300] = "";
            double off = official_tok_s(p, len);
            brt_state_need need;
            if (brt_plan_state_need(&cfg, len, head_all ? 0 : 1, 512, &need, &err) != BRT_OK) {
                printf("%-12s %7lld  cannot plan: %s\n", k_pol_name[p], (long long)len, err.msg);
                continue;
            }
            int64_t kv_pred = brt_plan_job_bytes(&cfg, &need, 0, cfg.n_layers, brt_node_block_bytes(&cfg), BRT_DT_F32);
            int64_t pred = wbytes + kv_pred + act;
            if (pred > mem_limit_gb * 1073741824.0) {
                char offs[16] = "-";
                if (off > 0)
                    snprintf(offs, sizeof offs, "%.0f", off);
                printf("%-12s %7lld %9s %8s %8s %7s %8s %7s %11s %11s %10s %10s  skipped: predicted %s > "
                       "--mem-limit-gb %.1f\n",
                       k_pol_name[p], (long long)len, "-", "-", offs, "-", "-", "-", "-",
                       bench_bytes((double)kv_pred, b1, sizeof b1), "-", "-", bench_bytes((double)pred, b2, sizeof b2),
                       mem_limit_gb);
                fflush(stdout);
                continue;
            }
            child_result r;
            int64_t maxrss = 0;
            if (measure(dir, len, head_all, threads, reps, &r, &maxrss, note, sizeof note) != 0) {
                printf("%-12s %7lld %9s %8s %8s %7s %8s %7s %11s %11s %10s %10s  FAILED: %s\n", k_pol_name[p],
                       (long long)len, "-", "-", "-", "-", "-", "-", "-", bench_bytes((double)kv_pred, b1, sizeof b1), "-",
                       maxrss > 0 ? bench_bytes(maxrss * 1024.0, b2, sizeof b2) : "-", note);
                fflush(stdout);
                continue;
            }
            double tps = len / r.seconds;
            char offs[16] = "-", ratio[16] = "-";
            if (off > 0) {
                snprintf(offs, sizeof offs, "%.0f", off);
                snprintf(ratio, sizeof ratio, "%.2fx", tps / off);
            }
            int64_t hwm = r.hwm_kib > 0 ? r.hwm_kib : maxrss;
            const double gf = r.flops / r.seconds / 1e9;
            printf("%-12s %7lld %9.2f %8.1f %8s %7s %8.1f %6.0f%% %11s %11s %10s %10s  %s\n", k_pol_name[p],
                   (long long)len, r.seconds, tps, offs, ratio, gf, peak > 0 ? 100 * gf / peak : 0.0,
                   bench_bytes((double)r.kv_peak, b1, sizeof b1),
                   bench_bytes((double)kv_pred, b2, sizeof b2), bench_bytes(r.rss_warm_kib * 1024.0, b3, sizeof b3),
                   bench_bytes(hwm * 1024.0, b4, sizeof b4), "");
            fflush(stdout);
        }
    }
    printf("# measured fp32 FMA peak at the end: %.1f GFLOP/s (at the start: %.1f; if far apart, the machine's load "
           "changed during the run)\n",
           bench_fp32_peak(nt), peak);
    printf("# official peak RSS at the longest length (BASELINES.md): beacon_v1 3.6 GB at 64K; fot 5.4 GB at 16K; "
           "full 14.4 GB when it failed at 16K (does not fit in 24 GiB)\n");
    rc = 0;
out:
    if (tmpdir[0]) {
        for (int p = P_N - 1; p >= 0; p--) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/%s", work, k_pol_dir[p]);
            mk_remove(dir);
        }
        rmdir(tmpdir);
    }
    return rc;
}
