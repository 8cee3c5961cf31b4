/* beaconrt inspect: what a model folder holds and what running it costs. The per-stage figures come
 * from cli_plan (plan_report.c), as plan's do, so the two commands agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const k_help =
    "usage: beaconrt inspect (--model DIR | --config configs/X.json) [--doc-tokens L] [--max-tokens N]\n"
    "                        [--pp P] [--dp D] [--weight-dtype bf16|f16|f32] [--json] [policy options]\n"
    "\n"
    "Prints the architecture, the long-context policy, the parameter count and dtypes, the weights'\n"
    "memory, and the long-context state one job of L document tokens (+ N generated) needs, known\n"
    "before it starts; then, per pipeline stage, the figures `beaconrt plan` prints for the same model\n"
    "and grid (default: the preset's pp x dp, else one stage).\n"
    "\n"
    "  --doc-tokens L           document length: a number with an optional K (x 1,000) or M (x 1,000,000)\n"
    "                           suffix, decimal as in papers: 400K = 400000, 1M = 1000000, 1.5M\n"
    "  --max-tokens N           tokens generated after it (same suffixes; default 0)\n"
    "  --pp P, --dp D           the grid of the per-stage figures\n"
    "  --weight-dtype D         size a checkpoint that is not here in bf16, f16 or f32 (default: the\n"
    "                           config's torch_dtype, else bf16)\n"
    "  --json                   the figures as JSON\n"
    "\n"
    "Without the weights (a folder with config.json only, or a preset whose model is elsewhere: its\n"
    "model_config) the sizes come from the config. Exit status 1, with a warning line, when the document\n"
    "needs more positions than the model has under its policy or no job of that length fits a stage.\n"
    "\n" CLI_MODEL_HELP;

static void human(double bytes, char *buf, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) {
        bytes /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", bytes, u[i]);
}

int cmd_inspect(int argc, char **argv)
{
    static struct option opts[] = {{"doc-tokens", required_argument, 0, 'L'},
                                   {"max-tokens", required_argument, 0, 'n'},
                                   {"weight-dtype", required_argument, 0, 'w'},
                                   {"json", no_argument, 0, 'j'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    long long doc = 0, max_new = 0;
    int opt, rc = 1, as_json = 0, opened = 0;
    const char *wdt = NULL;
    cli_plan *p = NULL;
    optind = 1;
    int li = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'L':
        case 'n':
            if (!cli_tokens(optarg, 0, 1LL << 40, opt == 'L' ? &doc : &max_new)) {
                rc = cli_bad_option("inspect", opts, li, opt);
                goto out;
            }
            break;
        case 'w': wdt = optarg; break;
        case 'j': as_json = 1; break;
        case 'h': fputs(k_help, stdout); rc = 0; goto out;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            rc = cli_bad_option("inspect", opts, li, opt);
            goto out;
        }
    }
    if (cli_common_finish(&c, "inspect") != 0) {
        rc = 2;
        goto out;
    }
    p = malloc(sizeof *p);
    if (!p) {
        fprintf(stderr, "beaconrt inspect: error: out of memory\n");
        goto out;
    }
    if ((rc = cli_plan_open(p, &c, "inspect", wdt, doc, max_new, 0)) != 0)
        goto out;
    opened = 1;
    const brt_model_config *cfg = &p->cfg;
    /* parameters: the checkpoint's tensors when it is here, else those the config implies */
    int64_t params, bytes;
    int64_t by_dt[BRT_DT_COUNT] = {0};
    brt_weight_count whole;
    brt_weight_count_stage(cfg, p->have_weights ? &p->model.files : NULL, p->dtype, 0, cfg->n_layers, 1, 1, &whole);
    if (p->have_weights) {
        brt_model_size(&p->model, &params, &bytes);
        for (size_t f = 0; f < p->model.files.n_files; f++)
            for (size_t i = 0; i < p->model.files.files[f]->n; i++)
                by_dt[p->model.files.files[f]->tensors[i].dtype] += p->model.files.files[f]->tensors[i].numel;
    } else {
        params = whole.params;
        bytes = whole.bytes;
        by_dt[p->dtype] = params;
    }
    int32_t bb = p->block_bytes;
    int64_t state_bytes = 0, gpu_state = 0;
    /* on GPUs (--device cuda): matrices in bf16 (f32 with --precision f32), vectors f32, state alike */
    const int gpu = p->gpu, f32 = p->f32;
    const brt_dtype gpu_state_dt = f32 ? BRT_DT_F32 : BRT_DT_BF16;
    const int64_t gpu_weights = gpu ? brt_weight_count_device_bytes(&whole, p->dev_es) : 0;
    if (doc > 0) {
        state_bytes = brt_plan_job_bytes(cfg, &p->need, 0, cfg->n_layers, bb, BRT_DT_F32);
        gpu_state = brt_plan_job_bytes(cfg, &p->need, 0, cfg->n_layers, bb, gpu_state_dt);
    }
    const brt_state_need need = p->need;
    const int64_t kv_token = 2LL * cfg->n_layers * cfg->n_kv_heads * cfg->head_dim * 4; /* f32 K+V, every layer */
    json_t *warnings = json_array();
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(c.model));
        json_object_set_new(o, "config", json_string(p->config_path));
        json_object_set_new(o, "weights", json_string(p->have_weights ? "checkpoint" : "config"));
        if (!p->have_weights)
            json_object_set_new(o, "weight_dtype", json_string(brt_dtype_name(p->dtype)));
        json_object_set_new(o, "model_type", json_string(cfg->model_type));
        json_object_set_new(o, "policy", json_string(brt_policy_name(cfg->policy)));
        json_object_set_new(o, "layers", json_integer(cfg->n_layers));
        json_object_set_new(o, "hidden", json_integer(cfg->hidden));
        json_object_set_new(o, "heads", json_integer(cfg->n_heads));
        json_object_set_new(o, "kv_heads", json_integer(cfg->n_kv_heads));
        json_object_set_new(o, "head_dim", json_integer(cfg->head_dim));
        json_object_set_new(o, "vocab", json_integer(cfg->vocab_size));
        json_object_set_new(o, "max_positions", json_integer(cfg->max_pos));
        json_object_set_new(o, "parameters", json_integer(params));
        json_object_set_new(o, "weight_bytes", json_integer(bytes));
        json_object_set_new(o, "full_kv_bytes_per_token", json_integer(kv_token));
        if (doc > 0) {
            json_object_set_new(o, "doc_tokens", json_integer(doc));
            json_object_set_new(o, "max_tokens", json_integer(max_new));
            json_object_set_new(o, "state_bytes", json_integer(state_bytes));
            json_object_set_new(o, "state_slots_memory", json_integer(need.mem));
            json_object_set_new(o, "state_slots_window", json_integer(need.raw));
            json_object_set_new(o, "steps", json_integer(need.steps));
            json_object_set_new(o, "positions_needed", json_integer(p->pos_need));
            json_object_set_new(o, "positions_limit", json_integer(p->pos_limit));
            if (gpu)
                json_object_set_new(o, "gpu_state_bytes", json_integer(gpu_state));
        }
        if (gpu)
            json_object_set_new(o, "gpu_weight_bytes", json_integer(gpu_weights));
        json_object_set_new(o, "ranks", json_integer(p->ranks));
        json_object_set_new(o, "pp", json_integer(p->g.pp));
        json_object_set_new(o, "dp", json_integer(p->g.dp));
        json_object_set_new(o, "stages", cli_plan_stages_json(p));
        json_object_set_new(o, "jobs_fit_per_pipeline", json_integer(p->fit_min));
        const int n_warn = cli_plan_warnings(p, warnings);
        json_object_set_new(o, "warnings", json_incref(warnings));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
        rc = n_warn ? 1 : 0;
    } else {
        char b1[32], b2[32];
        printf("model          %s\n", c.model);
        if (!p->have_weights)
            printf("weights        not here: sized from %s, every tensor %s (%s)\n", p->config_path,
                   brt_dtype_name(p->dtype), p->dtype_from);
        printf("architecture   %s: %d layers, hidden %d, %d heads (%d kv, head dim %d), mlp %d, vocab %d\n",
               cfg->model_type, cfg->n_layers, cfg->hidden, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim,
               cfg->intermediate, cfg->vocab_size);
        printf("               rope theta %g%s, rms eps %g, tied embeddings %s, q/k/v bias %s, max positions %d\n",
               cfg->rope_theta, cfg->rope_scaling == BRT_ROPE_LINEAR ? " (linear scaling)" : cfg->rope_scaling == BRT_ROPE_LLAMA3 ? " (llama3 scaling)" : "", cfg->rms_eps,
               cfg->tie_embeddings ? "yes" : "no", cfg->qkv_bias ? "yes" : "no", cfg->max_pos);
        printf("policy         %s", brt_policy_name(cfg->policy));
        if (cfg->policy == BRT_POLICY_BEACON_V1 || cfg->policy == BRT_POLICY_BEACON_V2) {
            printf(": window %d, stride %d, ratios", cfg->beacon.window, cfg->beacon.stride);
            for (int i = 0; i < cfg->beacon.n_ratios; i++)
                printf("%s%d", i ? "," : " ", cfg->beacon.ratios[i]);
        } else if (cfg->policy == BRT_POLICY_FOT) {
            printf(": window %d, last context %d, memory layers", cfg->fot.window, cfg->fot.last_context_length);
            for (int l = 0; l < cfg->n_layers; l++)
                if (cfg->fot.is_mem_layer[l])
                    printf(" %d", l);
            printf(", memory %s", cfg->fot.mem_bf16 ? "bf16" : "f32");
        }
        printf("\n");
        human((double)bytes, b1, sizeof b1);
        printf("parameters     %lld (%s of weights:", (long long)params, b1);
        for (int d = 0; d < BRT_DT_COUNT; d++)
            if (by_dt[d])
                printf(" %s %lld", brt_dtype_name((brt_dtype)d), (long long)by_dt[d]);
        printf(")\n");
        human((double)kv_token, b1, sizeof b1);
        printf("full KV        %s per token (f32, all layers)\n", b1);
        if (doc > 0) {
            human((double)state_bytes, b1, sizeof b1);
            human((double)kv_token * (doc + max_new), b2, sizeof b2);
            printf("one job        %lld + %lld tokens: %s of %s state (memory %lld slots, window %lld slots per "
                   "layer; %lld steps); full attention would hold %s\n",
                   doc, max_new, b1, brt_policy_name(cfg->policy), (long long)need.mem, (long long)need.raw,
                   (long long)need.steps, b2);
            printf("positions      %lld of the model's %lld\n", (long long)p->pos_need, (long long)p->pos_limit);
        }
        if (gpu) {
            human((double)gpu_weights, b1, sizeof b1);
            human((double)gpu_state, b2, sizeof b2);
            printf("on GPUs        weights %s (%s matrices, f32 vectors)%s%s state %s per job\n", b1, f32 ? "f32" : "bf16",
                   doc > 0 ? "; " : "", doc > 0 ? b2 : "", doc > 0 ? brt_dtype_name(gpu_state_dt) : "");
        }
        printf("per stage      %d ranks = %d pipelines x %d stages (%s)\n", p->ranks, p->g.dp, p->g.pp, p->grid_note);
        cli_plan_print_stages(p);
        fflush(stdout); /* the figures first, then why they fail */
        rc = cli_plan_warnings(p, warnings) ? 1 : 0;
    }
    json_decref(warnings);
out:
    if (opened)
        cli_plan_close(p);
    free(p);
    cli_common_free(&c);
    return rc;
}
