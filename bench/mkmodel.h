/* Random Llama-family model folders for the benchmarks (HF layout: config.json +
 * model.safetensors), shared by mkmodel.c, bench_model.c and bench_longctx.c.
 *
 * Weights are N(0, 0.02) (HF initializer_range), norm weights 1. Every tensor draws from its own
 * xorshift64* stream seeded by (seed, tensor name), so a tensor's values do not depend on which
 * other tensors the folder holds: the base weights of a beacon folder equal those of the plain
 * folder made with the same seed and shapes. */
#ifndef BRT_BENCH_MKMODEL_H
#define BRT_BENCH_MKMODEL_H

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/dtype.h"
#include "base/status.h"
#include "model/safetensors.h"

typedef enum { MK_PLAIN = 0, MK_BEACON_V1, MK_FOT } mk_kind;

#define MK_MAX_MEM_LAYERS 64

typedef struct mk_spec {
    int32_t hidden, intermediate, layers, heads, kv_heads, vocab, max_pos;
    brt_dtype dtype;          /* F32 or BF16 */
    uint64_t seed;
    mk_kind kind;
    /* Activation Beacon v1 */
    int32_t beacon_window, beacon_stride, beacon_ratio;
    int32_t beacon_adapt;     /* N > 0: ratios 2..128 chosen per document by adapt-N (the released
                               * checkpoint's inference mode); 0: beacon_ratio, fixed */
    const char *beacon_attn;  /* step-expansion | segmentation | full-coverage */
    int beacon_weights;       /* write beacon_embed_tokens and beacon_{q,k,v,o}_proj */
    /* LongLLaMA (FoT); max_pos is the FoT window */
    int32_t last_context;
    int32_t mem_layers[MK_MAX_MEM_LAYERS];
    int n_mem_layers;
    const char *mem_dtype;    /* bfloat16 | float32 */
} mk_spec;

/* The BASELINES "mid" model: hidden 768, intermediate 2048, 12 layers, 12 heads, vocab 32000. */
static inline mk_spec mk_spec_mid(void)
{
    mk_spec s;
    memset(&s, 0, sizeof s);
    s.hidden = 768, s.intermediate = 2048, s.layers = 12, s.heads = 12, s.kv_heads = 12, s.vocab = 32000;
    s.max_pos = 4096;
    s.dtype = BRT_DT_F32;
    s.seed = 42;
    s.kind = MK_PLAIN;
    s.beacon_window = 1024, s.beacon_stride = 1024, s.beacon_ratio = 8;
    s.beacon_attn = "step-expansion";
    s.beacon_weights = 1;
    s.last_context = 1024;
    s.mem_layers[0] = 3, s.mem_layers[1] = 6, s.mem_layers[2] = 9;
    s.n_mem_layers = 3;
    s.mem_dtype = "bfloat16";
    return s;
}

/* Activation Beacon v1 as BASELINES runs it: window 1024, stride 1024, ratio 8, step-expansion. */
static inline mk_spec mk_spec_mid_beacon(void)
{
    mk_spec s = mk_spec_mid();
    s.kind = MK_BEACON_V1;
    return s;
}

/* LongLLaMA as BASELINES runs it: window (max_position_embeddings) 2048, last context 1024,
 * memory layers 3, 6, 9. */
static inline mk_spec mk_spec_mid_fot(void)
{
    mk_spec s = mk_spec_mid();
    s.kind = MK_FOT;
    s.max_pos = 2048;
    return s;
}

/* ---- random numbers ---------------------------------------------------------------------- */

static inline uint64_t mk_xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t mk_stream_seed(uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL);
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h ^= h >> 33;
    return h ? h : 0x853c49e6748fea9bULL;
}

/* n values N(0, std) (Box-Muller), or all `constant` when std == 0, into dst as dtype. */
static inline void mk_fill(void *dst, brt_dtype dt, int64_t n, double std, float constant, uint64_t stream)
{
    uint64_t s = stream;
    for (int i = 0; i < 4; i++)
        mk_xorshift(&s);
    for (int64_t i = 0; i < n; i += 2) {
        float v[2] = {constant, constant};
        if (std > 0) {
            double u1 = ((mk_xorshift(&s) >> 11) + 1.0) * (1.0 / 9007199254740993.0); /* (0, 1] */
            double u2 = (mk_xorshift(&s) >> 11) * (1.0 / 9007199254740992.0);
            double r = sqrt(-2.0 * log(u1)) * std, th = 6.283185307179586 * u2;
            v[0] = (float)(r * cos(th));
            v[1] = (float)(r * sin(th));
        }
        for (int k = 0; k < 2 && i + k < n; k++) {
            if (dt == BRT_DT_F32)
                ((float *)dst)[i + k] = v[k];
            else
                ((uint16_t *)dst)[i + k] = brt_f32_to_bf16(v[k]);
        }
    }
}

/* ---- the folder -------------------------------------------------------------------------- */

typedef struct mk_fill_job {
    void *dst;
    brt_dtype dt;
    int64_t n;
    double std;
    float constant;
    uint64_t stream;
} mk_fill_job;

typedef struct mk_tensors {
    brt_st_out_tensor *t;
    char **names;
    mk_fill_job *fill;        /* [n] what mk_fill_all writes into each tensor */
    size_t n, cap;
    int64_t params, bytes;
} mk_tensors;

typedef struct mk_fill_pool {
    mk_tensors *ts;
    size_t next;
    pthread_mutex_t mu;
} mk_fill_pool;

static inline void *mk_fill_worker(void *arg)
{
    mk_fill_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        size_t i = p->next++;
        pthread_mutex_unlock(&p->mu);
        if (i >= p->ts->n)
            return NULL;
        const mk_fill_job *j = &p->ts->fill[i];
        mk_fill(j->dst, j->dt, j->n, j->std, j->constant, j->stream);
    }
}

/* Fill every tensor, tensors spread over the CPUs (each tensor from its own stream: the values do
 * not depend on the threads). */
static inline void mk_fill_all(mk_tensors *ts)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = cpus > 1 ? (cpus < 64 ? (int)cpus : 64) : 1;
    mk_fill_pool p = {ts, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t th[64];
    int started = 0;
    for (int i = 1; i < nt; i++)
        started += pthread_create(&th[started], NULL, mk_fill_worker, &p) == 0;
    mk_fill_worker(&p);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

static inline int mk_add(mk_tensors *ts, const mk_spec *s, const char *name, int64_t rows, int64_t cols, int ndim,
                  double std, float constant)
{
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        brt_st_out_tensor *nt = realloc(ts->t, cap * sizeof *nt);
        if (nt)
            ts->t = nt;
        char **nn = nt ? realloc(ts->names, cap * sizeof *nn) : NULL;
        if (nn)
            ts->names = nn;
        mk_fill_job *nf = nn ? realloc(ts->fill, cap * sizeof *nf) : NULL;
        if (nf)
            ts->fill = nf;
        if (!nt || !nn || !nf)
            return -1;
        ts->cap = cap;
    }
    int64_t numel = rows * cols;
    size_t es = brt_dtype_size(s->dtype);
    void *data = malloc((size_t)numel * es);
    char *nm = strdup(name);
    if (!data || !nm) {
        free(data);
        free(nm);
        return -1;
    }
    ts->fill[ts->n] = (mk_fill_job){data, s->dtype, numel, std, constant, mk_stream_seed(s->seed, name)};
    brt_st_out_tensor *t = &ts->t[ts->n];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dtype = s->dtype;
    t->ndim = ndim;
    if (ndim == 1)
        t->shape[0] = cols;
    else
        t->shape[0] = rows, t->shape[1] = cols;
    t->data = data;
    ts->names[ts->n] = nm;
    ts->n++;
    ts->params += numel;
    ts->bytes += numel * (int64_t)es;
    return 0;
}

static inline void mk_tensors_free(mk_tensors *ts)
{
    for (size_t i = 0; i < ts->n; i++) {
        free((void *)ts->t[i].data);
        free(ts->names[i]);
    }
    free(ts->t);
    free(ts->names);
    free(ts->fill);
    memset(ts, 0, sizeof *ts);
}

static json_t *mk_config_json(const mk_spec *s)
{
    json_t *c = json_object();
    const int fot = s->kind == MK_FOT;
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(fot ? "LongLlamaForCausalLM" : "LlamaForCausalLM"));
    json_object_set_new(c, "architectures", arch);
    json_object_set_new(c, "model_type", json_string(fot ? "longllama" : "llama"));
    json_object_set_new(c, "vocab_size", json_integer(s->vocab));
    json_object_set_new(c, "hidden_size", json_integer(s->hidden));
    json_object_set_new(c, "intermediate_size", json_integer(s->intermediate));
    json_object_set_new(c, "num_hidden_layers", json_integer(s->layers));
    json_object_set_new(c, "num_attention_heads", json_integer(s->heads));
    json_object_set_new(c, "num_key_value_heads", json_integer(s->kv_heads));
    json_object_set_new(c, "max_position_embeddings", json_integer(s->max_pos));
    json_object_set_new(c, "hidden_act", json_string("silu"));
    json_object_set_new(c, "rms_norm_eps", json_real(1e-5));
    json_object_set_new(c, "rope_theta", json_real(10000.0));
    json_object_set_new(c, "rope_scaling", json_null());
    json_object_set_new(c, "tie_word_embeddings", json_false());
    json_object_set_new(c, "bos_token_id", json_integer(1));
    json_object_set_new(c, "eos_token_id", json_integer(2));
    json_object_set_new(c, "initializer_range", json_real(0.02));
    json_object_set_new(c, "torch_dtype", json_string(s->dtype == BRT_DT_BF16 ? "bfloat16" : "float32"));
    json_object_set_new(c, "use_cache", json_true());
    if (!fot) {
        json_object_set_new(c, "attention_bias", json_false());
        json_object_set_new(c, "pretraining_tp", json_integer(1));
    }
    if (s->kind == MK_BEACON_V1) {
        json_object_set_new(c, "beacon_window", json_integer(s->beacon_window));
        json_t *st = json_array(), *ra = json_array(), *pa = json_array();
        json_array_append_new(st, json_integer(s->beacon_stride));
        if (s->beacon_adapt > 0)
            for (int r = 2; r <= 128; r *= 2)
                json_array_append_new(ra, json_integer(r));
        else
            json_array_append_new(ra, json_integer(s->beacon_ratio));
        for (const char *p = "qkvo"; *p; p++) {
            char one[2] = {*p, 0};
            json_array_append_new(pa, json_string(one));
        }
        json_object_set_new(c, "beacon_stride", st);
        json_object_set_new(c, "beacon_stride_mix", json_string("step-random"));
        json_object_set_new(c, "beacon_ratio", ra);
        char mix[32] = "step-random";
        if (s->beacon_adapt > 0)
            snprintf(mix, sizeof mix, "adapt-%d", s->beacon_adapt);
        json_object_set_new(c, "beacon_ratio_mix", json_string(mix));
        json_object_set_new(c, "beacon_attn", json_string(s->beacon_attn));
        json_object_set_new(c, "beacon_attend_previous", json_true());
        json_object_set_new(c, "beacon_param", pa);
        json_object_set_new(c, "retrieval_method", json_null());
        json_object_set_new(c, "retrieval_topk", json_null());
    }
    if (fot) {
        json_t *ml = json_array();
        for (int i = 0; i < s->n_mem_layers; i++)
            json_array_append_new(ml, json_integer(s->mem_layers[i]));
        json_object_set_new(c, "mem_layers", ml);
        json_object_set_new(c, "last_context_length", json_integer(s->last_context));
        json_object_set_new(c, "mem_dtype", json_string(s->mem_dtype));
        json_object_set_new(c, "mem_positionals", json_true());
        json_object_set_new(c, "mem_attention_grouping", json_null());
        json_object_set_new(c, "torch_attention", json_false());
        json_object_set_new(c, "gradient_checkpoint_every_ith", json_integer(1));
    }
    return c;
}

static inline brt_status mk_mkdir_p(const char *dir, brt_err *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return brt_errf(err, BRT_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return brt_errf(err, BRT_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
    return BRT_OK;
}

/* Write DIR/config.json only. */
static inline brt_status mk_write_config(const mk_spec *s, const char *dir, brt_err *err)
{
    BRT_TRY(mk_mkdir_p(dir, err));
    char path[8192];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *c = mk_config_json(s);
    int rc = json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(c);
    if (rc != 0)
        return brt_errf(err, BRT_ERR_IO, "%s: cannot write", path);
    return BRT_OK;
}

/* Write DIR/config.json and DIR/model.safetensors. params/bytes (may be NULL): what was written. */
static inline brt_status mk_write(const mk_spec *s, const char *dir, int64_t *params, int64_t *bytes, brt_err *err)
{
    if (s->dtype != BRT_DT_F32 && s->dtype != BRT_DT_BF16)
        return brt_errf(err, BRT_ERR_INVALID, "mkmodel: dtype must be F32 or BF16");
    if (s->hidden % s->heads || s->heads % s->kv_heads || ((s->hidden / s->heads) & 1))
        return brt_errf(err, BRT_ERR_INVALID, "mkmodel: hidden %d / heads %d / kv heads %d do not divide (even head dim)",
                        s->hidden, s->heads, s->kv_heads);
    BRT_TRY(mk_write_config(s, dir, err));
    const int64_t D = s->hidden, hd = s->hidden / s->heads, kvd = (int64_t)s->kv_heads * hd, I = s->intermediate;
    const double sd = 0.02;
    mk_tensors ts = {0};
    char n[256];
    int bad = 0;
    bad |= mk_add(&ts, s, "model.embed_tokens.weight", s->vocab, D, 2, sd, 0);
    bad |= mk_add(&ts, s, "model.norm.weight", 1, D, 1, 0, 1.0f);
    bad |= mk_add(&ts, s, "lm_head.weight", s->vocab, D, 2, sd, 0);
    const int beacon = s->kind == MK_BEACON_V1 && s->beacon_weights;
    if (beacon)
        bad |= mk_add(&ts, s, "model.beacon_embed_tokens.weight", 1, D, 2, sd, 0);
    for (int l = 0; l < s->layers && !bad; l++) {
#define MK_N(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
        bad |= mk_add(&ts, s, MK_N("input_layernorm.weight"), 1, D, 1, 0, 1.0f);
        bad |= mk_add(&ts, s, MK_N("post_attention_layernorm.weight"), 1, D, 1, 0, 1.0f);
        bad |= mk_add(&ts, s, MK_N("self_attn.q_proj.weight"), D, D, 2, sd, 0);
        bad |= mk_add(&ts, s, MK_N("self_attn.k_proj.weight"), kvd, D, 2, sd, 0);
        bad |= mk_add(&ts, s, MK_N("self_attn.v_proj.weight"), kvd, D, 2, sd, 0);
        bad |= mk_add(&ts, s, MK_N("self_attn.o_proj.weight"), D, D, 2, sd, 0);
        bad |= mk_add(&ts, s, MK_N("mlp.gate_proj.weight"), I, D, 2, sd, 0);
        bad |= mk_add(&ts, s, MK_N("mlp.up_proj.weight"), I, D, 2, sd, 0);
        bad |= mk_add(&ts, s, MK_N("mlp.down_proj.weight"), D, I, 2, sd, 0);
        if (beacon) {
            bad |= mk_add(&ts, s, MK_N("self_attn.beacon_q_proj.weight"), D, D, 2, sd, 0);
            bad |= mk_add(&ts, s, MK_N("self_attn.beacon_k_proj.weight"), kvd, D, 2, sd, 0);
            bad |= mk_add(&ts, s, MK_N("self_attn.beacon_v_proj.weight"), kvd, D, 2, sd, 0);
            bad |= mk_add(&ts, s, MK_N("self_attn.beacon_o_proj.weight"), D, D, 2, sd, 0);
        }
#undef MK_N
    }
    brt_status st = BRT_OK;
    if (bad)
        st = brt_errf(err, BRT_ERR_NOMEM, "mkmodel: out of memory");
    else {
        mk_fill_all(&ts);
        char path[8192];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = brt_st_write(path, ts.t, ts.n, err);
    }
    if (params)
        *params = ts.params;
    if (bytes)
        *bytes = ts.bytes;
    mk_tensors_free(&ts);
    return st;
}

/* Parameters and bytes a spec's folder holds (without writing it). */
static inline void mk_size(const mk_spec *s, int64_t *params, int64_t *bytes)
{
    const int64_t D = s->hidden, hd = s->hidden / s->heads, kvd = (int64_t)s->kv_heads * hd, I = s->intermediate;
    int64_t per = 2 * D + 2 * D * D + 2 * kvd * D + 3 * I * D;
    if (s->kind == MK_BEACON_V1 && s->beacon_weights)
        per += 2 * D * D + 2 * kvd * D;
    int64_t p = 2 * (int64_t)s->vocab * D + D + per * s->layers;
    if (s->kind == MK_BEACON_V1 && s->beacon_weights)
        p += D;
    *params = p;
    *bytes = p * (int64_t)brt_dtype_size(s->dtype);
}

/* Remove a folder written by mk_write (its known files, then the folder). */
static inline void mk_remove(const char *dir)
{
    const char *files[] = {"config.json", "model.safetensors", NULL};
    char path[8192];
    for (const char *const *f = files; *f; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, *f);
        unlink(path);
    }
    rmdir(dir);
}

#endif
