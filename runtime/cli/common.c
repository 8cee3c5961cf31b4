#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

void cli_common_free(cli_common *c) { json_decref(c->overrides); }

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

static int num(const char *arg, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (*arg == '\0' || *end || errno || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

int cli_common_opt(cli_common *c, int opt, const char *arg)
{
    long v;
    json_t *j;
    switch (opt) {
    case 1000: c->model = arg; return 1;
    case 1001: json_object_set_new(c->overrides, "policy", json_string(arg)); return 1;
    case 1002:
    case 1003:
    case 1009:
    case 1024:
        if (!num(arg, 0, 1L << 30, &v))
            return -1;
        if (opt == 1003) /* v1 reads a list, v2 an integer; both parse either */
            json_object_set_new(c->overrides, "beacon_stride", json_integer(v));
        else
            json_object_set_new(c->overrides,
                                opt == 1002 ? "beacon_window" : opt == 1009 ? "last_context_length" : "beacon_sink_size",
                                json_integer(v));
        return 1;
    case 1004:
    case 1008:
        if (!(j = int_list(arg)))
            return -1;
        json_object_set_new(c->overrides, opt == 1004 ? "beacon_ratio" : "mem_layers", j);
        return 1;
    case 1005: json_object_set_new(c->overrides, "beacon_ratio_mix", json_string(arg)); return 1;
    case 1006: json_object_set_new(c->overrides, "beacon_attn", json_string(arg)); return 1;
    case 1007: json_object_set_new(c->overrides, "beacon_param", str_list(arg)); return 1;
    case 1010: json_object_set_new(c->overrides, "mem_dtype", json_string(arg)); return 1;
    case 1023: json_object_set_new(c->overrides, "beacon_pos", json_string(arg)); return 1;
    case 1011: {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
            return -1;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - arg), arg);
        json_error_t je;
        json_t *val = json_loads(eq + 1, JSON_DECODE_ANY, &je);
        if (!val)
            val = json_string(eq + 1); /* a bare word is a string */
        json_object_set_new(c->overrides, key, val);
        return 1;
    }
    case 1012:
        if (!num(arg, 1, 4096, &v))
            return -1;
        c->node.threads = (int)v;
        return 1;
    case 1013: c->node.isa = arg; return 1;
    case 1014: {
        char *end;
        double mb = strtod(arg, &end);
        if (*end || !(mb > 0))
            return -1;
        c->node.kv_budget = (int64_t)(mb * 1048576.0);
        return 1;
    }
    case 1015:
        if (!num(arg, 1, 1 << 20, &v))
            return -1;
        c->node.max_rows = (int32_t)v;
        return 1;
    case 1016:
        if (!num(arg, 1, 1 << 20, &v))
            return -1;
        c->node.prefill_chunk = (int32_t)v;
        return 1;
    case 1017:
    case 1018:
        if (!num(arg, 1, 1 << 16, &v))
            return -1;
        if (opt == 1017)
            c->node.pp = (int32_t)v;
        else
            c->node.dp = (int32_t)v;
        return 1;
    case 1019: c->quiet = 1; c->node.progress = 0; return 1;
    case 1020: c->config_path = arg; return 1;
    case 1021:
        if (!num(arg, 1, 1 << 16, &v))
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

int cli_common_finish(cli_common *c, const char *cmd)
{
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

int cli_fail(const char *cmd, const brt_err *err)
{
    fprintf(stderr, "beaconrt %s: error: %s\n", cmd, err->msg);
    return err->status == BRT_ERR_INVALID ? 2 : 1;
}
