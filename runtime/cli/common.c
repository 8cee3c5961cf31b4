#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include "base/log.h"
#include "cli.h"
#include "model/safetensors.h"

void cli_common_init(cli_common *c)
{
    memset(c, 0, sizeof *c);
    c->overrides = json_object();
    c->node.progress = 1;
}

void cli_common_free(cli_common *c)
{
    json_decref(c->overrides);
    free(c->preset_model);
    free(c->preset_device);
    free(c->preset_precision);
    free(c->model_config);
}

static json_t *int_list(const char *arg)
{
    json_t *a = json_array();
    const char *p = arg;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, json_integer(v));
        p = end;
        if (*p == ',')
            p++;
        else if (*p) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *str_list(const char *arg)
{
    json_t *a = json_array();
    char *dup = strdup(arg), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(a, json_string(t));
    free(dup);
    return a;
}

int cli_num(const char *arg, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (*arg == '\0' || *end || errno || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

int cli_tokens(const char *arg, long long lo, long long hi, long long *out)
{
    /* digits [. digits] [K|M]: parsed by hand, not strtod, so 1.5M is exactly 1500000 */
    const char *p = arg;
    long long whole = 0, frac = 0, frac_div = 1;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (whole > (LLONG_MAX - 9) / 10)
            return 0;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (frac_div >= 1000000000LL) /* 9 decimals: finer than a token of 1M already */
                return 0;
            frac = frac * 10 + (*p - '0');
            frac_div *= 10;
        }
    }
    if (!digits)
        return 0;
    long long mul = 1;
    if (*p == 'K' || *p == 'k')
        mul = 1000, p++;
    else if (*p == 'M' || *p == 'm')
        mul = 1000000, p++;
    if (*p || whole >= LLONG_MAX / mul - 1 || (frac * mul) % frac_div != 0)
        return 0; /* trailing text, overflow, or a fraction of a token */
    long long v = whole * mul + frac * mul / frac_div;
    if (v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

int cli_temperature_ok(double t) { return t >= 0.0 && t <= 2.0; } /* NaN fails both */

int cli_top_p_ok(double p) { return p > 0.0 && p <= 1.0 && (float)p > 0.0f; } /* a float 0 would sample nothing */

/* Sets a config.json key from a flag and records which flag, so that a value the config parser
 * refuses is blamed on the flag (BRT_CONFIG_ORIGIN_KEY) rather than on the model's config.json. */
static void set_key(cli_common *c, const char *key, json_t *val, const char *label)
{
    json_object_set_new(c->overrides, key, val);
    json_t *o = json_object_get(c->overrides, BRT_CONFIG_ORIGIN_KEY);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(c->overrides, BRT_CONFIG_ORIGIN_KEY, o);
    }
    json_object_set_new(o, key, json_string(label));
}

int cli_common_opt(cli_common *c, int opt, const char *arg)
{
    long v;
    json_t *j;
    switch (opt) {
    case 1000: c->model = arg; return 1;
    case 1001: set_key(c, "policy", json_string(arg), "--policy"); return 1;
    case 1002:
    case 1003:
    case 1009:
    case 1024:
        if (!cli_num(arg, 0, 1L << 30, &v))
            return -1;
        if (opt == 1003) { /* a list: an integer stride would mark the config as v2 */
            json_t *l = json_array();
            json_array_append_new(l, json_integer(v));
            set_key(c, "beacon_stride", l, "--beacon-stride");
        } else if (opt == 1002)
            set_key(c, "beacon_window", json_integer(v), "--beacon-window");
        else if (opt == 1009)
            set_key(c, "last_context_length", json_integer(v), "--last-context-length");
        else
            set_key(c, "beacon_sink_size", json_integer(v), "--beacon-sink-size");
        return 1;
    case 1004:
    case 1008:
        if (!(j = int_list(arg)))
            return -1;
        set_key(c, opt == 1004 ? "beacon_ratio" : "mem_layers", j, opt == 1004 ? "--beacon-ratio" : "--mem-layers");
        return 1;
    case 1005: set_key(c, "beacon_ratio_mix", json_string(arg), "--beacon-ratio-mix"); return 1;
    case 1006: set_key(c, "beacon_attn", json_string(arg), "--beacon-attn"); return 1;
    case 1007: set_key(c, "beacon_param", str_list(arg), "--beacon-param"); return 1;
    case 1010: set_key(c, "mem_dtype", json_string(arg), "--mem-dtype"); return 1;
    case 1023: set_key(c, "beacon_pos", json_string(arg), "--beacon-pos"); return 1;
    case 1011: {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
            return -1;
        char key[256], label[300];
        snprintf(key, sizeof key, "%.*s", (int)(eq - arg), arg);
        if (!strcmp(key, BRT_CONFIG_ORIGIN_KEY))
            return -1;
        json_error_t je;
        json_t *val = json_loads(eq + 1, JSON_DECODE_ANY, &je);
        if (!val)
            val = json_string(eq + 1); /* a bare word is a string */
        snprintf(label, sizeof label, "--set %s", key);
        set_key(c, key, val, label);
        return 1;
    }
    case 1012:
        if (!cli_num(arg, 1, 4096, &v))
            return -1;
        c->node.threads = (int)v;
        return 1;
    case 1013: c->node.isa = arg; return 1;
    case 1026:
        if (strcmp(arg, "cpu") && strcmp(arg, "cuda"))
            return -1;
        c->node.device = arg;
        return 1;
    case 1027:
        if (strcmp(arg, "bf16") && strcmp(arg, "f32"))
            return -1;
        c->node.precision = arg;
        return 1;
    case 1014: {
        char *end;
        double mb = strtod(arg, &end);
        if (*end || !(mb > 0))
            return -1;
        c->kv_budget_mb = mb;
        return 1;
    }
    case 1015:
        if (!cli_num(arg, 1, 1 << 20, &v))
            return -1;
        c->node.max_rows = (int32_t)v;
        return 1;
    case 1028:
    case 1030:
    case 1032: {
        char *end;
        double x = strtod(arg, &end);
        if (*end || !(x >= 0) || x > 1e9)
            return -1;
        *(opt == 1028 ? &c->cache_host_mb : opt == 1030 ? &c->cache_disk_gb : &c->cache_dev_mb) = x;
        return 1;
    }
    case 1029:
        if (!*arg)
            return -1;
        c->node.cache_dir = arg;
        return 1;
    case 1031:
        if (!cli_num(arg, 0, 1 << 30, &v))
            return -1;
        c->node.checkpoint_every = (int32_t)v;
        return 1;
    case 1016:
        if (!cli_num(arg, 1, 1 << 20, &v))
            return -1;
        c->node.prefill_chunk = (int32_t)v;
        return 1;
    case 1017:
    case 1018:
        if (!cli_num(arg, 1, 1 << 16, &v))
            return -1;
        if (opt == 1017)
            c->node.pp = (int32_t)v;
        else
            c->node.dp = (int32_t)v;
        return 1;
    case 1019: c->quiet = 1; c->node.progress = 0; return 1;
    case 1025:
        if (!cli_num(arg, 1, 1 << 20, &v))
            return -1;
        c->node.max_jobs = (int32_t)v;
        return 1;
    case 1020: c->config_path = arg; return 1;
    case 1021:
        if (!cli_num(arg, 1, 1 << 16, &v))
            return -1;
        c->node.max_inflight = (int32_t)v;
        return 1;
    case 1022: {
        char *end;
        double t = strtod(arg, &end);
        if (*end || !(t > 0))
            return -1;
        c->node.timeout = t;
        return 1;
    }
    }
    return 0;
}

/* A path written in a preset, relative to the preset file's folder (so a preset means the same files
 * from whatever directory it is used); absolute paths stay as they are. */
static char *preset_path(const char *preset, const char *path)
{
    const char *slash = strrchr(preset, '/');
    if (path[0] == '/' || !slash)
        return strdup(path);
    size_t n = (size_t)(slash - preset) + 1 + strlen(path) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s/%s", (int)(slash - preset), preset, path);
    return out;
}

/* A deployment preset (a JSON file in configs/): model, long-context knobs, parallelism, resources,
 * Slurm settings. Flags given on the command line win over the preset. */
static int apply_preset(cli_common *c, const char *cmd)
{
    json_error_t je;
    json_t *p = json_load_file(c->config_path, 0, &je);
    if (!p) {
        fprintf(stderr, "beaconrt %s: %s: line %d: %s\n", cmd, c->config_path, je.line, je.text);
        return -1;
    }
    static const char *const top[] = {"description", "model", "model_config", "policy", "parallel", "resources",
                                      "slurm", NULL};
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(p, key, v)
    {
        int ok = 0;
        for (const char *const *t = top; *t; t++)
            ok |= !strcmp(key, *t);
        if (!ok) {
            fprintf(stderr, "beaconrt %s: %s: unknown key \"%s\" (known: description, model, model_config, policy, "
                            "parallel, resources, slurm)\n",
                    cmd, c->config_path, key);
            rc = -1;
            goto out;
        }
    }
    json_t *mc = json_object_get(p, "model_config");
    json_t *m = json_object_get(p, "model");
    for (const char *const *k = (const char *const[]){"model", "model_config", NULL}; *k; k++) {
        json_t *pv = json_object_get(p, *k);
        if (pv && (!json_is_string(pv) || !*json_string_value(pv))) {
            fprintf(stderr, "beaconrt %s: %s: \"%s\" must be a path (relative to the preset's folder)\n", cmd,
                    c->config_path, *k);
            rc = -1;
            goto out;
        }
    }
    if (mc) {
        free(c->model_config);
        c->model_config = preset_path(c->config_path, json_string_value(mc));
    }
    if (!c->model && m) {
        c->preset_model = preset_path(c->config_path, json_string_value(m));
        c->model = c->preset_model;
    }
    json_t *pol = json_object_get(p, "policy");
    if (pol) { /* config.json keys; a flag already set wins */
        if (!json_is_object(pol)) {
            fprintf(stderr, "beaconrt %s: %s: \"policy\" must be an object of config.json keys\n", cmd, c->config_path);
            rc = -1;
            goto out;
        }
        char label[4200];
        snprintf(label, sizeof label, "%s \"policy\"", c->config_path);
        json_object_foreach(pol, key, v)
        {
            if (!strcmp(key, BRT_CONFIG_ORIGIN_KEY)) {
                fprintf(stderr, "beaconrt %s: %s: policy.%s is not a config.json key\n", cmd, c->config_path, key);
                rc = -1;
                goto out;
            }
            if (!json_object_get(c->overrides, key))
                set_key(c, key, json_incref(v), label);
        }
    }
    struct {
        const char *sect, *key;
        int kind; /* 0 int32, 1 double */
        void *dst;
    } fields[] = {
        {"parallel", "pp", 0, &c->preset_pp},
        {"parallel", "dp", 0, &c->preset_dp},
        {"parallel", "ranks", 0, &c->ranks},
        {"resources", "threads", 0, &c->node.threads},
        {"resources", "kv_budget_mb", 1, &c->kv_budget_mb},
        {"resources", "state_cache_device_mb", 1, &c->cache_dev_mb},
        {"resources", "state_cache_host_mb", 1, &c->cache_host_mb},
        {"resources", "state_cache_disk_gb", 1, &c->cache_disk_gb},
        {"resources", "checkpoint_every", 0, &c->node.checkpoint_every},
        {"resources", "max_rows", 0, &c->node.max_rows},
        {"resources", "max_inflight", 0, &c->node.max_inflight},
        {"resources", "prefill_chunk", 0, &c->node.prefill_chunk},
        {"resources", "max_jobs", 0, &c->node.max_jobs},
        {"resources", "timeout", 1, &c->node.timeout},
        {"resources", "gpu_mem_gb", 1, &c->gpu_mem_gb},
        {"resources", "gpu_tflops", 1, &c->gpu_tflops},
        {"resources", "device", 2, &c->node.device},
        {"resources", "precision", 2, &c->node.precision},
    };
    for (const char *sect = "parallel"; sect; sect = !strcmp(sect, "parallel") ? "resources" : NULL) {
        json_t *o = json_object_get(p, sect);
        if (!o)
            continue;
        json_object_foreach(o, key, v)
        {
            int known = 0;
            for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
                if (strcmp(fields[i].sect, sect) || strcmp(fields[i].key, key))
                    continue;
                known = 1;
                if (fields[i].kind == 2) { /* a word: device, precision */
                    const char *w = json_string_value(v);
                    int ok = w && (!strcmp(key, "device") ? !strcmp(w, "cpu") || !strcmp(w, "cuda")
                                                          : !strcmp(w, "bf16") || !strcmp(w, "f32"));
                    if (!ok) {
                        fprintf(stderr, "beaconrt %s: %s: %s.%s must be %s\n", cmd, c->config_path, sect, key,
                                !strcmp(key, "device") ? "\"cpu\" or \"cuda\"" : "\"bf16\" or \"f32\"");
                        rc = -1;
                        goto out;
                    }
                    char **keep = !strcmp(key, "device") ? &c->preset_device : &c->preset_precision;
                    if (!*(const char **)fields[i].dst) {
                        free(*keep);
                        *keep = strdup(w);
                        *(const char **)fields[i].dst = *keep;
                    }
                    continue;
                }
                if (!json_is_number(v) || json_number_value(v) < 0) {
                    fprintf(stderr, "beaconrt %s: %s: %s.%s must be a number >= 0\n", cmd, c->config_path, sect, key);
                    rc = -1;
                    goto out;
                }
                if (fields[i].kind == 0 && *(int32_t *)fields[i].dst == 0)
                    *(int32_t *)fields[i].dst = (int32_t)json_number_value(v);
                if (fields[i].kind == 1 && *(double *)fields[i].dst == 0)
                    *(double *)fields[i].dst = json_number_value(v);
            }
            if (!known) {
                fprintf(stderr, "beaconrt %s: %s: unknown key %s.%s\n", cmd, c->config_path, sect, key);
                rc = -1;
                goto out;
            }
        }
    }
out:
    json_decref(p);
    return rc;
}

int cli_common_finish(cli_common *c, const char *cmd)
{
    if (c->config_path && apply_preset(c, cmd) != 0)
        return -1;
    if (c->kv_budget_mb > 0 && c->node.kv_budget == 0)
        c->node.kv_budget = (int64_t)(c->kv_budget_mb * 1048576.0);
    c->node.cache_dev_bytes = (int64_t)(c->cache_dev_mb * 1048576.0);
    c->node.cache_host_bytes = (int64_t)(c->cache_host_mb * 1048576.0);
    c->node.cache_disk_bytes = (int64_t)(c->cache_disk_gb * 1073741824.0);
    /* the preset's grid applies when this launch has its ranks (flags always apply); plan and
     * inspect lay out a deployment, not this launch: they resolve it themselves (cli_plan_open) */
    int world = g_cli_tr ? g_cli_tr->world : 1;
    const int planning = !strcmp(cmd, "plan") || !strcmp(cmd, "inspect");
    if (!planning && !c->node.pp && !c->node.dp && (c->preset_pp || c->preset_dp)) {
        int pp = c->preset_pp > 0 ? c->preset_pp : 1, dp = c->preset_dp > 0 ? c->preset_dp : 1;
        if (pp * dp == world) {
            c->node.pp = c->preset_pp;
            c->node.dp = c->preset_dp;
        } else
            fprintf(stderr, "beaconrt %s: note: %s asks for %d ranks (pp %d x dp %d); this launch has %d, using one "
                            "pipeline of them\n",
                    cmd, c->config_path, pp * dp, pp, dp, world);
    }
    if (!c->model) {
        fprintf(stderr, "beaconrt %s: --model DIR is required (see beaconrt %s --help)\n", cmd, cmd);
        return -1;
    }
    c->node.model_dir = c->model;
    c->node.overrides = c->overrides;
    return 0;
}

char *cli_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int cli_read_ids(const char *spec, int32_t **ids, size_t *n)
{
    char path[4096];
    const char *tensor = "input_ids";
    snprintf(path, sizeof path, "%s", spec);
    char *colon = strrchr(path, ':');
    if (colon && colon[1] && !strchr(colon, '/')) {
        *colon = '\0';
        tensor = spec + (colon - path) + 1;
    }
    brt_st_set set;
    brt_err err;
    if (brt_st_set_open_file(path, &set, &err) != BRT_OK) {
        fprintf(stderr, "beaconrt: %s\n", err.msg);
        return -1;
    }
    const brt_st_tensor *t = brt_st_set_find(&set, tensor);
    int rc = 0;
    if (!t) {
        fprintf(stderr, "beaconrt: %s: no tensor '%s'\n", path, tensor);
        rc = -1;
    } else if (brt_st_read_ids(t, ids, n, &err) != BRT_OK) {
        fprintf(stderr, "beaconrt: %s\n", err.msg);
        rc = -1;
    }
    brt_st_set_close(&set);
    return rc;
}

int cli_check_ids(const char *cmd, const char *spec, const int32_t *ids, size_t n, int32_t vocab)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            fprintf(stderr, "beaconrt %s: error: %s: token id %d at position %zu is out of the model's vocabulary [0, %d)\n",
                    cmd, spec, ids[i], i, vocab);
            return -1;
        }
    return 0;
}

int cli_bad_option(const char *cmd, const struct option *opts, int longindex, int opt)
{
    if (opt != '?' && longindex >= 0 && optarg)
        fprintf(stderr, "beaconrt %s: bad value '%s' for --%s\n", cmd, optarg, opts[longindex].name);
    fprintf(stderr, "see beaconrt %s --help\n", cmd);
    return 2;
}

int cli_fail(const char *cmd, const brt_err *err)
{
    fprintf(stderr, "beaconrt %s: error: %s\n", cmd, err->msg);
    return err->status == BRT_ERR_INVALID ? 2 : 1;
}

int cli_open_coordinator(cli_common *c, const char *cmd, const char *ids_spec, const int32_t *ids, size_t n,
                         brt_node **node, int *rc)
{
    brt_err err;
    *node = NULL;
    if (brt_node_open(&c->node, g_cli_tr, node, &err) != BRT_OK) {
        *rc = cli_fail(cmd, &err);
        if (g_cli_tr && g_cli_tr->world > 1)
            g_cli_tr->abort(g_cli_tr, *rc);
        return 0;
    }
    if ((*node)->grid.rank != 0) { /* a pipeline stage: run until the coordinator is done */
        *rc = brt_node_run(*node, &err) == BRT_OK ? 0 : cli_fail(cmd, &err);
        return 0;
    }
    if (ids_spec && cli_check_ids(cmd, ids_spec, ids, n, (*node)->model.cfg.vocab_size) != 0) {
        *rc = 1;
        if (g_cli_tr && g_cli_tr->world > 1)
            g_cli_tr->abort(g_cli_tr, 1);
        return 0;
    }
    return 1;
}

int cli_run_one_job(brt_node *node, const char *cmd, const brt_job_spec *spec, brt_job *const *done)
{
    const brt_model_config *cfg = &node->model.cfg;
    int64_t tokens = spec->prompt_len + spec->max_new;
    if (cfg->policy == BRT_POLICY_FULL && tokens > cfg->max_pos)
        brt_log_warn("%lld tokens run past the model's %d positions with plain attention (policy full): the model "
                     "was not trained there; a long-context policy (--policy beacon_v1, ...) reads long inputs",
                     (long long)tokens, cfg->max_pos);
    brt_err err;
    brt_job *job;
    if (brt_sched_submit(node->sched, spec, &job, &err) != BRT_OK || brt_node_run(node, &err) != BRT_OK)
        return cli_fail(cmd, &err);
    if (!*done || (*done)->status != BRT_JOB_DONE) {
        fprintf(stderr, "beaconrt %s: error: %s\n", cmd, *done ? (*done)->error : "the job did not finish");
        return 1;
    }
    return 0;
}
