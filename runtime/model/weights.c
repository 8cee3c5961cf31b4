#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float to_f32(const void *p, brt_dtype dt, int64_t i)
{
    if (dt == BRT_DT_F32) {
        float f;
        memcpy(&f, (const char *)p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const char *)p + 2 * i, 2);
    if (dt == BRT_DT_BF16) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    /* IEEE half */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0)
            u = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31)
        u = sign | 0x7f800000u | (man << 13);
    else
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct {
    const brt_st_set *st;
    brt_weights *w;
    brt_err *err;
} binder;

static brt_status bind(binder *b, const char *name, int64_t rows, int64_t cols, int optional, brt_weight *out)
{
    memset(out, 0, sizeof *out);
    const brt_st_tensor *t = brt_st_set_find(b->st, name);
    if (!t) {
        if (optional)
            return BRT_OK;
        return brt_errf(b->err, BRT_ERR_NOT_FOUND, "tensor '%s' is missing from the checkpoint (%s%s)", name,
                        b->st->n_files ? b->st->files[0]->path : "?", b->st->n_files > 1 ? " and other shards" : "");
    }
    if (t->dtype != BRT_DT_F32 && t->dtype != BRT_DT_F16 && t->dtype != BRT_DT_BF16)
        return brt_errf(b->err, BRT_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; weights must be F32, F16 or BF16",
                        t->path, name, brt_dtype_name(t->dtype));
    int ok = rows == 1 ? (t->ndim == 1 && t->shape[0] == cols) || (t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == cols)
                       : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        char got[128] = "";
        size_t n = 0;
        for (int d = 0; d < t->ndim && n < sizeof got - 24; d++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (rows == 1)
            return brt_errf(b->err, BRT_ERR_FORMAT, "%s: tensor '%s' has shape [%s], the config needs [%lld]",
                            t->path, name, got, (long long)cols);
        return brt_errf(b->err, BRT_ERR_FORMAT, "%s: tensor '%s' has shape [%s], the config needs [%lld, %lld]",
                        t->path, name, got, (long long)rows, (long long)cols);
    }
    out->data = t->data;
    out->dtype = t->dtype;
    out->rows = rows;
    out->cols = cols;
    out->name = t->name;
    b->w->bytes += (int64_t)t->nbytes;
    return BRT_OK;
}

/* A norm vector, converted to f32 (the kernels take it as is). */
static brt_status bind_vec(binder *b, const char *name, int64_t dim, float **cursor, brt_weight *out)
{
    brt_weight v;
    BRT_TRY(bind(b, name, 1, dim, 0, &v));
    float *dst = *cursor;
    for (int64_t i = 0; i < dim; i++)
        dst[i] = to_f32(v.data, v.dtype, i);
    *out = v;
    out->data = dst;
    out->dtype = BRT_DT_F32;
    *cursor += dim;
    return BRT_OK;
}

int brt_weights_ignored_name(const char *name)
{
    const char *s = strstr(name, "rotary_emb.inv_freq");
    return s && s[strlen("rotary_emb.inv_freq")] == '\0';
}

brt_status brt_weights_bind(const brt_st_set *st, const brt_model_config *cfg, int32_t a, int32_t z,
                            int need_embed, int need_head, brt_weights *w, brt_err *err)
{
    memset(w, 0, sizeof *w);
    if (a < 0 || z > cfg->n_layers || a > z)
        return brt_errf(err, BRT_ERR_INVALID, "layer range [%d, %d) outside the model's %d layers", a, z,
                        cfg->n_layers);
    w->layer_begin = a;
    w->layer_end = z;
    w->has_embed = need_embed;
    w->has_head = need_head;
    const int64_t dim = cfg->hidden, qd = (int64_t)cfg->n_heads * cfg->head_dim,
                  kvd = (int64_t)cfg->n_kv_heads * cfg->head_dim, inter = cfg->intermediate, V = cfg->vocab_size;
    int nl = z - a;
    w->layers = calloc(nl ? (size_t)nl : 1, sizeof *w->layers);
    w->owned = malloc(((size_t)nl * 2 + 1) * (size_t)dim * sizeof(float));
    if (!w->layers || !w->owned) {
        brt_weights_free(w);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    binder b = {st, w, err};
    float *cur = w->owned;
    brt_status s = BRT_OK;
    char n[256];
    const int beacon = cfg->policy == BRT_POLICY_BEACON_V1 || cfg->policy == BRT_POLICY_BEACON_V2;
#define B(expr)                    \
    do {                           \
        if ((s = (expr)) != BRT_OK) \
            goto fail;             \
    } while (0)
    if (need_embed || (need_head && cfg->tie_embeddings))
        B(bind(&b, "model.embed_tokens.weight", V, dim, 0, &w->embed));
    if (need_embed && beacon) {
        /* one shared learned row; official init when absent: the EOS (v2: or BOS) row */
        B(bind(&b, "model.beacon_embed_tokens.weight", 1, dim, 1, &w->beacon_embed));
        if (!w->beacon_embed.data) {
            int32_t row = cfg->policy == BRT_POLICY_BEACON_V2 && cfg->beacon.embed_init_bos ? cfg->bos_id : cfg->eos_id;
            size_t es = brt_dtype_size(w->embed.dtype);
            w->beacon_embed = w->embed;
            w->beacon_embed.data = (const char *)w->embed.data + (size_t)row * (size_t)dim * es;
            w->beacon_embed.rows = 1;
            w->n_beacon_initialized++;
        }
    }
    if (need_head) {
        B(bind_vec(&b, "model.norm.weight", dim, &cur, &w->final_norm));
        if (cfg->tie_embeddings) {
            if (brt_st_set_find(st, "lm_head.weight")) {
                s = brt_errf(err, BRT_ERR_FORMAT,
                             "the config ties the embeddings (tie_word_embeddings) but the checkpoint has its own "
                             "lm_head.weight");
                goto fail;
            }
            w->lm_head = w->embed;
        } else
            B(bind(&b, "lm_head.weight", V, dim, 0, &w->lm_head));
    }
    for (int32_t l = a; l < z; l++) {
        brt_layer_weights *L = &w->layers[l - a];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
        B(bind_vec(&b, NAME("input_layernorm.weight"), dim, &cur, &L->attn_norm));
        B(bind_vec(&b, NAME("post_attention_layernorm.weight"), dim, &cur, &L->ffn_norm));
        B(bind(&b, NAME("self_attn.q_proj.weight"), qd, dim, 0, &L->wq));
        B(bind(&b, NAME("self_attn.k_proj.weight"), kvd, dim, 0, &L->wk));
        B(bind(&b, NAME("self_attn.v_proj.weight"), kvd, dim, 0, &L->wv));
        B(bind(&b, NAME("self_attn.o_proj.weight"), dim, qd, 0, &L->wo));
        if (cfg->qkv_bias) {
            B(bind(&b, NAME("self_attn.q_proj.bias"), 1, qd, 0, &L->bq));
            B(bind(&b, NAME("self_attn.k_proj.bias"), 1, kvd, 0, &L->bk));
            B(bind(&b, NAME("self_attn.v_proj.bias"), 1, kvd, 0, &L->bv));
        }
        if (cfg->o_bias)
            B(bind(&b, NAME("self_attn.o_proj.bias"), 1, dim, 0, &L->bo));
        B(bind(&b, NAME("mlp.gate_proj.weight"), inter, dim, 0, &L->w_gate));
        B(bind(&b, NAME("mlp.up_proj.weight"), inter, dim, 0, &L->w_up));
        B(bind(&b, NAME("mlp.down_proj.weight"), dim, inter, 0, &L->w_down));
        /* beacon rows: own projections where beacon_param names them, else the shared ones;
         * a named projection missing from the file gets the official init (a copy of the base) */
        L->beacon_wq = L->wq, L->beacon_wk = L->wk, L->beacon_wv = L->wv, L->beacon_wo = L->wo;
        L->beacon_bq = L->bq, L->beacon_bk = L->bk, L->beacon_bv = L->bv, L->beacon_bo = L->bo;
        L->beacon_up = L->w_up, L->beacon_down = L->w_down;
        if (beacon) {
            const uint32_t p = cfg->beacon.param;
            struct {
                uint32_t bit;
                const char *wname, *bname;
                brt_weight *wt, *bias;
                int64_t rows, cols;
                int has_bias;
            } proj[] = {
                {BRT_BEACON_PARAM_Q, "self_attn.beacon_q_proj.weight", "self_attn.beacon_q_proj.bias", &L->beacon_wq, &L->beacon_bq, qd, dim, cfg->qkv_bias},
                {BRT_BEACON_PARAM_K, "self_attn.beacon_k_proj.weight", "self_attn.beacon_k_proj.bias", &L->beacon_wk, &L->beacon_bk, kvd, dim, cfg->qkv_bias},
                {BRT_BEACON_PARAM_V, "self_attn.beacon_v_proj.weight", "self_attn.beacon_v_proj.bias", &L->beacon_wv, &L->beacon_bv, kvd, dim, cfg->qkv_bias},
                {BRT_BEACON_PARAM_O, "self_attn.beacon_o_proj.weight", "self_attn.beacon_o_proj.bias", &L->beacon_wo, &L->beacon_bo, dim, qd, cfg->o_bias},
                {BRT_BEACON_PARAM_MLP, "mlp.beacon_up_proj.weight", NULL, &L->beacon_up, NULL, inter, dim, 0},
                {BRT_BEACON_PARAM_MLP, "mlp.beacon_down_proj.weight", NULL, &L->beacon_down, NULL, dim, inter, 0},
            };
            for (size_t i = 0; i < sizeof proj / sizeof proj[0]; i++) {
                if (!(p & proj[i].bit))
                    continue;
                brt_weight t;
                snprintf(n, sizeof n, "model.layers.%d.%s", l, proj[i].wname);
                B(bind(&b, n, proj[i].rows, proj[i].cols, 1, &t));
                if (t.data)
                    *proj[i].wt = t;
                else
                    w->n_beacon_initialized++;
                if (proj[i].has_bias && proj[i].bname) {
                    snprintf(n, sizeof n, "model.layers.%d.%s", l, proj[i].bname);
                    B(bind(&b, n, 1, proj[i].rows, 1, &t));
                    if (t.data)
                        *proj[i].bias = t;
                    else
                        w->n_beacon_initialized++;
                }
            }
        }
#undef NAME
    }
#undef B
    return BRT_OK;
fail:
    brt_weights_free(w);
    return s;
}

brt_status brt_weights_upload(brt_weights *w, brt_backend *be, const brt_st_set *st, brt_err *err)
{
#define UP(x)                                                                                            \
    do {                                                                                                 \
        if ((x).data) {                                                                                  \
            BRT_TRY(be->weight_upload(be, &(x), err));                                                   \
            if ((x).dev && !(x).lookup_only)                                                             \
                brt_st_set_release(st, (x).data, (size_t)((x).rows * (x).cols) * brt_dtype_size((x).dtype)); \
        }                                                                                                \
    } while (0)
    /* the embedding tables are read by rows, unless the model ties lm_head to the first */
    w->embed.lookup_only = w->embed.data != w->lm_head.data;
    w->beacon_embed.lookup_only = 1;
    UP(w->embed);
    UP(w->beacon_embed);
    UP(w->final_norm);
    UP(w->lm_head);
    for (int32_t l = 0; l < w->layer_end - w->layer_begin; l++) {
        brt_layer_weights *L = &w->layers[l];
        brt_weight *all[] = {&L->attn_norm, &L->ffn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk, &L->bv,
                             &L->bo, &L->w_gate, &L->w_up, &L->w_down, &L->beacon_wq, &L->beacon_wk, &L->beacon_wv,
                             &L->beacon_wo, &L->beacon_bq, &L->beacon_bk, &L->beacon_bv, &L->beacon_bo,
                             &L->beacon_up, &L->beacon_down};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            UP(*all[i]);
    }
#undef UP
    return BRT_OK;
}

void brt_weights_free(brt_weights *w)
{
    free(w->layers);
    free(w->owned);
    memset(w, 0, sizeof *w);
}

int64_t brt_weights_layer_bytes(const brt_st_set *st, const brt_model_config *cfg, int32_t layer)
{
    char prefix[64];
    int pl = snprintf(prefix, sizeof prefix, "model.layers.%d.", layer);
    int64_t total = 0;
    for (size_t f = 0; f < st->n_files; f++)
        for (size_t i = 0; i < st->files[f]->n; i++)
            if (!strncmp(st->files[f]->tensors[i].name, prefix, (size_t)pl))
                total += (int64_t)st->files[f]->tensors[i].nbytes;
    (void)cfg;
    return total;
}

static int known_layer_suffix(const char *s)
{
    static const char *const k[] = {
        "input_layernorm.weight", "post_attention_layernorm.weight",
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
        "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias", "self_attn.o_proj.bias",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
        "self_attn.beacon_q_proj.weight", "self_attn.beacon_k_proj.weight", "self_attn.beacon_v_proj.weight",
        "self_attn.beacon_o_proj.weight", "self_attn.beacon_q_proj.bias", "self_attn.beacon_k_proj.bias",
        "self_attn.beacon_v_proj.bias", "self_attn.beacon_o_proj.bias",
        "mlp.beacon_up_proj.weight", "mlp.beacon_down_proj.weight", NULL};
    for (const char *const *p = k; *p; p++)
        if (!strcmp(s, *p))
            return 1;
    return 0;
}

brt_status brt_weights_check_names(const brt_st_set *st, const brt_model_config *cfg, brt_err *err)
{
    for (size_t f = 0; f < st->n_files; f++)
        for (size_t i = 0; i < st->files[f]->n; i++) {
            const char *nm = st->files[f]->tensors[i].name;
            if (brt_weights_ignored_name(nm) || !strcmp(nm, "model.embed_tokens.weight") ||
                !strcmp(nm, "model.norm.weight") || !strcmp(nm, "lm_head.weight") ||
                !strcmp(nm, "model.beacon_embed_tokens.weight"))
                continue;
            int l, off = 0;
            if (sscanf(nm, "model.layers.%d.%n", &l, &off) == 1 && off > 0 && l >= 0 && l < cfg->n_layers &&
                known_layer_suffix(nm + off))
                continue;
            return brt_errf(err, BRT_ERR_FORMAT,
                            "%s: tensor '%s' is not part of a %d-layer %s model (wrong config or checkpoint?)",
                            st->files[f]->path, nm, cfg->n_layers, cfg->model_type);
        }
    return BRT_OK;
}
