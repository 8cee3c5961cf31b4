/* beaconrt plan: what a deployment needs before it starts: per pipeline stage, the layers, the
 * weights' memory, one job's long-context state for a document length, and how many such jobs
 * the cluster holds at once. Needs only the model's config.json (the weights' sizes come from
 * the safetensors headers when the files are there, else from the shapes and torch_dtype). The
 * figures come from cli_plan (plan_report.c), which inspect shares. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const k_help =
    "usage: beaconrt plan (--config configs/X.json | --model DIR) [--ranks N] [--doc-tokens L] [--max-tokens N]\n"
    "                     [--pp P] [--dp D] [--kv-budget-mb M] [--weight-dtype bf16|f16|f32] [--json]\n"
    "                     [--device cuda [--precision bf16|f32] [--gpu-mem-gb G] [--gpu-tflops T]]\n"
    "\n"
    "Prints, per pipeline stage, the layers it holds, its weight memory, the long-context state one job of\n"
    "L document tokens (+ N generated) needs there, and how many such jobs fit in the KV budget. The\n"
    "budget per stage comes from --kv-budget-mb (or the preset's resources.kv_budget_mb), else from this\n"
    "machine's memory as beaconrt would choose it. `beaconrt inspect` prints the same figures.\n"
    "\n"
    "  --ranks N                ranks of the deployment; without --pp/--dp, plan picks the grid: the fewest\n"
    "                           pipeline stages whose weights (and one job) fit, the other ranks replicas\n"
    "                           (it overrides the preset's parallel section). Default: the preset's ranks\n"
    "                           and pp x dp, or --pp x --dp, or 1\n"
    "  --pp P, --dp D           this grid exactly (checked against --ranks)\n"
    "  --doc-tokens L           document length: a number with an optional K (x 1,000) or M (x 1,000,000)\n"
    "                           suffix, decimal as in papers: 400K = 400000, 1M = 1000000, 1.5M\n"
    "  --max-tokens N           tokens generated after it (same suffixes; default 0)\n"
    "  --weight-dtype D         size a checkpoint that is not here in bf16, f16 or f32 (default: the\n"
    "                           config's torch_dtype, else bf16); weights that are here count as stored\n"
    "  --json                   the figures as JSON\n"
    "\n"
    "Weights: from the model folder's safetensors when they are there (each tensor in its own dtype),\n"
    "else from the config alone (the folder's config.json, or the preset's model_config).\n"
    "\n"
    "With --device cuda (or the preset's resources.device) each stage is one GPU of G GiB (--gpu-mem-gb,\n"
    "resources.gpu_mem_gb, default 80): weights in their GPU dtype (bf16, or f32 with --precision f32),\n"
    "activation buffers, the KV budget the runtime would choose there, state in bf16 (f32), jobs per GPU.\n"
    "With a measured rate T (--gpu-tflops or resources.gpu_tflops: the TFLOP/s column of bench_gpu for\n"
    "that card) it estimates the time per document: its GEMM FLOPs over the pipeline's GPUs.\n"
    "\n"
    "Exit status 1, with a warning line, when the deployment cannot run the document: it needs more\n"
    "positions than the model has under its policy, a stage holds no job of that length, or a GPU\n"
    "stage's weights leave no room for state.\n"
    "\n" CLI_MODEL_HELP;

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
    int ranks = 0, opt, rc = 1, as_json = 0, opened = 0;
    const char *wdt = NULL;
    cli_plan *p = NULL;
    optind = 1;
    int li = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'r': {
            long v;
            if (!cli_num(optarg, 1, 1 << 20, &v)) {
                rc = cli_bad_option("plan", opts, li, opt);
                goto out;
            }
            ranks = (int)v;
            break;
        }
        case 'L':
        case 'n':
            if (!cli_tokens(optarg, 0, 1LL << 40, opt == 'L' ? &doc : &max_new)) {
                rc = cli_bad_option("plan", opts, li, opt);
                goto out;
            }
            break;
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
    p = malloc(sizeof *p);
    if (!p) {
        fprintf(stderr, "beaconrt plan: error: out of memory\n");
        goto out;
    }
    if ((rc = cli_plan_open(p, &c, "plan", wdt, doc, max_new, ranks)) != 0)
        goto out;
    opened = 1;
    const brt_model_config *cfg = &p->cfg;
    const brt_grid *g = &p->g;
    if (!as_json) {
        printf("model %s (%s, %d layers), policy %s; %d ranks = %d pipelines x %d stages (%s)\n", c.model, cfg->model_type,
               cfg->n_layers, brt_policy_name(cfg->policy), p->ranks, g->dp, g->pp, p->grid_note);
        if (p->have_weights)
            printf("weights: %s, each tensor as stored\n", c.model);
        else
            printf("weights: not here; sized from %s, every tensor %s (%s)\n", p->config_path, brt_dtype_name(p->dtype),
                   p->dtype_from);
        if (doc > 0)
            printf("one job: %lld document + %lld generated tokens: memory %lld slots, window %lld slots per layer, "
                   "%lld steps, positions %lld of %lld\n",
                   doc, max_new, (long long)p->need.mem, (long long)p->need.raw, (long long)p->need.steps,
                   (long long)p->pos_need, (long long)p->pos_limit);
        if (p->gpu)
            printf("one GPU per stage: %.0f GiB, weights %s, state %s, %d rows per micro-batch\n",
                   p->gpu_mem / 1073741824.0, p->f32 ? "f32" : "bf16 (vectors f32)", brt_dtype_name(p->state_dt),
                   p->max_rows);
        cli_plan_print_stages(p);
    }
    /* time per document from a measured per-GPU rate: the GEMM FLOPs of every row the policy runs
     * (document tokens, beacon slots) over the pipeline's GPUs, which one document's windows keep
     * busy together (the wavefront) */
    double doc_s = -1;
    if (p->gpu && doc > 0 && c.gpu_tflops > 0) {
        const double d = cfg->hidden, q = (double)cfg->n_heads * cfg->head_dim,
                     kv = (double)cfg->n_kv_heads * cfg->head_dim;
        double lin = d * q + 2 * d * kv + q * d + 3 * d * cfg->intermediate; /* per layer, per row: 2 x FLOPs */
        if (cfg->policy == BRT_POLICY_BEACON_V1 || cfg->policy == BRT_POLICY_BEACON_V2) {
            const uint32_t bp = cfg->beacon.param;
            lin += (bp & BRT_BEACON_PARAM_Q ? d * q : 0) + (bp & BRT_BEACON_PARAM_K ? d * kv : 0) +
                   (bp & BRT_BEACON_PARAM_V ? d * kv : 0) + (bp & BRT_BEACON_PARAM_O ? q * d : 0) +
                   (bp & BRT_BEACON_PARAM_MLP ? 2 * d * cfg->intermediate : 0);
        }
        const double flops = 2.0 * lin * cfg->n_layers * (double)p->need.rows + 2.0 * cfg->hidden * cfg->vocab_size;
        doc_s = flops / (c.gpu_tflops * 1e12 * g->pp);
    }
    json_t *warnings = json_array();
    if (!as_json) {
        if (p->fit_min >= 0)
            printf("jobs of %lld tokens held at once: %lld per pipeline, %lld in all\n", doc, (long long)p->fit_min,
                   (long long)p->fit_min * g->dp);
        if (doc_s >= 0)
            printf("estimate at %.0f TFLOP/s per GPU: %.1f s per document on one pipeline (%lld rows of GEMMs), %.0f "
                   "documents per hour over the %d pipelines\n",
                   c.gpu_tflops, doc_s, (long long)p->need.rows, 3600.0 * g->dp / doc_s, g->dp);
        else if (p->gpu && doc > 0)
            printf("no time estimate: give the engine's measured rate on this card (--gpu-tflops, the TFLOP/s column of "
                   "bench_gpu; docs/performance.md)\n");
        fflush(stdout); /* the table first, then why it fails */
    }
    const int n_warn = cli_plan_warnings(p, warnings);
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(c.model));
        json_object_set_new(o, "config", json_string(p->config_path));
        json_object_set_new(o, "weights", json_string(p->have_weights ? "checkpoint" : "config"));
        if (!p->have_weights)
            json_object_set_new(o, "weight_dtype", json_string(brt_dtype_name(p->dtype)));
        json_object_set_new(o, "device", json_string(p->gpu ? "cuda" : "cpu"));
        if (doc_s >= 0)
            json_object_set_new(o, "seconds_per_document", json_real(doc_s));
        json_object_set_new(o, "policy", json_string(brt_policy_name(cfg->policy)));
        json_object_set_new(o, "ranks", json_integer(p->ranks));
        json_object_set_new(o, "pp", json_integer(g->pp));
        json_object_set_new(o, "dp", json_integer(g->dp));
        json_object_set_new(o, "grid", json_string(p->grid_note));
        json_object_set_new(o, "doc_tokens", json_integer(doc));
        json_object_set_new(o, "max_tokens", json_integer(max_new));
        if (doc > 0) {
            json_object_set_new(o, "positions_needed", json_integer(p->pos_need));
            json_object_set_new(o, "positions_limit", json_integer(p->pos_limit));
        }
        json_object_set_new(o, "stages", cli_plan_stages_json(p));
        json_object_set_new(o, "jobs_fit_per_pipeline", json_integer(p->fit_min));
        json_object_set_new(o, "jobs_fit_total", json_integer(p->fit_min >= 0 ? p->fit_min * g->dp : -1));
        json_object_set_new(o, "warnings", json_incref(warnings));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    }
    json_decref(warnings);
    rc = n_warn ? 1 : 0;
out:
    if (opened)
        cli_plan_close(p);
    free(p);
    cli_common_free(&c);
    return rc;
}
