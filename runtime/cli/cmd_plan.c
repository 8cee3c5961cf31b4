/* beaconrt plan: what a deployment needs before it starts: per pipeline stage, the layers, the
 * weights' memory, one job's long-context state for a document length, and how many such jobs
 * the cluster holds at once. Needs only the model's config.json (the weights' sizes come from
 * the safetensors headers when the files are there, else from the shapes and dtype). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist/grid.h"
#include "engine/policy.h"
#include "model/safetensors.h"
#include "model/weights.h"

static const char *const k_help =
    "usage: beaconrt plan (--config configs/X.json | --model DIR) [--ranks N] [--doc-tokens L] [--max-tokens N]\n"
    "                     [--pp P] [--dp D] [--kv-budget-mb M] [--weight-dtype bf16|f16|f32] [--json]\n"
    "\n"
    "Prints, per pipeline stage, the layers it holds, its weight memory, the long-context state one job of\n"
    "L document tokens (+ N generated) needs there, and how many such jobs fit in the KV budget. The\n"
    "budget per stage comes from --kv-budget-mb (or the preset's resources.kv_budget_mb), else from this\n"
    "machine's memory as beaconrt would choose it.\n"
    "\n" CLI_MODEL_HELP;

static double mib(int64_t b) { return b / 1048576.0; }

int cmd_plan(int argc, char **argv)
{
    static struct option opts[] = {{"ranks", required_argument, 0, 'r'},
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
    brt_state_need need = {0};
    if (doc > 0 && brt_plan_state_need(&cfg, doc, max_new, c.node.prefill_chunk > 0 ? c.node.prefill_chunk : 512, &need,
                                       &err) != BRT_OK) {
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
        printf("%-6s %-9s %12s %14s %14s %10s\n", "stage", "layers", "weights MiB", "KV budget MiB", "job state MiB",
               "jobs fit");
    }
    for (int32_t s = 0; s < g.pp; s++) {
        const int32_t a = g.layers[s], b = g.layers[s + 1];
        int64_t wbytes = 0;
        for (int32_t l = a; l < b; l++)
            wbytes += have_files ? brt_weights_layer_bytes(&set, &cfg, l) : (int64_t)(layer_params * esize);
        int64_t ve = (int64_t)cfg.vocab_size * cfg.hidden * (have_files ? 4 : esize);
        if (s == 0)
            wbytes += ve;
        if (s == g.pp - 1 && !cfg.tie_embeddings)
            wbytes += ve;
        int64_t budget = c.node.kv_budget > 0 ? c.node.kv_budget : brt_node_default_kv_budget(ranks, wbytes);
        int64_t job = doc > 0 ? brt_plan_job_bytes(&cfg, &need, a, b, bb, BRT_DT_F32) : 0;
        int64_t fit = job > 0 ? budget / job : -1;
        if (fit >= 0 && (fit_min < 0 || fit < fit_min))
            fit_min = fit;
        if (as_json) {
            json_t *o = json_object();
            json_object_set_new(o, "stage", json_integer(s));
            json_object_set_new(o, "layer_begin", json_integer(a));
            json_object_set_new(o, "layer_end", json_integer(b));
            json_object_set_new(o, "weight_bytes", json_integer(wbytes));
            json_object_set_new(o, "kv_budget_bytes", json_integer(budget));
            json_object_set_new(o, "job_state_bytes", json_integer(job));
            json_object_set_new(o, "jobs_fit", json_integer(fit));
            json_array_append_new(stages, o);
        } else {
            char lay[32], fits[32] = "-";
            snprintf(lay, sizeof lay, "%d-%d", a, b - 1);
            if (fit >= 0)
                snprintf(fits, sizeof fits, "%lld", (long long)fit);
            printf("%-6d %-9s %12.1f %14.1f %14.3f %10s\n", s, lay, mib(wbytes), mib(budget), mib(job), fits);
        }
    }
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(c.model));
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
    }
    rc = 0;
close:
    if (have_files)
        brt_st_set_close(&set);
out:
    cli_common_free(&c);
    return rc;
}
