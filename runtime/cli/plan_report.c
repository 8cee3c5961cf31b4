/* What plan and inspect report for one deployment (cli.h: cli_plan). Both commands lay the model
 * out here, with the same weights count (brt_weight_count_stage), grid, budgets and job state, so
 * for the same model and options they print the same figures: a model folder with its weights is
 * counted from the tensors as stored, a config alone (the folder's, or a preset's model_config) from
 * the tensors it implies in its torch_dtype. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "engine/stage.h"

/* The least KV budget a stage runs with: the CPU default never goes below it, and a GPU stage whose
 * weights leave less fails at start (cluster/node.c). */
#define MIN_STAGE_BUDGET ((int64_t)256 << 20)

static double mib(int64_t b) { return b / 1048576.0; }

static int has_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The model: its folder when it has config.json (with the weights when it has them too), else the
 * preset's model_config, for planning a deployment whose checkpoint is not on this machine. */
static int open_model(cli_plan *p, cli_common *c, const char *weight_dtype)
{
    brt_err err;
    const int folder = has_file(c->model, "config.json");
    if (folder || !c->model_config)
        snprintf(p->config_path, sizeof p->config_path, "%s/config.json", c->model);
    else
        snprintf(p->config_path, sizeof p->config_path, "%s", c->model_config);
    p->have_weights = folder && (has_file(c->model, "model.safetensors") ||
                                 has_file(c->model, "model.safetensors.index.json"));
    if (p->have_weights) { /* the whole folder, checked as every command checks it */
        if (brt_model_open(c->model, c->overrides, 0, &p->model, &err) != BRT_OK)
            return cli_fail(p->cmd, &err);
        p->cfg = p->model.cfg;
    } else if (brt_config_load_file(p->config_path, c->overrides, &p->cfg, &err) != BRT_OK)
        return cli_fail(p->cmd, &err);
    p->dtype = p->cfg.weight_dtype;
    p->dtype_from = p->cfg.weight_dtype_given ? "torch_dtype" : "default";
    if (weight_dtype) {
        brt_config_parse_dtype(weight_dtype, &p->dtype); /* checked by cli_plan_open */
        p->dtype_from = "--weight-dtype";
        if (p->have_weights)
            fprintf(stderr, "beaconrt %s: note: --weight-dtype is not used: %s has its weights, counted in their own "
                            "dtypes\n",
                    p->cmd, c->model);
    }
    return 0;
}

/* Positions one job occupies: the highest position id the policy's planner gives any row over the
 * job's real call pattern (the prompt, then one token at a time), + 1. The last generated token
 * counts as if fed too: it has its place in the sequence (under plain attention this is prompt +
 * max_tokens, the rule batch requests are held to in api/job.c). */
static brt_status positions_needed(const brt_model_config *cfg, int64_t prompt, int64_t max_new, int32_t chunk,
                                   int64_t *need, brt_err *err)
{
    const brt_policy_ops *ops = brt_policy_ops_for(cfg->policy);
    brt_plan pl;
    brt_plan_init(&pl, cfg);
    const int64_t total = prompt + max_new;
    int32_t *dummy = calloc((size_t)(total > 0 ? total : 1), sizeof *dummy); /* the planner only copies ids */
    if (!dummy)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    int64_t avail = prompt;
    brt_status st = BRT_OK;
    *need = 0;
    for (;;) {
        brt_step s;
        memset(&s, 0, sizeof s);
        int r = ops->plan_next(&pl, cfg, dummy, avail, chunk, &s, err);
        if (r < 0) {
            st = err->status != BRT_OK ? err->status : BRT_ERR_INTERNAL;
            break;
        }
        if (r == 0) {
            if (avail >= total)
                break;
            avail++;
            continue;
        }
        for (int32_t i = 0; i < s.n_rows; i++)
            if (s.pos[i] + 1 > *need)
                *need = s.pos[i] + 1;
        brt_step_free_arrays(&s);
    }
    free(dummy);
    return st;
}

/* The positions the model was trained on: max_position_embeddings (beacon v2 with linear RoPE
 * scaling stretches them by its factor, as the official code counts them when it picks a ratio). */
static int64_t positions_limit(const brt_model_config *cfg)
{
    if (cfg->policy == BRT_POLICY_BEACON_V2 && cfg->rope_scaling == BRT_ROPE_LINEAR)
        return (int64_t)(cfg->max_pos * cfg->rope_factor);
    return cfg->max_pos;
}

/* Per stage of a pp-stage pipeline over p->ranks ranks: weights, budget, one job, jobs that fit. */
static void lay_out(cli_plan *p)
{
    const brt_model_config *cfg = &p->cfg;
    const brt_st_set *files = p->have_weights ? &p->model.files : NULL;
    p->fit_min = -1;
    for (int32_t s = 0; s < p->g.pp; s++) {
        cli_stage_row *r = &p->rows[s];
        memset(r, 0, sizeof *r);
        r->a = p->g.layers[s];
        r->b = p->g.layers[s + 1];
        const int first = s == 0, last = s == p->g.pp - 1;
        brt_weight_count_stage(cfg, files, p->dtype, r->a, r->b, first, last, &r->w);
        if (p->gpu) { /* weights in their GPU dtype, activation buffers, the budget the runtime would pick */
            r->weights = brt_weight_count_device_bytes(&r->w, p->dev_es);
            r->acts = brt_stage_activation_bytes(cfg, p->max_rows, last);
            /* the state cache's device tier comes out of what is left, as the runtime takes it */
            const int64_t avail =
                brt_node_gpu_kv_budget(p->gpu_mem, 1, r->weights + r->acts + ((int64_t)64 << 20)) - p->cache_dev;
            r->budget = p->kv_budget > 0 ? p->kv_budget : avail;
            r->weights_fit = avail >= MIN_STAGE_BUDGET;
        } else { /* this machine's memory shared by all the ranks, as beaconrt would choose it */
            r->weights = r->w.bytes;
            r->budget = p->kv_budget > 0 ? p->kv_budget : brt_node_default_kv_budget(p->ranks, r->weights);
            const int64_t share = brt_node_default_kv_budget(p->ranks, 0); /* a rank's memory, no weights */
            r->weights_fit = p->kv_budget > 0 || share - r->weights >= MIN_STAGE_BUDGET;
        }
        if (r->budget < 0)
            r->budget = 0;
        r->job = p->doc > 0 ? brt_plan_job_bytes(cfg, &p->need, r->a, r->b, p->block_bytes, p->state_dt) : 0;
        r->fit = r->job > 0 ? r->budget / r->job : -1;
        if (r->fit >= 0 && (p->fit_min < 0 || r->fit < p->fit_min))
            p->fit_min = r->fit;
    }
}

static int fits(const cli_plan *p)
{
    for (int32_t s = 0; s < p->g.pp; s++)
        if (!p->rows[s].weights_fit || p->rows[s].fit == 0)
            return 0;
    return 1;
}

/* --ranks alone: the fewest pipeline stages whose weights (and one job, given a length) fit, the
 * other ranks replicas; when no split fits, the most stages (the most memory per layer). */
static int choose_grid(cli_plan *p, brt_err *err)
{
    const int32_t max_pp = p->cfg.n_layers < BRT_MAX_STAGES ? p->cfg.n_layers : BRT_MAX_STAGES;
    int32_t last_ok = 0;
    for (int32_t pp = 1; pp <= p->ranks && pp <= max_pp; pp++) {
        if (p->ranks % pp)
            continue;
        BRT_TRY(brt_grid_init(&p->g, p->ranks, 0, pp, p->ranks / pp, &p->cfg, err));
        lay_out(p);
        last_ok = pp;
        if (fits(p)) {
            snprintf(p->grid_note, sizeof p->grid_note,
                     "the fewest stages whose weights%s fit, the other ranks replicas: run with --pp %d --dp %d",
                     p->doc > 0 ? " and one job" : "", pp, p->ranks / pp);
            return BRT_OK;
        }
    }
    if (!last_ok)
        return brt_errf(err, BRT_ERR_INVALID, "--ranks %d: no pipeline of at most %d stages divides it", p->ranks,
                        max_pp);
    BRT_TRY(brt_grid_init(&p->g, p->ranks, 0, last_ok, p->ranks / last_ok, &p->cfg, err));
    lay_out(p);
    snprintf(p->grid_note, sizeof p->grid_note, "no split of %d ranks fits; showing the most stages, --pp %d --dp %d",
             p->ranks, last_ok, p->ranks / last_ok);
    return BRT_OK;
}

int cli_plan_open(cli_plan *p, cli_common *c, const char *cmd, const char *weight_dtype, int64_t doc, int64_t max_new,
                  int32_t ranks)
{
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->doc = doc;
    p->max_new = max_new;
    p->fit_min = -1;
    p->cache_dev = c->node.cache_dev_bytes;
    p->cache_host = c->node.cache_host_bytes;
    p->cache_disk = c->node.cache_dir ? (c->node.cache_disk_bytes > 0 ? c->node.cache_disk_bytes : (int64_t)64 << 30) : 0;
    brt_dtype dt;
    if (weight_dtype && !brt_config_parse_dtype(weight_dtype, &dt)) {
        fprintf(stderr, "beaconrt %s: --weight-dtype must be bf16, f16 or f32\n", cmd);
        return 2;
    }
    int rc = open_model(p, c, weight_dtype);
    if (rc)
        return rc;
    const brt_model_config *cfg = &p->cfg;
    brt_err err;
    p->gpu = c->node.device && !strcmp(c->node.device, "cuda");
    p->f32 = c->node.precision && !strcmp(c->node.precision, "f32");
    p->dev_es = p->f32 ? 4 : 2;
    p->state_dt = p->gpu && !p->f32 ? BRT_DT_BF16 : BRT_DT_F32;
    p->gpu_mem = (int64_t)((c->gpu_mem_gb > 0 ? c->gpu_mem_gb : 80) * 1073741824.0);
    p->kv_budget = c->node.kv_budget;
    p->chunk = c->node.prefill_chunk > 0 ? c->node.prefill_chunk : 512;
    const int32_t step_rows = brt_policy_ops_for(cfg->policy)->max_step_rows(cfg, p->chunk);
    p->max_rows = c->node.max_rows > 0 ? c->node.max_rows : (step_rows > 2048 ? step_rows : 2048);
    p->block_bytes = brt_node_block_bytes(cfg);
    if (doc > 0) {
        if (brt_plan_state_need(cfg, doc, max_new, p->chunk, &p->need, &err) != BRT_OK ||
            positions_needed(cfg, doc, max_new, p->chunk, &p->pos_need, &err) != BRT_OK) {
            cli_plan_close(p);
            return cli_fail(cmd, &err);
        }
        p->pos_limit = positions_limit(cfg);
    }
    /* the grid: --pp/--dp flags win (checked against the ranks); --ranks alone picks one; else the
     * preset's, as a launch of its ranks would run it; else one rank */
    const int32_t fpp = c->node.pp, fdp = c->node.dp; /* flags only: cli_common_finish leaves presets to us */
    const int preset_grid = c->preset_pp > 0 || c->preset_dp > 0;
    const int32_t preset_pp = c->preset_pp > 0 ? c->preset_pp : 1, preset_dp = c->preset_dp > 0 ? c->preset_dp : 1;
    const int32_t preset_ranks = c->ranks > 0 ? c->ranks : preset_grid ? preset_pp * preset_dp : 0;
    brt_status st;
    if (fpp > 0 || fdp > 0) {
        if (ranks > 0)
            p->ranks = ranks;
        else if (fpp > 0 && fdp > 0)
            p->ranks = fpp * fdp;
        else /* one flag: the other from the preset's ranks (or one pipeline / one stage) */
            p->ranks = preset_ranks > 0 ? preset_ranks : fpp > 0 ? fpp : fdp;
        snprintf(p->grid_note, sizeof p->grid_note, "as --pp/--dp ask");
        if ((st = brt_grid_init(&p->g, p->ranks, 0, fpp, fdp, cfg, &err)) == BRT_OK)
            lay_out(p);
    } else if (ranks > 0) {
        p->ranks = ranks;
        st = choose_grid(p, &err);
    } else if (preset_ranks > 0) {
        p->ranks = preset_ranks;
        if (preset_grid && preset_pp * preset_dp == p->ranks) {
            snprintf(p->grid_note, sizeof p->grid_note, "the preset's parallel.pp x dp");
            st = brt_grid_init(&p->g, p->ranks, 0, preset_pp, preset_dp, cfg, &err);
        } else { /* what a launch of these ranks does with this preset: one pipeline of them */
            snprintf(p->grid_note, sizeof p->grid_note, "%s",
                     preset_grid ? "the preset's pp x dp is not its ranks: one pipeline, as a launch would run it"
                                 : "one pipeline of the preset's ranks");
            st = brt_grid_init(&p->g, p->ranks, 0, 0, 0, cfg, &err);
        }
        if (st == BRT_OK)
            lay_out(p);
        else /* its message names --pp/--dp: say where they came from */
            brt_err_prefix(&err, "%s \"parallel\": ", c->config_path);
    } else {
        p->ranks = 1;
        if ((st = brt_grid_init(&p->g, 1, 0, 1, 1, cfg, &err)) == BRT_OK)
            lay_out(p);
    }
    if (st != BRT_OK) {
        cli_plan_close(p);
        return cli_fail(cmd, &err);
    }
    return 0;
}

void cli_plan_close(cli_plan *p)
{
    if (p->have_weights)
        brt_model_close(&p->model);
    p->have_weights = 0;
}

void cli_plan_print_stages(const cli_plan *p)
{
    printf("%-6s %-9s %12s %s%14s %14s %10s\n", "stage", "layers", p->gpu ? "GPU weights" : "weights MiB",
           p->gpu ? "   acts MiB " : "", "KV budget MiB", "job state MiB", p->gpu ? "jobs/GPU" : "jobs fit");
    for (int32_t s = 0; s < p->g.pp; s++) {
        const cli_stage_row *r = &p->rows[s];
        char lay[32], fits_s[32] = "-";
        snprintf(lay, sizeof lay, "%d-%d", r->a, r->b - 1);
        if (r->fit >= 0)
            snprintf(fits_s, sizeof fits_s, "%lld", (long long)r->fit);
        if (p->gpu)
            printf("%-6d %-9s %12.1f %11.1f %14.1f %14.3f %10s\n", s, lay, mib(r->weights), mib(r->acts), mib(r->budget),
                   mib(r->job), fits_s);
        else
            printf("%-6d %-9s %12.1f %14.1f %14.3f %10s\n", s, lay, mib(r->weights), mib(r->budget), mib(r->job), fits_s);
    }
    if ((p->cache_dev || p->cache_host || p->cache_disk) && p->g.pp > 0) {
        /* a document's cached state is at most its job's state: how many each tier keeps (the
         * device tier holds whole blocks, as the job's state does) */
        const int64_t tier[3] = {p->cache_dev, p->cache_host, p->cache_disk};
        int64_t docs[3] = {-1, -1, -1};
        for (int32_t s = 0; s < p->g.pp; s++) {
            const int64_t j = p->rows[s].job;
            for (int t = 0; t < 3 && j > 0; t++)
                if (docs[t] < 0 || tier[t] / j < docs[t])
                    docs[t] = tier[t] / j;
        }
        static const char *const name[3] = {"device memory", "host memory", "on disk"};
        char line[512];
        size_t n = 0;
        for (int t = 0; t < 3; t++) {
            if (!tier[t])
                continue;
            char size[64];
            if (t == 2)
                snprintf(size, sizeof size, "%.1f GiB", tier[t] / 1073741824.0);
            else
                snprintf(size, sizeof size, "%.1f MiB", mib(tier[t]));
            if (docs[t] >= 0)
                n += (size_t)snprintf(line + n, sizeof line - n, "%s%lld %s%s (%s)", n ? ", " : "", (long long)docs[t],
                                      t < 2 ? "in " : "", name[t], size);
            else
                n += (size_t)snprintf(line + n, sizeof line - n, "%s%s %s%s", n ? ", " : "", size, t < 2 ? "in " : "",
                                      name[t]);
            if (n >= sizeof line)
                break;
        }
        const char *cpu = tier[0] && !p->gpu ? "; the CPU backend's device memory is host memory" : "";
        if (docs[0] >= 0 || docs[1] >= 0 || docs[2] >= 0)
            printf("state cache, documents of this length kept per stage: %s%s\n", line, cpu);
        else
            printf("state cache per stage: %s (give --doc-tokens for how many documents fit)%s\n", line, cpu);
    }
}

json_t *cli_plan_stages_json(const cli_plan *p)
{
    json_t *a = json_array();
    for (int32_t s = 0; s < p->g.pp; s++) {
        const cli_stage_row *r = &p->rows[s];
        json_t *o = json_object();
        json_object_set_new(o, "stage", json_integer(s));
        json_object_set_new(o, "layer_begin", json_integer(r->a));
        json_object_set_new(o, "layer_end", json_integer(r->b));
        json_object_set_new(o, "weight_params", json_integer(r->w.params));
        json_object_set_new(o, "weight_bytes", json_integer(r->weights));
        if (p->gpu)
            json_object_set_new(o, "activation_bytes", json_integer(r->acts));
        json_object_set_new(o, "kv_budget_bytes", json_integer(r->budget));
        json_object_set_new(o, "job_state_bytes", json_integer(r->job));
        json_object_set_new(o, "jobs_fit", json_integer(r->fit));
        if (r->job > 0 && (p->cache_dev || p->cache_host || p->cache_disk)) {
            json_object_set_new(o, "cached_documents_device", json_integer(p->cache_dev / r->job));
            json_object_set_new(o, "cached_documents_host", json_integer(p->cache_host / r->job));
            json_object_set_new(o, "cached_documents_disk", json_integer(p->cache_disk / r->job));
        }
        json_array_append_new(a, o);
    }
    return a;
}

static void warn(const cli_plan *p, json_t *warnings, const char *msg)
{
    fprintf(stderr, "beaconrt %s: warning: %s\n", p->cmd, msg);
    if (warnings)
        json_array_append_new(warnings, json_string(msg));
}

int cli_plan_warnings(const cli_plan *p, json_t *warnings)
{
    char m[1024];
    int n = 0;
    const brt_model_config *cfg = &p->cfg;
    if (p->doc > 0 && p->pos_need > p->pos_limit) {
        const char *hint =
            cfg->policy == BRT_POLICY_FULL ? "plain attention reads no further; a long-context policy (--policy "
                                             "beacon_v1, ...) does"
            : cfg->policy == BRT_POLICY_FOT ? "last_context_length must fit the model's positions (--last-context-length)"
                                            : "memory beacons plus the open window take a position each; a larger "
                                              "beacon ratio (--beacon-ratio) or a shorter document fits";
        snprintf(m, sizeof m,
                 "a document of %lld tokens + %lld generated needs %lld positions under %s, more than the model's %lld "
                 "(max_position_embeddings): %s",
                 (long long)p->doc, (long long)p->max_new, (long long)p->pos_need, brt_policy_name(cfg->policy),
                 (long long)p->pos_limit, hint);
        warn(p, warnings, m);
        n++;
    }
    for (int32_t s = 0; s < p->g.pp; s++) {
        const cli_stage_row *r = &p->rows[s];
        if (p->gpu && !r->weights_fit) {
            snprintf(m, sizeof m,
                     "stage %d (layers %d-%d): weights %.1f MiB and activations %.1f MiB leave less than %.0f MiB of a "
                     "%.0f GiB GPU for long-context state; the runtime refuses to start it: use more stages (--pp) or "
                     "larger GPUs (--gpu-mem-gb)",
                     s, r->a, r->b - 1, mib(r->weights), mib(r->acts), mib(MIN_STAGE_BUDGET),
                     p->gpu_mem / 1073741824.0);
            warn(p, warnings, m);
            n++;
        } else if (r->fit == 0) {
            snprintf(m, sizeof m,
                     "stage %d (layers %d-%d): one job of %lld tokens needs %.2f MiB of state, more than the "
                     "stage's KV budget of %.2f MiB: no job fits (more stages (--pp), a larger --kv-budget-mb, or a "
                     "shorter document)",
                     s, r->a, r->b - 1, (long long)p->doc, mib(r->job), mib(r->budget));
            warn(p, warnings, m);
            n++;
        }
    }
    return n;
}
