/* beaconrt plan: what a deployment needs before it starts: per pipeline stage, the layers, the
 * weights' memory, one job's long-context state for a document length, and how many such jobs
 * the cluster holds at once. Needs only the model's config.json (the weights' sizes come from
 * the safetensors headers when the files are there, else from the shapes and dtype). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cluster/grid.h"
#include "engine/policy.h"
#include "engine/stage.h"
#include "model/safetensors.h"
#include "model/weights.h"

static const char *const k_help =
    "usage: beaconrt plan (--config configs/X.json | --model DIR) [--ranks N] [--doc-tokens L] [--max-tokens N]\n"
    "                     [--pp P] [--dp D] [--kv-budget-mb M] [--weight-dtype bf16|f16|f32] [--json]\n"
    "                     [--device cuda [--precision bf16|f32] [--gpu-mem-gb G] [--gpu-tflops T]]\n"
    "\n"
    "Prints, per pipeline stage, the layers it holds, its weight memory, the long-context state one job of\n"
    "L document tokens (+ N generated) needs there, and how many such jobs fit in the KV budget. The\n"
    "budget per stage comes from --kv-budget-mb (or the preset's resources.kv_budget_mb), else from this\n"
    "machine's memory as beaconrt would choose it.\n"
    "\n"
    "With --device cuda (or the preset's resources.device) each stage is one GPU of G GiB (--gpu-mem-gb,\n"
    "resources.gpu_mem_gb, default 80): weights in their GPU dtype (bf16, or f32 with --precision f32),\n"
    "activation buffers, the KV budget the runtime would choose there, state in bf16 (f32), jobs per GPU.\n"
    "With a measured rate T (--gpu-tflops or resources.gpu_tflops: the TFLOP/s column of bench_gpu for\n"
    "that card) it estimates the time per document: its GEMM FLOPs over the pipeline's GPUs.\n"
    "\n" CLI_MODEL_HELP;

static double mib(int64_t b) { return b / 1048576.0; }

int cmd_plan(int argc, char **argv)
{
    static struct option opts[] = {{"ranks", required_argument, 0, 'r'},
                                   {"gpu-mem-gb", required_argument, 0, 'G'},
                                   {"gpu-tflops", required_argument, 0, 'T'},
                                   {"doc-tokens", required_argument, 0, 'L'},
                                   {"max-tokens", required_argument, 0, 'n'},
                                   {"weight-dtype", required_argument, 0, 'w'},
                                   {"json", no_argument, 0, 'j'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    long long doc = 0, max_new = 0;
    int ranks = 0, opt, rc = 1, as_json = 0;
    const char *wdt = NULL;
    optind = 1;
    int li = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'r':
        case 'L':
        case 'n': {
            long v;
            if (!cli_num(optarg, opt == 'r' ? 1 : 0, opt == 'r' ? 1 << 20 : 1L << 40, &v)) {
                rc = cli_bad_option("plan", opts, li, opt);
                goto out;
            }
            if (opt == 'r')
                ranks = (int)v;
            else
                *(opt == 'L' ? &doc : &max_new) = v;
            break;
        }
        case 'w': wdt = optarg; break;
        case 'G':
        case 'T': {
            char *end;
            double v = strtod(optarg, &end);
            if (*end || !(v > 0)) {
                rc = cli_bad_option("plan", opts, li, opt);
                goto out;
            }
            *(opt == 'G' ? &c.gpu_mem_gb : &c.gpu_tflops) = v;
            break;
        }
        case 'j': as_json = 1; break;
        case 'h': fputs(k_help, stdout); rc = 0; goto out;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            rc = cli_bad_option("plan", opts, li, opt);
            goto out;
        }
    }
    if (cli_common_finish(&c, "plan") != 0) {
        rc = 2;
        goto out;
    }
    if (ranks <= 0)
        ranks = c.ranks > 0 ? c.ranks : (c.node.pp > 0 ? c.node.pp : 1) * (c.node.dp > 0 ? c.node.dp : 1);
    if (doc < 0 || max_new < 0 || ranks < 1) {
        fprintf(stderr, "beaconrt plan: --ranks, --doc-tokens and --max-tokens must be positive\n");
        rc = 2;
        goto out;
    }
    brt_model_config cfg;
    brt_err err;
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.json", c.model);
    FILE *probe = fopen(cpath, "r");
    if (probe)
        fclose(probe);
    else if (c.model_config) /* planning a deployment whose weights are not on this machine */
        snprintf(cpath, sizeof cpath, "%s", c.model_config);
    if (brt_config_load_file(cpath, c.overrides, &cfg, &err) != BRT_OK) {
        rc = cli_fail("plan", &err);
        goto out;
    }
    brt_grid g;
    if (brt_grid_init(&g, ranks, 0, c.node.pp, c.node.dp, &cfg, &err) != BRT_OK) {
        rc = cli_fail("plan", &err);
        goto out;
    }
    /* weights per layer: from the files if present, else shapes x dtype size */
    brt_st_set set;
    int have_files = brt_st_set_open_dir(c.model, &set, &err) == BRT_OK;
    int esize = 2;
    if (wdt && !strcmp(wdt, "f32"))
        esize = 4;
    else if (wdt && strcmp(wdt, "bf16") && strcmp(wdt, "f16")) {
        fprintf(stderr, "beaconrt plan: --weight-dtype must be bf16, f16 or f32\n");
        rc = 2;
        goto close;
    }
    const double d = cfg.hidden, q = (double)cfg.n_heads * cfg.head_dim, kv = (double)cfg.n_kv_heads * cfg.head_dim;
    double layer_params = d * q + 2 * d * kv + q * d + 3 * d * cfg.intermediate + 2 * d;
    if (cfg.policy == BRT_POLICY_BEACON_V1 || cfg.policy == BRT_POLICY_BEACON_V2) {
        uint32_t p = cfg.beacon.param;
        layer_params += (p & BRT_BEACON_PARAM_Q ? d * q : 0) + (p & BRT_BEACON_PARAM_K ? d * kv : 0) +
                        (p & BRT_BEACON_PARAM_V ? d * kv : 0) + (p & BRT_BEACON_PARAM_O ? q * d : 0) +
                        (p & BRT_BEACON_PARAM_MLP ? 2 * d * cfg.intermediate : 0);
    }
    const int32_t bb = brt_node_block_bytes(&cfg);
    /* on GPUs: weights in their device dtype (vectors f32), activation buffers, state dtype */
    const int gpu = c.node.device && !strcmp(c.node.device, "cuda");
    const int f32 = c.node.precision && !strcmp(c.node.precision, "f32");
    const int dev_es = f32 ? 4 : 2;
    const brt_dtype state_dt = gpu && !f32 ? BRT_DT_BF16 : BRT_DT_F32;
    const int64_t gpu_mem = (int64_t)((c.gpu_mem_gb > 0 ? c.gpu_mem_gb : 80) * 1073741824.0);
    const brt_policy_ops *pol = brt_policy_ops_for(cfg.policy);
    const int32_t chunk = c.node.prefill_chunk > 0 ? c.node.prefill_chunk : 512, step_rows = pol->max_step_rows(&cfg, chunk);
    const int32_t max_rows = c.node.max_rows > 0 ? c.node.max_rows : (step_rows > 2048 ? step_rows : 2048);
    brt_state_need need = {0};
    if (doc > 0 && brt_plan_state_need(&cfg, doc, max_new, chunk, &need, &err) != BRT_OK) {
        rc = cli_fail("plan", &err);
        goto close;
    }
    json_t *stages = json_array();
    int64_t fit_min = -1;
    if (!as_json) {
        printf("model %s (%s, %d layers), policy %s; %d ranks = %d pipelines x %d stages\n", c.model, cfg.model_type,
               cfg.n_layers, brt_policy_name(cfg.policy), ranks, g.dp, g.pp);
        if (doc > 0)
            printf("one job: %lld document + %lld generated tokens: memory %lld slots, window %lld slots per layer, "
                   "%lld steps\n",
                   doc, max_new, (long long)need.mem, (long long)need.raw, (long long)need.steps);
        if (gpu)
            printf("one GPU per stage: %.0f GiB, weights %s, state %s, %d rows per micro-batch\n", gpu_mem / 1073741824.0,
                   f32 ? "f32" : "bf16 (vectors f32)", brt_dtype_name(state_dt), max_rows);
        printf("%-6s %-9s %12s %s%14s %14s %10s\n", "stage", "layers", gpu ? "GPU weights" : "weights MiB",
               gpu ? "   acts MiB " : "", "KV budget MiB", "job state MiB", gpu ? "jobs/GPU" : "jobs fit");
    }
    for (int32_t s = 0; s < g.pp; s++) {
        const int32_t a = g.layers[s], b = g.layers[s + 1];
        int64_t wbytes = 0;
        for (int32_t l = a; l < b; l++)
            wbytes += have_files ? brt_weights_layer_bytes(&set, &cfg, l) : (int64_t)(layer_params * esize);
        int64_t ve = (int64_t)cfg.vocab_size * cfg.hidden * (have_files ? 4 : esize);
        if (s == 0)
            wbytes += ve;
        if (s == g.pp - 1 && (!cfg.tie_embeddings || s > 0)) /* lm_head, or the tied table bound again */
            wbytes += ve;
        int64_t acts = 0, budget;
        if (gpu) {
            const double vec = 2.0 * cfg.hidden; /* the two norm vectors of a layer */
            wbytes = (int64_t)((layer_params - vec) * dev_es + vec * 4) * (b - a);
            const int64_t vd = (int64_t)cfg.vocab_size * cfg.hidden * dev_es;
            wbytes += (s == 0 ? vd : 0) + (s == g.pp - 1 && (!cfg.tie_embeddings || s > 0) ? vd : 0) +
                      (s == g.pp - 1 ? (int64_t)cfg.hidden * 4 : 0);
            acts = brt_stage_activation_bytes(&cfg, max_rows, s == g.pp - 1);
            budget = c.node.kv_budget > 0 ? c.node.kv_budget
                                          : brt_node_gpu_kv_budget(gpu_mem, 1, wbytes + acts + ((int64_t)64 << 20));
        } else
            budget = c.node.kv_budget > 0 ? c.node.kv_budget : brt_node_default_kv_budget(ranks, wbytes);
        if (budget < 0)
            budget = 0;
        int64_t job = doc > 0 ? brt_plan_job_bytes(&cfg, &need, a, b, bb, state_dt) : 0;
        int64_t fit = job > 0 ? budget / job : -1;
        if (fit >= 0 && (fit_min < 0 || fit < fit_min))
            fit_min = fit;
        if (as_json) {
            json_t *o = json_object();
            json_object_set_new(o, "stage", json_integer(s));
            json_object_set_new(o, "layer_begin", json_integer(a));
            json_object_set_new(o, "layer_end", json_integer(b));
            json_object_set_new(o, "weight_bytes", json_integer(wbytes));
            if (gpu)
                json_object_set_new(o, "activation_bytes", json_integer(acts));
            json_object_set_new(o, "kv_budget_bytes", json_integer(budget));
            json_object_set_new(o, "job_state_bytes", json_integer(job));
            json_object_set_new(o, "jobs_fit", json_integer(fit));
            json_array_append_new(stages, o);
        } else {
            char lay[32], fits[32] = "-";
            snprintf(lay, sizeof lay, "%d-%d", a, b - 1);
            if (fit >= 0)
                snprintf(fits, sizeof fits, "%lld", (long long)fit);
            if (gpu)
                printf("%-6d %-9s %12.1f %11.1f %14.1f %14.3f %10s\n", s, lay, mib(wbytes), mib(acts), mib(budget),
                       mib(job), fits);
            else
                printf("%-6d %-9s %12.1f %14.1f %14.3f %10s\n", s, lay, mib(wbytes), mib(budget), mib(job), fits);
        }
    }
    /* time per document from a measured per-GPU rate: the GEMM FLOPs of every row the policy runs
     * (document tokens, beacon slots) over the pipeline's GPUs, which one document's windows keep
     * busy together (the wavefront) */
    double doc_s = -1;
    if (gpu && doc > 0 && c.gpu_tflops > 0) {
        const double lin = layer_params - 2.0 * cfg.hidden; /* per layer, per row: 2 x linear params FLOPs */
        const double flops = 2.0 * lin * cfg.n_layers * (double)need.rows + 2.0 * cfg.hidden * cfg.vocab_size;
        doc_s = flops / (c.gpu_tflops * 1e12 * g.pp);
    }
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(c.model));
        json_object_set_new(o, "device", json_string(gpu ? "cuda" : "cpu"));
        if (doc_s >= 0)
            json_object_set_new(o, "seconds_per_document", json_real(doc_s));
        json_object_set_new(o, "policy", json_string(brt_policy_name(cfg.policy)));
        json_object_set_new(o, "ranks", json_integer(ranks));
        json_object_set_new(o, "pp", json_integer(g.pp));
        json_object_set_new(o, "dp", json_integer(g.dp));
        json_object_set_new(o, "doc_tokens", json_integer(doc));
        json_object_set_new(o, "stages", stages);
        json_object_set_new(o, "jobs_fit_per_pipeline", json_integer(fit_min));
        json_object_set_new(o, "jobs_fit_total", json_integer(fit_min >= 0 ? fit_min * g.dp : -1));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        json_decref(stages);
        if (fit_min >= 0)
            printf("jobs of %lld tokens held at once: %lld per pipeline, %lld in all\n", doc, (long long)fit_min,
                   (long long)fit_min * g.dp);
        if (doc_s >= 0)
            printf("estimate at %.0f TFLOP/s per GPU: %.1f s per document on one pipeline (%lld rows of GEMMs), %.0f "
                   "documents per hour over the %d pipelines\n",
                   c.gpu_tflops, doc_s, (long long)need.rows, 3600.0 * g.dp / doc_s, g.dp);
        else if (gpu && doc > 0)
            printf("no time estimate: give the engine's measured rate on this card (--gpu-tflops, the TFLOP/s column of "
                   "bench_gpu; docs/performance.md)\n");
    }
    rc = 0;
close:
    if (have_files)
        brt_st_set_close(&set);
out:
    cli_common_free(&c);
    return rc;
}
