/* beaconrt inspect: what a model folder holds and what running it costs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/policy.h"
#include "model/model.h"
#include "model/weights.h"

static const char *const k_help =
    "usage: beaconrt inspect --model DIR [--doc-tokens L] [--max-tokens N] [--json] [policy options]\n"
    "\n"
    "Prints the architecture, the long-context policy, the parameter count and dtypes, the weights'\n"
    "memory, and the long-context state one job of L document tokens (+ N generated) needs, known\n"
    "before it starts.\n"
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
                                   {"json", no_argument, 0, 'j'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    long long doc = 0, max_new = 0;
    int opt, rc = 1, as_json = 0;
    optind = 1;
    int li = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'L':
        case 'n': {
            long v;
            if (!cli_num(optarg, 0, 1L << 40, &v)) {
                rc = cli_bad_option("inspect", opts, li, opt);
                goto out;
            }
            *(opt == 'L' ? &doc : &max_new) = v;
            break;
        }
        case 'j': as_json = 1; break;
        case 'h': fputs(k_help, stdout); rc = 0; goto out;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            rc = cli_bad_option("inspect", opts, li, opt);
            goto out;
        }
    }
    if (cli_common_finish(&c, "inspect") != 0 || doc < 0 || max_new < 0) {
        rc = 2;
        goto out;
    }
    brt_model m;
    brt_err err;
    if (brt_model_open(c.model, c.overrides, 0, &m, &err) != BRT_OK) {
        rc = cli_fail("inspect", &err);
        goto out;
    }
    const brt_model_config *cfg = &m.cfg;
    int64_t params, bytes;
    brt_model_size(&m, &params, &bytes);
    int64_t by_dt[BRT_DT_COUNT] = {0};
    for (size_t f = 0; f < m.files.n_files; f++)
        for (size_t i = 0; i < m.files.files[f]->n; i++)
            by_dt[m.files.files[f]->tensors[i].dtype] += m.files.files[f]->tensors[i].numel;
    int32_t bb = brt_node_block_bytes(cfg);
    brt_state_need need = {0};
    int64_t state_bytes = 0, gpu_state = 0, gpu_weights = 0;
    /* on GPUs (--device cuda): matrices in bf16 (f32 with --precision f32), vectors f32, state alike */
    const int gpu = c.node.device && !strcmp(c.node.device, "cuda"), f32 = c.node.precision && !strcmp(c.node.precision, "f32");
    const brt_dtype gpu_state_dt = f32 ? BRT_DT_F32 : BRT_DT_BF16;
    if (gpu)
        for (size_t f = 0; f < m.files.n_files; f++)
            for (size_t i = 0; i < m.files.files[f]->n; i++) {
                const brt_st_tensor *t = &m.files.files[f]->tensors[i];
                const int vec = t->ndim == 1 || (t->ndim == 2 && t->shape[0] == 1);
                gpu_weights += t->numel * (vec || f32 ? 4 : 2);
            }
    if (doc > 0) {
        if (brt_plan_state_need(cfg, doc, max_new, 512, &need, &err) != BRT_OK) {
            rc = cli_fail("inspect", &err);
            brt_model_close(&m);
            goto out;
        }
        state_bytes = brt_plan_job_bytes(cfg, &need, 0, cfg->n_layers, bb, BRT_DT_F32);
        gpu_state = brt_plan_job_bytes(cfg, &need, 0, cfg->n_layers, bb, gpu_state_dt);
    }
    const int64_t kv_token = 2LL * cfg->n_layers * cfg->n_kv_heads * cfg->head_dim * 4; /* f32 K+V, every layer */
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(c.model));
        json_object_set_new(o, "model_type", json_string(cfg->model_type));
        json_object_set_new(o, "policy", json_string(brt_policy_name(cfg->policy)));
        json_object_set_new(o, "layers", json_integer(cfg->n_layers));
        json_object_set_new(o, "hidden", json_integer(cfg->hidden));
        json_object_set_new(o, "heads", json_integer(cfg->n_heads));
        json_object_set_new(o, "kv_heads", json_integer(cfg->n_kv_heads));
        json_object_set_new(o, "head_dim", json_integer(cfg->head_dim));
        json_object_set_new(o, "vocab", json_integer(cfg->vocab_size));
        json_object_set_new(o, "parameters", json_integer(params));
        json_object_set_new(o, "weight_bytes", json_integer(bytes));
        json_object_set_new(o, "full_kv_bytes_per_token", json_integer(kv_token));
        if (doc > 0) {
            json_object_set_new(o, "doc_tokens", json_integer(doc));
            json_object_set_new(o, "state_bytes", json_integer(state_bytes));
            json_object_set_new(o, "state_slots_memory", json_integer(need.mem));
            json_object_set_new(o, "state_slots_window", json_integer(need.raw));
            json_object_set_new(o, "steps", json_integer(need.steps));
            if (gpu)
                json_object_set_new(o, "gpu_state_bytes", json_integer(gpu_state));
        }
        if (gpu)
            json_object_set_new(o, "gpu_weight_bytes", json_integer(gpu_weights));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        char b1[32], b2[32];
        printf("model          %s\n", c.model);
        printf("architecture   %s: %d layers, hidden %d, %d heads (%d kv, head dim %d), mlp %d, vocab %d\n",
               cfg->model_type, cfg->n_layers, cfg->hidden, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim,
               cfg->intermediate, cfg->vocab_size);
        printf("               rope theta %g%s, rms eps %g, tied embeddings %s, q/k/v bias %s, max positions %d\n",
               cfg->rope_theta, cfg->rope_scaling ? " (linear scaling)" : "", cfg->rms_eps,
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
        }
        if (gpu) {
            human((double)gpu_weights, b1, sizeof b1);
            human((double)gpu_state, b2, sizeof b2);
            printf("on GPUs        weights %s (%s matrices, f32 vectors)%s%s state %s per job\n", b1, f32 ? "f32" : "bf16",
                   doc > 0 ? "; " : "", doc > 0 ? b2 : "", doc > 0 ? brt_dtype_name(gpu_state_dt) : "");
        }
    }
    brt_model_close(&m);
    rc = 0;
out:
    cli_common_free(&c);
    return rc;
}
