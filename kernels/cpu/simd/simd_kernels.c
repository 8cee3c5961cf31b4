/* CPU kernels, written once against simd_impl.h and compiled per instruction set.
 *
 * GEMM: "dot form" over the weights as they lie in the file ([out, in], f32/f16/bf16, read in
 * place from the mapping, converted in registers). A tile of MR activation rows x NR weight rows
 * keeps MR*NR vector accumulators over the whole K; each output is one fixed lane-wise sum
 * followed by one fixed horizontal tree. Edge tiles run the same code on zero rows, so every
 * output element has the same summation order whatever M, the tile or the thread: results do
 * not depend on micro-batch packing.
 *
 * Attention: per (segment, kv head, block of query vectors), key tiles of BRT_ATTN_TILE keys
 * aligned on key index; online softmax in f32. A tile with no visible key for a query vector
 * leaves its state untouched, so a row's result depends only on its own visible keys. */
#include <float.h>
#include <math.h>

#include "cpu/simd/simd_impl.h"
#include "cpu/simd/simd_ops.h"

#define MR GEMM_MR
#define NR GEMM_NR
#define GEMM_MAX_K (1 << 18)

static const float k_zero[GEMM_MAX_K]; /* zero rows for edge tiles (bss: costs nothing until read) */

static inline float scalar_f32(const void *p, brt_dtype dt, int64_t i)
{
    if (dt == BRT_DT_F32)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dt == BRT_DT_BF16)
        return brt_bf16_to_f32(h);
    float out[VL];
    uint16_t tmp[VL] = {h};
    v_store(out, v_load_f16(tmp));
    return out[0];
}

#define LOADW_F32(p) v_load((const float *)(p))
#define LOADW_BF16(p) v_load_bf16((const uint16_t *)(p))
#define LOADW_F16(p) v_load_f16((const uint16_t *)(p))

/* out[i][j] = sum_k a[i][k] * w[j][k] */
#define DEFINE_TILE(NAME, T, LOADW)                                                          \
    static void NAME(const float *const *a, const T *const *w, int64_t K, float out[MR][NR]) \
    {                                                                                        \
        vf acc[MR][NR];                                                                      \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++) acc[i][j] = v_zero();       \
        int64_t k = 0;                                                                       \
        for (; k + VL <= K; k += VL) {                                                       \
            vf av[MR];                                                                       \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) av[i] = v_load(a[i] + k);   \
            _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++)                             \
            {                                                                                \
                vf wv = LOADW(w[j] + k);                                                     \
                _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) acc[i][j] =             \
                    v_fma(av[i], wv, acc[i][j]);                                             \
            }                                                                                \
        }                                                                                    \
        if (k < K) {                                                                         \
            int64_t r = K - k;                                                               \
            float at[MR][VL];                                                                \
            T wt[NR][VL];                                                                    \
            memset(at, 0, sizeof at);                                                        \
            memset(wt, 0, sizeof wt);                                                        \
            for (int i = 0; i < MR; i++)                                                     \
                memcpy(at[i], a[i] + k, (size_t)r * sizeof(float));                          \
            for (int j = 0; j < NR; j++)                                                     \
                memcpy(wt[j], w[j] + k, (size_t)r * sizeof(T));                              \
            for (int j = 0; j < NR; j++) {                                                   \
                vf wv = LOADW(wt[j]);                                                        \
                for (int i = 0; i < MR; i++)                                                 \
                    acc[i][j] = v_fma(v_load(at[i]), wv, acc[i][j]);                         \
            }                                                                                \
        }                                                                                    \
        for (int i = 0; i < MR; i++)                                                         \
            for (int j = 0; j < NR; j++)                                                     \
                out[i][j] = v_hsum(acc[i][j]);                                               \
    }

DEFINE_TILE(tile_f32, float, LOADW_F32)
DEFINE_TILE(tile_bf16, uint16_t, LOADW_BF16)
DEFINE_TILE(tile_f16, uint16_t, LOADW_F16)

/* K is processed in fixed blocks of GEMM_KC (so a weight tile and an activation tile stay in
 * L1); each output is then ((block0 + block1) + ...) + bias, an order fixed by K alone. */
#define GEMM_KC 512

static void gemm_cols(const float *a, int64_t lda, int64_t m, const brt_weight *w, const brt_weight *bias,
                      float *c, int64_t ldc, int64_t n0, int64_t n1)
{
    const int64_t K = w->cols;
    const size_t es = brt_dtype_size(w->dtype);
    const int has_bias = bias && bias->data;
    /* rows of A per block: keep the block in L2 while the weight tiles stream past it */
    int64_t kc_max = K < GEMM_KC ? K : GEMM_KC;
    int64_t mb = (int64_t)(256 * 1024) / (kc_max * 4);
    mb = mb < MR ? MR : mb - mb % MR;
    for (int64_t m0 = 0; m0 < m; m0 += mb) {
        int64_t m1 = m0 + mb < m ? m0 + mb : m;
        for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
            const int64_t kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            const int first = k0 == 0, last = k0 + kc == K;
            for (int64_t j0 = n0; j0 < n1; j0 += NR) {
                const void *wr[NR];
                float bj[NR];
                for (int j = 0; j < NR; j++) {
                    int64_t col = j0 + j;
                    wr[j] = col < n1 ? (const char *)w->data + ((size_t)col * (size_t)K + (size_t)k0) * es
                                     : (const void *)k_zero;
                    bj[j] = (has_bias && last && col < n1) ? scalar_f32(bias->data, bias->dtype, col) : 0.0f;
                }
                for (int64_t i0 = m0; i0 < m1; i0 += MR) {
                    const float *ar[MR];
                    for (int i = 0; i < MR; i++)
                        ar[i] = i0 + i < m1 ? a + (i0 + i) * lda + k0 : k_zero;
                    float out[MR][NR];
                    if (w->dtype == BRT_DT_F32)
                        tile_f32(ar, (const float *const *)wr, kc, out);
                    else if (w->dtype == BRT_DT_BF16)
                        tile_bf16(ar, (const uint16_t *const *)wr, kc, out);
                    else
                        tile_f16(ar, (const uint16_t *const *)wr, kc, out);
                    for (int i = 0; i < MR && i0 + i < m1; i++) {
                        float *crow = c + (i0 + i) * ldc;
                        for (int j = 0; j < NR && j0 + j < n1; j++) {
                            float v = first ? out[i][j] : crow[j0 + j] + out[i][j];
                            crow[j0 + j] = has_bias && last ? v + bj[j] : v;
                        }
                    }
                }
            }
        }
    }
}

/* ---- attention ------------------------------------------------------------------------- */

#define TILE BRT_ATTN_TILE
#define TV (TILE / VL)

static inline int32_t round_up(int32_t x, int32_t m) { return (x + m - 1) / m * m; }

static uint32_t tile_mask(const brt_attn_vis *v, int32_t t0, int32_t t1)
{
    uint32_t m = 0;
    for (int i = 0; i < v->n; i++) {
        int32_t lo = v->lo[i] > t0 ? v->lo[i] : t0, hi = v->hi[i] < t1 ? v->hi[i] : t1;
        for (int32_t j = lo; j < hi; j++)
            m |= 1u << (j - t0);
    }
    return m;
}

#define QB 4                       /* query vectors per register block */
#define CHV 4                          /* vectors per head-dimension chunk (BRT_ATTN_CHUNK is a multiple) */

static void attn(const brt_cpu_attn_args *A, const brt_cpu_attn_seg *S, int32_t kvh, int32_t qv0, int32_t qv1,
                 float *scratch)
{
    /* fixed-size inner blocks (QB query vectors x CHV vectors of the head dimension) so the
     * accumulators stay in registers; missing query vectors read a zero row and are masked out */
    const int32_t hd = A->head_dim, hdp = round_up(hd, BRT_ATTN_CHUNK), G = A->n_heads / A->n_kv_heads;
    const int32_t nqv = qv1 - qv0, nqv_pad = round_up(nqv, QB);
    float *Kt = scratch;                              /* [hd][TILE] */
    float *Vt = Kt + (size_t)hdp * TILE;              /* [TILE][hdp] */
    float *ms = Vt + (size_t)TILE * hdp;              /* [QV_MAX + QB] running max */
    float *ls = ms + BRT_ATTN_QV_MAX + QB;            /* [QV_MAX + QB] running sum */
    float *acc = ls + BRT_ATTN_QV_MAX + QB;           /* [QV_MAX + QB][hdp] */
    float *sc = acc + (size_t)(BRT_ATTN_QV_MAX + QB) * hdp; /* [QB][TILE] */
    float *zero_q = sc + QB * TILE;                   /* [hdp] */
    const float *qp[BRT_ATTN_QV_MAX + QB];
    const brt_attn_vis *vis[BRT_ATTN_QV_MAX + QB];
    uint32_t mask[BRT_ATTN_QV_MAX + QB];
    memset(zero_q, 0, (size_t)hdp * sizeof(float));
    for (int32_t i = 0; i < nqv_pad; i++) {
        if (i < nqv) {
            int32_t qv = qv0 + i, row = qv / G, h = kvh * G + qv % G;
            qp[i] = S->q + (int64_t)row * S->ld_q + (int64_t)h * hd;
            vis[i] = &S->vis[row];
        } else {
            qp[i] = zero_q;
            vis[i] = NULL;
        }
        ms[i] = -INFINITY;
        ls[i] = 0.0f;
        memset(acc + (size_t)i * hdp, 0, (size_t)hdp * sizeof(float));
    }
    memset(Vt, 0, (size_t)TILE * hdp * sizeof(float));
    const vf vdiv = v_set1(A->scale_div);
    int32_t span = 0, span_base = 0; /* cursor: first key index of spans[span] */
    for (int32_t t0 = 0; t0 < S->n_keys; t0 += TILE) {
        const int32_t t1 = t0 + TILE < S->n_keys ? t0 + TILE : S->n_keys, nt = t1 - t0;
        uint32_t any = 0;
        for (int32_t i = 0; i < nqv_pad; i++)
            any |= mask[i] = vis[i] ? tile_mask(vis[i], t0, t1) : 0;
        if (!any)
            continue;
        /* gather the tile: K transposed (for key-parallel scores), V as rows */
        for (int32_t j = 0; j < TILE; j++) {
            if (j >= nt) {
                for (int32_t d = 0; d < hd; d++)
                    Kt[(size_t)d * TILE + j] = 0.0f;
                memset(Vt + (size_t)j * hdp, 0, (size_t)hd * sizeof(float));
                continue;
            }
            int32_t key = t0 + j;
            while (key >= span_base + S->spans[span].n) {
                span_base += S->spans[span].n;
                span++;
            }
            const brt_cpu_kv_span *sp = &S->spans[span];
            int64_t off = (int64_t)(key - span_base) * sp->stride + (int64_t)kvh * hd;
            float *vr = Vt + (size_t)j * hdp;
            if (sp->dtype == BRT_DT_F32) {
                const float *kr = (const float *)sp->k + off, *vsrc = (const float *)sp->v + off;
                for (int32_t d = 0; d < hd; d++)
                    Kt[(size_t)d * TILE + j] = kr[d];
                memcpy(vr, vsrc, (size_t)hd * sizeof(float));
            } else {
                const uint16_t *kr = (const uint16_t *)sp->k + off, *vsrc = (const uint16_t *)sp->v + off;
                for (int32_t d = 0; d < hd; d++) {
                    Kt[(size_t)d * TILE + j] = brt_bf16_to_f32(kr[d]);
                    vr[d] = brt_bf16_to_f32(vsrc[d]);
                }
            }
        }
        for (int32_t b = 0; b < nqv_pad; b += QB) {
            uint32_t bm = 0;
            for (int32_t i = 0; i < QB; i++)
                bm |= mask[b + i];
            if (!bm)
                continue;
            /* scores: s[i][key] = q_i . k_key, summed over d in order */
            vf s[QB][TV];
            for (int32_t i = 0; i < QB; i++)
                for (int c = 0; c < TV; c++)
                    s[i][c] = v_zero();
            const float *q0 = qp[b], *q1 = qp[b + 1], *q2 = qp[b + 2], *q3 = qp[b + 3];
            for (int32_t d = 0; d < hd; d++) {
                const float *kd = Kt + (size_t)d * TILE;
                const vf b0 = v_set1(q0[d]), b1 = v_set1(q1[d]), b2 = v_set1(q2[d]), b3 = v_set1(q3[d]);
                for (int c = 0; c < TV; c++) {
                    vf kv = v_load(kd + c * VL);
                    s[0][c] = v_fma(b0, kv, s[0][c]);
                    s[1][c] = v_fma(b1, kv, s[1][c]);
                    s[2][c] = v_fma(b2, kv, s[2][c]);
                    s[3][c] = v_fma(b3, kv, s[3][c]);
                }
            }
            float corr[QB] = {1, 1, 1, 1};
            for (int32_t i = 0; i < QB; i++) {
                float *si = sc + (size_t)i * TILE;
                if (!mask[b + i]) {
                    memset(si, 0, TILE * sizeof(float));
                    continue;
                }
                for (int c = 0; c < TV; c++)
                    v_store(si + c * VL, v_div(s[i][c], vdiv));
                for (int32_t j = 0; j < TILE; j++)
                    if (!(mask[b + i] >> j & 1u))
                        si[j] = -INFINITY;
                vf mv = v_load(si);
                for (int c = 1; c < TV; c++)
                    mv = v_max(mv, v_load(si + c * VL));
                float mt = v_hmax(mv), mo = ms[b + i], mn = mo > mt ? mo : mt;
                vf mnv = v_set1(mn), sum = v_zero();
                for (int c = 0; c < TV; c++) {
                    vf p = v_exp(v_sub(v_load(si + c * VL), mnv));
                    v_store(si + c * VL, p);
                    sum = v_add(sum, p);
                }
                float cf = 1.0f;
                if (mo != -INFINITY && mo != mn) {
                    float t[VL];
                    v_store(t, v_exp(v_set1(mo - mn)));
                    cf = t[0];
                }
                corr[i] = cf;
                ms[b + i] = mn;
                ls[b + i] = ls[b + i] * cf + v_hsum(sum);
            }
            /* acc = acc * corr + P V, one chunk of the head dimension at a time */
            for (int32_t c0 = 0; c0 < hdp; c0 += CHV * VL) {
                vf ar[QB][CHV];
                for (int32_t i = 0; i < QB; i++) {
                    const vf cv = v_set1(corr[i]);
                    const float *ai = acc + (size_t)(b + i) * hdp + c0;
                    for (int c = 0; c < CHV; c++)
                        ar[i][c] = v_mul(v_load(ai + c * VL), cv);
                }
                for (int32_t j = 0; j < nt; j++) {
                    const float *vj = Vt + (size_t)j * hdp + c0;
                    const vf p0 = v_set1(sc[j]), p1 = v_set1(sc[TILE + j]), p2 = v_set1(sc[2 * TILE + j]),
                             p3 = v_set1(sc[3 * TILE + j]);
                    for (int c = 0; c < CHV; c++) {
                        vf vv = v_load(vj + c * VL);
                        ar[0][c] = v_fma(p0, vv, ar[0][c]);
                        ar[1][c] = v_fma(p1, vv, ar[1][c]);
                        ar[2][c] = v_fma(p2, vv, ar[2][c]);
                        ar[3][c] = v_fma(p3, vv, ar[3][c]);
                    }
                }
                for (int32_t i = 0; i < QB; i++)
                    for (int c = 0; c < CHV; c++)
                        v_store(acc + (size_t)(b + i) * hdp + c0 + c * VL, ar[i][c]);
            }
        }
    }
    for (int32_t i = 0; i < nqv; i++) {
        int32_t qv = qv0 + i, row = qv / G, h = kvh * G + qv % G;
        float *o = S->out + (int64_t)row * S->ld_o + (int64_t)h * hd;
        const float *ai = acc + (size_t)i * hdp;
        float l = ls[i];
        for (int32_t d = 0; d < hd; d++)
            o[d] = l > 0.0f ? ai[d] / l : 0.0f;
    }
}

/* ---- row kernels ------------------------------------------------------------------------ */

static void rmsnorm_row(const float *x, const float *w, float eps, float *y, int64_t dim)
{
    vf acc = v_zero();
    int64_t i = 0;
    for (; i + VL <= dim; i += VL) {
        vf v = v_load(x + i);
        acc = v_fma(v, v, acc);
    }
    float ss = v_hsum(acc);
    for (; i < dim; i++)
        ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)dim + eps);
    vf rv = v_set1(r);
    for (i = 0; i + VL <= dim; i += VL)
        v_store(y + i, v_mul(v_load(w + i), v_mul(v_load(x + i), rv)));
    for (; i < dim; i++)
        y[i] = w[i] * (x[i] * r);
}

static void silu_mul_row(float *g, const float *u, int64_t n)
{
    const vf one = v_set1(1.0f), zero = v_zero();
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        vf x = v_load(g + i);
        vf s = v_div(x, v_add(one, v_exp(v_sub(zero, x))));
        v_store(g + i, v_mul(s, v_load(u + i)));
    }
    if (i < n) {
        float t[VL] = {0}, tu[VL] = {0};
        memcpy(t, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(tu, u + i, (size_t)(n - i) * sizeof(float));
        vf x = v_load(t);
        vf s = v_div(x, v_add(one, v_exp(v_sub(zero, x))));
        v_store(t, v_mul(s, v_load(tu)));
        memcpy(g + i, t, (size_t)(n - i) * sizeof(float));
    }
}

static void add_row(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + VL <= n; i += VL)
        v_store(y + i, v_add(v_load(y + i), v_load(x + i)));
    for (; i < n; i++)
        y[i] += x[i];
}

static void rope_row(float *x, int32_t heads, int32_t hd, const float *cs, const float *sn)
{
    const int32_t half = hd / 2;
    for (int32_t h = 0; h < heads; h++) {
        float *p = x + (int64_t)h * hd;
        int32_t i = 0;
        for (; i + VL <= half; i += VL) {
            vf x1 = v_load(p + i), x2 = v_load(p + half + i), c = v_load(cs + i), s = v_load(sn + i);
            v_store(p + i, v_sub(v_mul(x1, c), v_mul(x2, s)));
            v_store(p + half + i, v_add(v_mul(x2, c), v_mul(x1, s)));
        }
        for (; i < half; i++) {
            float x1 = p[i], x2 = p[half + i];
            p[i] = x1 * cs[i] - x2 * sn[i];
            p[half + i] = x2 * cs[i] + x1 * sn[i];
        }
    }
}

static void to_f32_row(const void *src, brt_dtype dt, float *dst, int64_t n)
{
    if (dt == BRT_DT_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    const uint16_t *s = src;
    for (; i + VL <= n; i += VL)
        v_store(dst + i, dt == BRT_DT_BF16 ? v_load_bf16(s + i) : v_load_f16(s + i));
    for (; i < n; i++)
        dst[i] = scalar_f32(src, dt, i);
}

const brt_simd_ops ISA_SUFFIX(brt_simd) = {
#if defined(BRT_SIMD_ISA_avx512)
    .isa = "avx512",
#elif defined(BRT_SIMD_ISA_avx2)
    .isa = "avx2",
#else
    .isa = "generic",
#endif
    .gemm_nr = NR,
    .gemm_cols = gemm_cols,
    .attn = attn,
    .rmsnorm_row = rmsnorm_row,
    .silu_mul_row = silu_mul_row,
    .add_row = add_row,
    .rope_row = rope_row,
    .to_f32_row = to_f32_row,
};
