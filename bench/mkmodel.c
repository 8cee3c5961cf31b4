/* Write a random Llama-family model folder (config.json + model.safetensors) for benchmarks.
 *   mkmodel --out DIR [--hidden N] [--intermediate N] [--layers N] [--heads N] [--kv-heads N]
 *           [--vocab N] [--max-pos N] [--dtype f32|bf16] [--seed N]
 *           [--beacon [--beacon-window N] [--beacon-stride N] [--beacon-ratio N | --beacon-adapt N]
 *                     [--beacon-attn A]
 *                     [--no-beacon-weights]]
 *           [--longllama [--mem-layers 3,6,9] [--last-context N] [--mem-dtype bfloat16|float32]]
 * Default: the BASELINES "mid" model (hidden 768, intermediate 2048, 12 layers, 12 heads, vocab
 * 32000, f32, max positions 4096; with --longllama max positions default 2048 = the FoT window). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "mkmodel.h"

static const char *const k_help =
    "usage: mkmodel --out DIR [options]\n"
    "\n"
    "Writes a random Llama model folder in Hugging Face layout (config.json + model.safetensors),\n"
    "weights N(0, 0.02) from a fixed seed, norm weights 1. Default: the BASELINES \"mid\" model.\n"
    "\n"
    "  --hidden N            hidden size (768)\n"
    "  --intermediate N      MLP size (2048)\n"
    "  --layers N            layers (12)\n"
    "  --heads N             attention heads (12)\n"
    "  --kv-heads N          key/value heads (= heads)\n"
    "  --vocab N             vocabulary (32000)\n"
    "  --max-pos N           max_position_embeddings (4096; 2048 with --longllama: the FoT window)\n"
    "  --dtype f32|bf16      weight dtype (f32)\n"
    "  --seed N              random seed (42)\n"
    "  --beacon              Activation Beacon v1 fields and beacon weights\n"
    "    --beacon-window N   (1024)   --beacon-stride N (1024)   --beacon-ratio N (8)\n"
    "    --beacon-adapt N    ratios 2..128 chosen per document by adapt-N (instead of --beacon-ratio)\n"
    "    --beacon-attn A     step-expansion | segmentation | full-coverage (step-expansion)\n"
    "    --no-beacon-weights config fields only (the runtime then uses the official init)\n"
    "  --longllama           LongLLaMA (FoT) fields: model_type longllama\n"
    "    --mem-layers L      memory layers, e.g. 3,6,9 (3,6,9)\n"
    "    --last-context N    last_context_length (1024)\n"
    "    --mem-dtype D       bfloat16 | float32 (bfloat16)\n";

static int parse_int(const char *s, long lo, long hi, int32_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = (int32_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    mk_spec s = mk_spec_mid();
    const char *out = NULL;
    int max_pos_set = 0, kv_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, used = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_help, stdout);
            return 0;
        } else if (!strcmp(a, "--beacon"))
            s.kind = MK_BEACON_V1, used = 0;
        else if (!strcmp(a, "--longllama"))
            s.kind = MK_FOT, used = 0;
        else if (!strcmp(a, "--no-beacon-weights"))
            s.beacon_weights = 0, used = 0;
        else if (strncmp(a, "--", 2) != 0 || !strstr(k_help, a) || a[2] == '\0') {
            fprintf(stderr, "mkmodel: unknown option %s (see mkmodel --help)\n", a);
            return 2;
        } else if (!v)
            bad = 1;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--hidden"))
            bad = parse_int(v, 2, 1 << 16, &s.hidden);
        else if (!strcmp(a, "--intermediate"))
            bad = parse_int(v, 1, 1 << 18, &s.intermediate);
        else if (!strcmp(a, "--layers"))
            bad = parse_int(v, 1, 1024, &s.layers);
        else if (!strcmp(a, "--heads"))
            bad = parse_int(v, 1, 4096, &s.heads);
        else if (!strcmp(a, "--kv-heads"))
            bad = parse_int(v, 1, 4096, &s.kv_heads), kv_set = 1;
        else if (!strcmp(a, "--vocab"))
            bad = parse_int(v, 3, 1 << 22, &s.vocab);
        else if (!strcmp(a, "--max-pos"))
            bad = parse_int(v, 1, 1 << 30, &s.max_pos), max_pos_set = 1;
        else if (!strcmp(a, "--seed")) {
            char *end;
            s.seed = strtoull(v, &end, 10);
            bad = !*v || *end;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32") || !strcmp(v, "F32") || !strcmp(v, "float32"))
                s.dtype = BRT_DT_F32;
            else if (!strcmp(v, "bf16") || !strcmp(v, "BF16") || !strcmp(v, "bfloat16"))
                s.dtype = BRT_DT_BF16;
            else
                bad = 1;
        } else if (!strcmp(a, "--beacon-window"))
            bad = parse_int(v, 1, 1 << 24, &s.beacon_window);
        else if (!strcmp(a, "--beacon-stride"))
            bad = parse_int(v, 1, 1 << 24, &s.beacon_stride);
        else if (!strcmp(a, "--beacon-ratio"))
            bad = parse_int(v, 0, 1 << 20, &s.beacon_ratio);
        else if (!strcmp(a, "--beacon-adapt"))
            bad = parse_int(v, 1, 1 << 30, &s.beacon_adapt);
        else if (!strcmp(a, "--beacon-attn"))
            s.beacon_attn = v;
        else if (!strcmp(a, "--last-context"))
            bad = parse_int(v, 1, 1 << 30, &s.last_context);
        else if (!strcmp(a, "--mem-dtype"))
            s.mem_dtype = v;
        else if (!strcmp(a, "--mem-layers")) {
            s.n_mem_layers = 0;
            for (const char *p = v; *p && !bad;) {
                char *end;
                long l = strtol(p, &end, 10);
                if (end == p || l < 0 || s.n_mem_layers >= MK_MAX_MEM_LAYERS)
                    bad = 1;
                else
                    s.mem_layers[s.n_mem_layers++] = (int32_t)l;
                p = *end == ',' ? end + 1 : end;
                if (*end && *end != ',')
                    bad = 1;
            }
        } else {
            fprintf(stderr, "mkmodel: unknown option %s (see mkmodel --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "mkmodel: bad value for %s\n", a);
            return 2;
        }
        i += used;
    }
    if (!out) {
        fprintf(stderr, "mkmodel: --out DIR is required (see mkmodel --help)\n");
        return 2;
    }
    if (!kv_set)
        s.kv_heads = s.heads;
    if (s.kind == MK_FOT && !max_pos_set)
        s.max_pos = 2048;
    if (s.kind == MK_FOT)
        for (int i = 0; i < s.n_mem_layers; i++)
            if (s.mem_layers[i] >= s.layers) {
                fprintf(stderr, "mkmodel: memory layer %d is not below --layers %d\n", s.mem_layers[i], s.layers);
                return 2;
            }
    double t0 = brt_now();
    int64_t params = 0, bytes = 0;
    brt_err err;
    if (mk_write(&s, out, &params, &bytes, &err) != BRT_OK) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return 1;
    }
    printf("mkmodel: wrote %s: %s, hidden %d, intermediate %d, %d layers, %d heads (%d kv), vocab %d, %lld "
           "parameters (%.1f MiB %s) in %.1f s\n",
           out, s.kind == MK_BEACON_V1 ? "beacon v1" : s.kind == MK_FOT ? "longllama" : "llama", s.hidden,
           s.intermediate, s.layers, s.heads, s.kv_heads, s.vocab, (long long)params, bytes / 1048576.0,
           brt_dtype_name(s.dtype), brt_now() - t0);
    return 0;
}
