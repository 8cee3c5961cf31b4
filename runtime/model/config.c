#include "model/config.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *brt_policy_name(brt_policy_kind k)
{
    switch (k) {
    case BRT_POLICY_FULL: return "full";
    case BRT_POLICY_BEACON_V1: return "beacon_v1";
    case BRT_POLICY_BEACON_V2: return "beacon_v2";
    case BRT_POLICY_FOT: return "fot";
    }
    return "?";
}

/* Every key a supported config may carry. Informational ones are accepted and ignored
 * (their value cannot change the numbers); everything else is read below. */
static const char *const k_known[] = {
    /* informational */
    "architectures", "auto_map", "initializer_range", "use_cache", "torch_dtype",
    "transformers_version", "_name_or_path", "pad_token_id", "attention_dropout",
    "tokenizer_class", "gradient_checkpoint_every_ith", "torch_attention", "mem_attention_grouping",
    "retrieval_topk", "beacon_stride_mix", "max_window_layers", "sliding_window",
    "bos_token_id", "eos_token_id", "return_dict", "output_attentions", "output_hidden_states",
    "is_encoder_decoder", "tie_encoder_decoder", "torchscript", "use_return_dict",
    /* read */
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
    "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings", "attention_bias",
    "mlp_bias", "hidden_act", "pretraining_tp", "use_sliding_window",
    /* activation beacon v1 and v2 */
    "beacon_window", "beacon_stride", "beacon_attn", "beacon_attend_previous", "beacon_attend_prev",
    "beacon_ratio", "beacon_ratio_mix", "beacon_param", "retrieval_method", "beacon_pos",
    "beacon_sink_size", "beacon_embed_init", "beacon_parallel_window",
    /* LongLLaMA / FoT */
    "mem_layers", "mem_dtype", "mem_positionals", "last_context_length",
    /* beaconrt's own override key (flags --policy) */
    "policy",
};

static int is_known(const char *k)
{
    for (size_t i = 0; i < sizeof k_known / sizeof k_known[0]; i++)
        if (!strcmp(k, k_known[i]))
            return 1;
    return 0;
}

typedef struct {
    const json_t *o;
    const char *what;
    brt_err *err;
    const json_t *ov;     /* the overrides merged over the file (may be NULL) */
    const json_t *labels; /* key -> where its override came from (a flag); may be NULL */
} reader;

/* Who gave key its value: the label of the flag (or preset) whose override set it, or NULL when the
 * value is the file's. A label only counts for a key the overrides really set. */
static const char *origin(reader *r, const char *key)
{
    if (!key || !r->labels || !json_object_get(r->ov, key))
        return NULL;
    json_t *l = json_object_get(r->labels, key);
    return json_is_string(l) ? json_string_value(l) : NULL;
}

/* An error about key, prefixed with whoever gave the value: a value from a flag is blamed on the
 * flag, not on config.json the user never edited, and a malformed one is bad input (INVALID, a
 * usage error) rather than a malformed file; other statuses (e.g. UNSUPPORTED) stay. */
static brt_status ferr(reader *r, const char *key, brt_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static brt_status ferr(reader *r, const char *key, brt_status st, const char *fmt, ...)
{
    char msg[BRT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *o = origin(r, key);
    if (o && st == BRT_ERR_FORMAT)
        st = BRT_ERR_INVALID;
    return brt_errf(r->err, st, "%s: %s", o ? o : r->what, msg);
}

/* The first of two keys a combined check is about that a flag set (else the first). */
static const char *blame2(reader *r, const char *a, const char *b)
{
    return origin(r, a) || !origin(r, b) ? a : b;
}

static brt_status need_int(reader *r, const char *key, int64_t lo, int64_t hi, int32_t *out)
{
    json_t *v = json_object_get(r->o, key);
    if (!v)
        return ferr(r, key, BRT_ERR_FORMAT, "required field \"%s\" is missing", key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return ferr(r, key, BRT_ERR_FORMAT, "\"%s\" must be an integer in [%lld, %lld]", key, (long long)lo,
                    (long long)hi);
    *out = (int32_t)json_integer_value(v);
    return BRT_OK;
}

static brt_status opt_int(reader *r, const char *key, int64_t lo, int64_t hi, int32_t def, int32_t *out)
{
    json_t *v = json_object_get(r->o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return BRT_OK;
    }
    return need_int(r, key, lo, hi, out);
}

static brt_status opt_num(reader *r, const char *key, double def, double *out)
{
    json_t *v = json_object_get(r->o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return BRT_OK;
    }
    if (!json_is_number(v))
        return ferr(r, key, BRT_ERR_FORMAT, "\"%s\" must be a number", key);
    *out = json_number_value(v);
    return BRT_OK;
}

static brt_status opt_bool(reader *r, const char *key, int def, int *out)
{
    json_t *v = json_object_get(r->o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return BRT_OK;
    }
    if (!json_is_boolean(v))
        return ferr(r, key, BRT_ERR_FORMAT, "\"%s\" must be true or false", key);
    *out = json_is_true(v);
    return BRT_OK;
}

static const char *opt_str(reader *r, const char *key, const char *def)
{
    json_t *v = json_object_get(r->o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

static brt_status check_str(reader *r, const char *key)
{
    json_t *v = json_object_get(r->o, key);
    if (v && !json_is_null(v) && !json_is_string(v))
        return ferr(r, key, BRT_ERR_FORMAT, "\"%s\" must be a string", key);
    return BRT_OK;
}

static brt_status unsupported(reader *r, const char *key, const char *why)
{
    char val[200] = "(absent: the default)";
    json_t *v = json_object_get(r->o, key);
    if (v && !json_is_null(v)) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s) {
            snprintf(val, sizeof val, "%s", s);
            free(s);
        }
    }
    return ferr(r, key, BRT_ERR_UNSUPPORTED, "\"%s\": %s is not supported%s%s", key, val, why ? ": " : "",
                why ? why : "");
}

static int has(reader *r, const char *key)
{
    json_t *v = json_object_get(r->o, key);
    return v && !json_is_null(v);
}

static brt_status parse_ratio_mix(reader *r, brt_beacon_config *b)
{
    BRT_TRY(check_str(r, "beacon_ratio_mix"));
    const char *mix = opt_str(r, "beacon_ratio_mix", "step-random");
    if (!strcmp(mix, "step-random"))
        b->ratio_mix = BRT_RATIO_MIX_STEP_RANDOM;
    else if (!strcmp(mix, "instance-random"))
        b->ratio_mix = BRT_RATIO_MIX_INSTANCE_RANDOM;
    else if (!strcmp(mix, "sequence"))
        b->ratio_mix = BRT_RATIO_MIX_SEQUENCE;
    else if (!strncmp(mix, "adapt-", 6)) {
        char *end;
        long f = strtol(mix + 6, &end, 10);
        if (*end || end == mix + 6 || f < 0 || f > (1L << 30))
            return ferr(r, "beacon_ratio_mix", BRT_ERR_FORMAT, "\"beacon_ratio_mix\": \"%s\" is not adapt-<tokens>",
                        mix);
        b->ratio_mix = BRT_RATIO_MIX_ADAPT;
        b->adapt_extra = (int32_t)f;
    } else
        return unsupported(r, "beacon_ratio_mix", "use step-random/instance-random (one ratio), sequence or adapt-N");
    if (b->n_ratios > 1 &&
        (b->ratio_mix == BRT_RATIO_MIX_STEP_RANDOM || b->ratio_mix == BRT_RATIO_MIX_INSTANCE_RANDOM))
        return unsupported(r, "beacon_ratio_mix",
                           "random ratio draws over several ratios (the official code draws from numpy's "
                           "PCG64, which beaconrt does not reproduce); use adapt-N (the paper's inference "
                           "mode), sequence, or a single ratio");
    return BRT_OK;
}

static brt_status parse_int_list(reader *r, const char *key, int32_t *vals, int max, int *n, int64_t lo,
                                 int64_t hi)
{
    json_t *v = json_object_get(r->o, key);
    *n = 0;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < lo || json_integer_value(v) > hi)
            return ferr(r, key, BRT_ERR_FORMAT, "\"%s\" must be in [%lld, %lld]", key, (long long)lo,
                        (long long)hi);
        vals[(*n)++] = (int32_t)json_integer_value(v);
        return BRT_OK;
    }
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > (size_t)max)
        return ferr(r, key, BRT_ERR_FORMAT, "\"%s\" must be an integer or a list of 1..%d integers", key, max);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_integer(e) || json_integer_value(e) < lo || json_integer_value(e) > hi)
            return ferr(r, key, BRT_ERR_FORMAT, "\"%s\"[%zu] must be an integer in [%lld, %lld]", key, i,
                        (long long)lo, (long long)hi);
        vals[(*n)++] = (int32_t)json_integer_value(e);
    }
    return BRT_OK;
}

static brt_status parse_beacon(reader *r, int version, brt_model_config *c)
{
    brt_beacon_config *b = &c->beacon;
    memset(b, 0, sizeof *b);
    BRT_TRY(opt_int(r, "beacon_window", 1, 1 << 24, 1024, &b->window));
    /* v1 stride is a list (one value supported: several need a random stride draw); v2 an int */
    int32_t strides[BRT_MAX_RATIOS];
    int ns = 0;
    if (has(r, "beacon_stride")) {
        BRT_TRY(parse_int_list(r, "beacon_stride", strides, BRT_MAX_RATIOS, &ns, 1, 1 << 24));
        if (ns != 1)
            return unsupported(r, "beacon_stride", "several strides need a random draw per window; give one");
        b->stride = strides[0];
    } else
        b->stride = b->window;
    if (b->stride > b->window)
        return ferr(r, blame2(r, "beacon_stride", "beacon_window"), BRT_ERR_FORMAT,
                    "\"beacon_stride\" %d is larger than \"beacon_window\" %d", b->stride, b->window);
    if (has(r, "beacon_ratio"))
        BRT_TRY(parse_int_list(r, "beacon_ratio", b->ratios, BRT_MAX_RATIOS, &b->n_ratios, 0, 1 << 20));
    else {
        b->n_ratios = version == 1 ? 1 : 3;
        if (version == 1)
            b->ratios[0] = 8;
        else
            b->ratios[0] = 2, b->ratios[1] = 4, b->ratios[2] = 8;
    }
    BRT_TRY(parse_ratio_mix(r, b));
    BRT_TRY(check_str(r, "beacon_attn"));
    const char *attn = opt_str(r, "beacon_attn", version == 1 ? "step-expansion" : "full-coverage");
    if (!strcmp(attn, "step-expansion"))
        b->attn = BRT_BEACON_ATTN_STEP_EXPANSION;
    else if (!strcmp(attn, "segmentation"))
        b->attn = BRT_BEACON_ATTN_SEGMENTATION;
    else if (!strcmp(attn, "full-coverage"))
        b->attn = BRT_BEACON_ATTN_FULL_COVERAGE;
    else
        return unsupported(r, "beacon_attn", "use step-expansion, segmentation or full-coverage");
    BRT_TRY(opt_bool(r, version == 1 ? "beacon_attend_previous" : "beacon_attend_prev", 1, &b->attend_prev));
    if (version == 1 && has(r, "beacon_attend_prev"))
        return ferr(r, "beacon_attend_prev", BRT_ERR_FORMAT, "\"beacon_attend_prev\" is a v2 field in a v1 config");
    if (version == 2 && has(r, "beacon_attend_previous"))
        return ferr(r, "beacon_attend_previous", BRT_ERR_FORMAT,
                    "\"beacon_attend_previous\" is a v1 field in a v2 config");
    json_t *param = json_object_get(r->o, "beacon_param");
    if (!param || json_is_null(param))
        b->param = version == 1 ? (BRT_BEACON_PARAM_Q | BRT_BEACON_PARAM_K | BRT_BEACON_PARAM_V |
                                   BRT_BEACON_PARAM_O)
                                : 0; /* the v2 class default is [] */
    else {
        if (!json_is_array(param))
            return ferr(r, "beacon_param", BRT_ERR_FORMAT, "\"beacon_param\" must be a list of q,k,v,o,mlp");
        size_t i;
        json_t *e;
        json_array_foreach(param, i, e)
        {
            const char *s = json_is_string(e) ? json_string_value(e) : "";
            if (!strcmp(s, "q")) b->param |= BRT_BEACON_PARAM_Q;
            else if (!strcmp(s, "k")) b->param |= BRT_BEACON_PARAM_K;
            else if (!strcmp(s, "v")) b->param |= BRT_BEACON_PARAM_V;
            else if (!strcmp(s, "o")) b->param |= BRT_BEACON_PARAM_O;
            else if (!strcmp(s, "mlp")) b->param |= BRT_BEACON_PARAM_MLP;
            else
                return ferr(r, "beacon_param", BRT_ERR_FORMAT, "\"beacon_param\"[%zu] must be one of q,k,v,o,mlp", i);
        }
    }
    if (has(r, "retrieval_method"))
        return unsupported(r, "retrieval_method", "BM25 retrieval-guided ratios are not implemented");
    /* one ratio is used as given (a ratio that does not divide the stride gives stride / r beacons,
     * as in the official code); several are filtered like the official code, which must leave one */
    if (b->n_ratios > 1) {
        int usable = 0;
        for (int i = 0; i < b->n_ratios; i++) {
            int32_t q = b->ratios[i];
            usable |= q <= b->stride && (q == 0 || b->stride % q == 0 ||
                                         (version == 1 && b->attn == BRT_BEACON_ATTN_FULL_COVERAGE));
        }
        if (!usable)
            return unsupported(r, "beacon_ratio", "no listed ratio divides beacon_stride");
    }
    for (int i = 0; i < b->n_ratios; i++)
        if (b->ratios[i] > b->stride && b->n_ratios == 1)
            return unsupported(r, "beacon_ratio", "a ratio larger than beacon_stride gives no beacons");
    if (version == 2) {
        BRT_TRY(check_str(r, "beacon_pos"));
        const char *pos = opt_str(r, "beacon_pos", "interleave");
        if (!strcmp(pos, "interleave"))
            b->pos = BRT_BEACON_POS_INTERLEAVE;
        else if (!strcmp(pos, "append"))
            b->pos = BRT_BEACON_POS_APPEND;
        else
            return unsupported(r, "beacon_pos", "use interleave or append");
        if (b->stride != b->window)
            return unsupported(r, "beacon_stride",
                               "v2 needs beacon_stride == beacon_window (interleave requires it; append "
                               "with a smaller stride crashes in the official code)");
        if (b->pos == BRT_BEACON_POS_INTERLEAVE && b->attn != BRT_BEACON_ATTN_FULL_COVERAGE)
            return unsupported(r, "beacon_attn",
                               "interleaved beacons need full-coverage (the official step-expansion mask for "
                               "interleave indexes the wrong columns)");
        BRT_TRY(opt_int(r, "beacon_sink_size", 0, 1 << 20, 0, &b->sink_size));
        BRT_TRY(check_str(r, "beacon_embed_init"));
        const char *init = opt_str(r, "beacon_embed_init", "eos");
        if (!strcmp(init, "bos"))
            b->embed_init_bos = 1;
        else if (strcmp(init, "eos") != 0)
            return unsupported(r, "beacon_embed_init", "use eos or bos");
        int32_t pw;
        BRT_TRY(opt_int(r, "beacon_parallel_window", 0, 1 << 20, 1, &pw));
        if (pw != 1)
            return unsupported(r, "beacon_parallel_window", "only 1 window at a time");
    } else {
        b->pos = BRT_BEACON_POS_APPEND;
        for (const char *const *k = (const char *const[]){"beacon_pos", "beacon_sink_size",
                                                           "beacon_embed_init", "beacon_parallel_window", NULL};
             *k; k++)
            if (has(r, *k))
                return ferr(r, *k, BRT_ERR_FORMAT, "\"%s\" is a v2 field in a v1 config", *k);
    }
    return BRT_OK;
}

static brt_status parse_fot(reader *r, brt_model_config *c)
{
    brt_fot_config *f = &c->fot;
    memset(f, 0, sizeof *f);
    json_t *ml = json_object_get(r->o, "mem_layers");
    if (ml && !json_is_null(ml)) {
        if (!json_is_array(ml))
            return ferr(r, "mem_layers", BRT_ERR_FORMAT, "\"mem_layers\" must be a list of layer indices");
        size_t i;
        json_t *e;
        json_array_foreach(ml, i, e)
        {
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= c->n_layers)
                return ferr(r, "mem_layers", BRT_ERR_FORMAT, "\"mem_layers\"[%zu] must be a layer index in [0, %d)", i,
                            c->n_layers);
            if (!f->is_mem_layer[json_integer_value(e)])
                f->n_mem_layers++;
            f->is_mem_layer[json_integer_value(e)] = 1;
        }
    }
    BRT_TRY(check_str(r, "mem_dtype"));
    const char *md = opt_str(r, "mem_dtype", "bfloat16");
    if (!strcmp(md, "bfloat16"))
        f->mem_bf16 = 1;
    else if (strcmp(md, "float32") != 0)
        return unsupported(r, "mem_dtype", "use bfloat16 or float32");
    BRT_TRY(opt_bool(r, "mem_positionals", 1, &f->mem_positionals));
    BRT_TRY(opt_int(r, "last_context_length", 1, 1 << 30, 1024, &f->last_context_length));
    f->window = c->max_pos;
    json_t *g = json_object_get(r->o, "mem_attention_grouping");
    if (g && !json_is_null(g) &&
        (!json_is_array(g) || json_array_size(g) != 2 || !json_is_integer(json_array_get(g, 0)) ||
         !json_is_integer(json_array_get(g, 1)) || json_integer_value(json_array_get(g, 0)) < 1 ||
         json_integer_value(json_array_get(g, 1)) < 1))
        return ferr(r, "mem_attention_grouping", BRT_ERR_FORMAT,
                    "\"mem_attention_grouping\" must be null or [heads, queries] (positive)");
    int ta;
    BRT_TRY(opt_bool(r, "torch_attention", 0, &ta));
    if (c->rope_scaling != BRT_ROPE_NONE)
        return unsupported(r, "rope_scaling", "LongLLaMA requires rope_scaling null");
    return BRT_OK;
}

/* Add one end-of-generation id (an integer in the vocabulary); 1 when it is not one. */
static int add_eos(brt_model_config *c, const json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->vocab_size)
        return 1;
    const int32_t id = (int32_t)json_integer_value(v);
    for (int32_t i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return 0;
    if (c->n_eos < BRT_MAX_EOS)
        c->eos_ids[c->n_eos++] = id;
    return 0;
}

int brt_config_is_eos(const brt_model_config *c, int32_t id)
{
    for (int32_t i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return 1;
    return 0;
}

void brt_config_rope_inv_freq(const brt_model_config *c, float *inv_freq)
{
    const int32_t d = c->head_dim;
    for (int32_t i = 0; i < d / 2; i++) /* transformers: 1 / theta^(arange(0, d, 2) / d), in float32 */
        inv_freq[i] = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)d);
    if (c->rope_scaling != BRT_ROPE_LLAMA3)
        return;
    /* transformers' _compute_llama3_parameters, in float32 as it runs: wavelengths beyond the
     * original context are slowed by the factor, those under old/high_freq_factor kept, the band
     * between blended */
    const float factor = (float)c->rope_factor, lo = (float)c->rope_low_freq, hi = (float)c->rope_high_freq;
    const float old = (float)c->rope_orig_max;
    const float lo_wavelen = old / lo, hi_wavelen = old / hi;
    for (int32_t i = 0; i < d / 2; i++) {
        const float f = inv_freq[i], wavelen = (float)(2.0 * 3.14159265358979323846) / f;
        float g = wavelen > lo_wavelen ? f / factor : f;
        if (!(wavelen < hi_wavelen) && !(wavelen > lo_wavelen)) {
            const float smooth = (old / wavelen - lo) / (hi - lo);
            g = (1.0f - smooth) * g / factor + smooth * g;
        }
        inv_freq[i] = g;
    }
}

brt_status brt_config_from_json(const json_t *cfg_in, const json_t *overrides, const char *what,
                                brt_model_config *c, brt_err *err)
{
    memset(c, 0, sizeof *c);
    if (!json_is_object(cfg_in))
        return brt_errf(err, BRT_ERR_FORMAT, "%s: not a JSON object", what);
    json_t *cfg = json_deep_copy(cfg_in);
    if (!cfg)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    /* the overrides less their origin labels, which are not config fields */
    json_t *ov = overrides ? json_copy((json_t *)overrides) : NULL;
    const json_t *labels = NULL;
    if (ov && json_is_object(ov)) {
        labels = json_object_get(overrides, BRT_CONFIG_ORIGIN_KEY);
        json_object_del(ov, BRT_CONFIG_ORIGIN_KEY);
    }
    if (overrides && (!ov || json_object_update(cfg, ov) != 0)) {
        json_decref(ov);
        json_decref(cfg);
        return brt_errf(err, BRT_ERR_INVALID, "%s: overrides are not a JSON object", what);
    }
    reader rd = {cfg, what, err, ov, json_is_object(labels) ? labels : NULL}, *r = &rd;
    brt_status st = BRT_OK;
    const char *key;
    json_t *val;
    json_object_foreach(cfg, key, val)
    {
        if (!is_known(key)) {
            st = ferr(r, key, BRT_ERR_UNSUPPORTED,
                      "unknown field \"%s\" (beaconrt does not know what it changes, so it refuses to guess)", key);
            goto out;
        }
    }
#define TRY(x)                \
    do {                      \
        if ((st = (x)) != BRT_OK) \
            goto out;         \
    } while (0)
    TRY(check_str(r, "model_type"));
    const char *mt = opt_str(r, "model_type", NULL);
    if (!mt) {
        st = ferr(r, "model_type", BRT_ERR_FORMAT, "required field \"model_type\" is missing");
        goto out;
    }
    if (strcmp(mt, "llama") && strcmp(mt, "mistral") && strcmp(mt, "qwen2") && strcmp(mt, "longllama")) {
        st = unsupported(r, "model_type", "beaconrt runs Llama-family models (llama, mistral, qwen2, longllama)");
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    TRY(need_int(r, "vocab_size", 1, 1 << 24, &c->vocab_size));
    TRY(need_int(r, "hidden_size", 1, 1 << 20, &c->hidden));
    TRY(need_int(r, "intermediate_size", 1, 1 << 22, &c->intermediate));
    TRY(need_int(r, "num_hidden_layers", 1, BRT_MAX_LAYERS, &c->n_layers));
    TRY(need_int(r, "num_attention_heads", 1, 1 << 12, &c->n_heads));
    TRY(opt_int(r, "num_key_value_heads", 1, 1 << 12, c->n_heads, &c->n_kv_heads));
    if (c->n_heads % c->n_kv_heads != 0) {
        st = ferr(r, blame2(r, "num_key_value_heads", "num_attention_heads"), BRT_ERR_FORMAT,
                  "num_attention_heads %d is not a multiple of num_key_value_heads %d", c->n_heads, c->n_kv_heads);
        goto out;
    }
    if (has(r, "head_dim"))
        TRY(need_int(r, "head_dim", 1, 1 << 12, &c->head_dim));
    else {
        if (c->hidden % c->n_heads != 0) {
            st = ferr(r, blame2(r, "hidden_size", "num_attention_heads"), BRT_ERR_FORMAT,
                      "hidden_size %d is not a multiple of num_attention_heads %d", c->hidden, c->n_heads);
            goto out;
        }
        c->head_dim = c->hidden / c->n_heads;
    }
    if (c->head_dim % 2 != 0) {
        st = ferr(r, has(r, "head_dim") ? "head_dim" : blame2(r, "hidden_size", "num_attention_heads"), BRT_ERR_FORMAT,
                  "head dimension %d must be even for RoPE", c->head_dim);
        goto out;
    }
    TRY(need_int(r, "max_position_embeddings", 1, 1 << 30, &c->max_pos));
    double eps, theta;
    TRY(opt_num(r, "rms_norm_eps", 1e-6, &eps));
    TRY(opt_num(r, "rope_theta", 10000.0, &theta));
    if (!(eps > 0 && eps < 1) || !(theta > 1)) {
        st = ferr(r, blame2(r, "rms_norm_eps", "rope_theta"), BRT_ERR_FORMAT,
                  "rms_norm_eps must be in (0,1) and rope_theta > 1");
        goto out;
    }
    c->rms_eps = (float)eps;
    c->rope_theta = theta;
    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        json_t *ty = json_object_get(rs, "type");
        if (!ty)
            ty = json_object_get(rs, "rope_type");
        json_t *fa = json_object_get(rs, "factor");
        if (!json_is_object(rs) || !json_is_string(ty) || !json_is_number(fa) || json_number_value(fa) < 1) {
            st = ferr(r, "rope_scaling", BRT_ERR_FORMAT,
                      "\"rope_scaling\" must be null or {\"type\", \"factor\" >= 1}");
            goto out;
        }
        const char *kind = json_string_value(ty);
        c->rope_factor = json_number_value(fa);
        if (!strcmp(kind, "linear"))
            c->rope_scaling = BRT_ROPE_LINEAR;
        else if (!strcmp(kind, "llama3")) {
            json_t *lo = json_object_get(rs, "low_freq_factor"), *hi = json_object_get(rs, "high_freq_factor"),
                   *om = json_object_get(rs, "original_max_position_embeddings");
            if (!json_is_number(lo) || !json_is_number(hi) || !json_is_integer(om) || json_number_value(lo) <= 0 ||
                json_number_value(hi) <= json_number_value(lo) || json_integer_value(om) <= 0 ||
                json_integer_value(om) > INT32_MAX) {
                st = ferr(r, "rope_scaling", BRT_ERR_FORMAT,
                          "llama3 \"rope_scaling\" needs low_freq_factor > 0, high_freq_factor > low_freq_factor and "
                          "an integer original_max_position_embeddings > 0");
                goto out;
            }
            c->rope_scaling = BRT_ROPE_LLAMA3;
            c->rope_low_freq = json_number_value(lo);
            c->rope_high_freq = json_number_value(hi);
            c->rope_orig_max = (int32_t)json_integer_value(om);
        } else if (!strcmp(kind, "default"))
            c->rope_factor = 1;
        else {
            st = unsupported(r, "rope_scaling", "RoPE scaling other than linear and llama3 (dynamic, yarn, longrope)");
            goto out;
        }
    }
    TRY(opt_bool(r, "tie_word_embeddings", 0, &c->tie_embeddings));
    /* torch_dtype only says how the checkpoint is stored (the weights' own dtypes rule when they are
     * read); plan and inspect size a checkpoint they do not have from it. Informational, so a value
     * this runtime has no element type for ("auto") leaves the default rather than failing. */
    c->weight_dtype = BRT_CONFIG_DEFAULT_WEIGHT_DTYPE;
    const char *tdt = opt_str(r, "torch_dtype", NULL);
    if (tdt && brt_config_parse_dtype(tdt, &c->weight_dtype))
        c->weight_dtype_given = 1;
    int ab, mb;
    TRY(opt_bool(r, "attention_bias", 0, &ab));
    TRY(opt_bool(r, "mlp_bias", 0, &mb));
    if (mb) {
        st = unsupported(r, "mlp_bias", NULL);
        goto out;
    }
    if (!strcmp(mt, "qwen2")) {
        c->qkv_bias = 1; /* Qwen2 always has q/k/v biases and no o bias */
        if (has(r, "attention_bias")) {
            st = ferr(r, "attention_bias", BRT_ERR_FORMAT, "\"attention_bias\" is not a qwen2 field");
            goto out;
        }
    } else if (ab)
        c->qkv_bias = c->o_bias = 1; /* HF Llama: bias on q, k, v and o */
    TRY(check_str(r, "hidden_act"));
    const char *act = opt_str(r, "hidden_act", "silu");
    if (strcmp(act, "silu") != 0) {
        st = unsupported(r, "hidden_act", "only silu (SwiGLU) is implemented");
        goto out;
    }
    int32_t tp;
    TRY(opt_int(r, "pretraining_tp", 1, 1 << 10, 1, &tp));
    if (tp != 1) {
        st = unsupported(r, "pretraining_tp", "the official code raises for pretraining_tp > 1");
        goto out;
    }
    int sw;
    TRY(opt_bool(r, "use_sliding_window", 0, &sw));
    if (sw || (!strcmp(mt, "mistral") && has(r, "sliding_window"))) {
        st = unsupported(r, sw ? "use_sliding_window" : "sliding_window", "sliding-window attention");
        goto out;
    }
    /* special ids: eos may be a list (first entry, as the official beacon init does) */
    json_t *bos = json_object_get(cfg, "bos_token_id"), *eos = json_object_get(cfg, "eos_token_id");
    /* checked as the file's integers, before narrowing: 2^32 + 1 is not id 1 */
    const json_int_t bos_v = json_is_integer(bos) ? json_integer_value(bos) : 1;
    c->bos_id = bos_v >= 0 && bos_v < c->vocab_size ? (int32_t)bos_v : -1;
    int eos_bad = 0;
    c->n_eos = 0;
    if (json_is_array(eos) && json_array_size(eos) > 0) { /* every one ends generation (Llama-3.1) */
        for (size_t i = 0; i < json_array_size(eos); i++)
            eos_bad |= add_eos(c, json_array_get(eos, i));
    } else if (json_is_integer(eos))
        eos_bad |= add_eos(c, eos);
    else if (!eos || json_is_null(eos) || (json_is_array(eos) && json_array_size(eos) == 0))
        c->eos_ids[c->n_eos++] = 2 < c->vocab_size ? 2 : 0;
    else
        eos_bad = 1;
    c->eos_id = c->n_eos > 0 ? c->eos_ids[0] : -1;
    if (c->bos_id < 0 || c->eos_id < 0 || eos_bad) {
        st = ferr(r, blame2(r, "bos_token_id", "eos_token_id"), BRT_ERR_FORMAT,
                  "bos_token_id/eos_token_id out of the vocabulary");
        goto out;
    }

    /* which long-context policy */
    int is_fot = !strcmp(mt, "longllama") || has(r, "mem_layers") || has(r, "last_context_length");
    int is_beacon = has(r, "beacon_window") || has(r, "beacon_ratio");
    int v2 = has(r, "beacon_pos") || has(r, "beacon_sink_size") || has(r, "beacon_embed_init") ||
             has(r, "beacon_attend_prev") || has(r, "beacon_parallel_window") ||
             json_is_integer(json_object_get(cfg, "beacon_stride"));
    const char *forced = opt_str(r, "policy", NULL);
    if (forced) {
        if (!strcmp(forced, "full"))
            is_fot = is_beacon = 0;
        else if (!strcmp(forced, "beacon_v1"))
            is_beacon = 1, v2 = 0, is_fot = 0;
        else if (!strcmp(forced, "beacon_v2"))
            is_beacon = 1, v2 = 1, is_fot = 0;
        else if (!strcmp(forced, "fot"))
            is_fot = 1, is_beacon = 0;
        else {
            st = unsupported(r, "policy", "use full, beacon_v1, beacon_v2 or fot");
            goto out;
        }
    }
    if (is_fot && is_beacon) {
        /* blame a flag that brought in one side, if one did */
        static const char *const sides[] = {"policy", "mem_layers", "last_context_length", "beacon_window",
                                            "beacon_ratio", NULL};
        const char *k = "policy";
        for (const char *const *m = sides; *m; m++)
            if (origin(r, *m)) {
                k = *m;
                break;
            }
        st = ferr(r, k, BRT_ERR_FORMAT, "the config mixes Activation Beacon and LongLLaMA fields");
        goto out;
    }
    if (is_fot) {
        c->policy = BRT_POLICY_FOT;
        TRY(parse_fot(r, c));
    } else if (is_beacon) {
        c->policy = v2 ? BRT_POLICY_BEACON_V2 : BRT_POLICY_BEACON_V1;
        TRY(parse_beacon(r, v2 ? 2 : 1, c));
    } else if (forced) {
        c->policy = BRT_POLICY_FULL; /* --policy full on a long-context checkpoint: its fields rest */
    } else {
        c->policy = BRT_POLICY_FULL;
        static const char *const only[] = {"beacon_stride", "beacon_attn", "beacon_param", "beacon_ratio_mix",
                                           "beacon_attend_previous", "beacon_attend_prev", "beacon_pos",
                                           "beacon_sink_size", "beacon_embed_init", "beacon_parallel_window",
                                           "mem_dtype", "mem_positionals", NULL};
        for (const char *const *k = only; *k; k++)
            if (has(r, *k)) {
                st = ferr(r, *k, BRT_ERR_FORMAT, "\"%s\" without the rest of its long-context config", *k);
                goto out;
            }
    }
#undef TRY
out:
    json_decref(ov);
    json_decref(cfg);
    return st;
}

int brt_config_parse_dtype(const char *name, brt_dtype *out)
{
    static const struct {
        const char *name;
        brt_dtype dt;
    } k[] = {{"bfloat16", BRT_DT_BF16}, {"bf16", BRT_DT_BF16}, {"float16", BRT_DT_F16}, {"half", BRT_DT_F16},
             {"f16", BRT_DT_F16},       {"float32", BRT_DT_F32}, {"float", BRT_DT_F32}, {"f32", BRT_DT_F32}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(name, k[i].name)) {
            *out = k[i].dt;
            return 1;
        }
    return 0;
}

brt_status brt_config_load(const char *dir, const json_t *overrides, brt_model_config *out, brt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    BRT_TRY(brt_config_load_file(path, overrides, out, err));
    /* generation_config.json may name more end-of-generation ids (Llama-3-Instruct: <|eot_id|>) */
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return BRT_OK;
    fclose(f);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    if (!g)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
    json_t *eos = json_object_get(g, "eos_token_id");
    int bad = 0;
    if (json_is_array(eos))
        for (size_t i = 0; i < json_array_size(eos); i++)
            bad |= add_eos(out, json_array_get(eos, i));
    else if (eos && !json_is_null(eos))
        bad = add_eos(out, eos);
    json_decref(g);
    if (bad)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: eos_token_id must be an id or a list of ids in the vocabulary [0, %d)",
                        path, out->vocab_size);
    return BRT_OK;
}

brt_status brt_config_load_file(const char *path, const json_t *overrides, brt_model_config *out, brt_err *err)
{
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    if (!cfg) {
        FILE *f = fopen(path, "r");
        if (!f)
            return brt_errf(err, BRT_ERR_NOT_FOUND, "%s: cannot open (not a Hugging Face model folder?)", path);
        fclose(f);
        return brt_errf(err, BRT_ERR_FORMAT, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
    }
    brt_status st = brt_config_from_json(cfg, overrides, path, out, err);
    json_decref(cfg);
    return st;
}

brt_status brt_config_beacon_defaults(int version, json_t *ov, brt_err *err)
{
    if (!json_is_object(ov))
        return brt_errf(err, BRT_ERR_INVALID, "overrides must be an object");
    json_object_set_new(ov, "policy", json_string(version == 1 ? "beacon_v1" : "beacon_v2"));
    return BRT_OK;
}
