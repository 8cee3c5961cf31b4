/* CPU kernels, written once against simd_impl.h and compiled per instruction set.
 *
 * GEMM: every output is one chain of fused multiply-adds over k in order (then + bias), computed
 * by register tiles of rows x columns over weight panels packed transposed from the file's
 * [out, in] layout; that order depends on K alone, so results do not depend on micro-batch
 * packing, the path (few rows or many) or the instruction set.
 *
 * Attention: per (segment, kv head, block of query vectors), key tiles of BRT_ATTN_TILE keys
 * aligned on key index; online softmax in f32. A tile with no visible key for a query vector
 * leaves its state untouched, so a row's result depends only on its own visible keys. Query
 * vectors go VL at a time "key-major" (scores as vectors over query vectors) where a head has
 * that many in the task, one at a time otherwise, each lane doing the same operations in the
 * same order as the one-at-a-time path. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/simd/simd_impl.h"
#include "cpu/simd/simd_ops.h"

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

/* ---- GEMM ------------------------------------------------------------------------------ */

/* c[i][j] = sum over k of a[i][k] w[j][k] (+ bias[j]), w as the file stores it ([out, in],
 * f32/bf16/f16). Every output is one chain of fused multiply-adds over k in order, from +0:
 * c = fma(a[i][k], w[j][k], c) for k = 0, 1, ..., K - 1, then c + bias. That order depends on K
 * alone: not on M, the register tile, the k block, the thread or the instruction set (generic's
 * v_fma is fmaf), so results do not depend on micro-batch packing and every path gives the same
 * bits.
 *
 * Register tile: OMR rows x ONV vectors of columns (NP = ONV * VL weight rows). The weights come
 * from the backend's packed copy (w->dev, cpu_memory.c: panels of 16 rows, [rows / 16][K][16] in
 * their dtype), or, for a weight that was not uploaded, from the file's layout by VL x VL register
 * transposes; either way a panel of NP rows is laid out [k][NP] in f32 (exact) for the tile, or
 * read in place by the few-rows path. The tile's rows of A are packed [k][rows] and broadcast. A
 * k block's partial sums go to c and come back into the same chain. */
#define OMR GEMM_OMR
#define ONV GEMM_ONV
#define NP (ONV * VL)
#define FEW_MAX_M 16 /* up to this many rows: panel by panel, each weight read once (decode) */
#define FEW_NV 2     /* vectors of columns per few-rows tile: two chains per row at batch 1 */
#define FP (FEW_NV * VL) /* columns per panel of the few-rows path */
#define KC_FEW 128   /* k chunk of the few-rows path (a panel packed from the file's layout: L1) */
#define FEW_PF_K 64  /* with 2+ rows, the packed copy is prefetched this many k ahead: the tile then
                      * computes long enough per line that the hardware prefetchers fall behind
                      * (8 rows x 4096^2: f32 3.9 -> 2.8 ms, bf16 3.3 -> 2.8); one row streams at
                      * the copy rate without it */
#define KC_MANY 768  /* k block of the many-rows path: c goes out and back once per block */
#define MB_MANY 512  /* rows per block of the many-rows path: each weight panel is packed once per
                      * block, and a block's packed A (up to 1.5 MiB) streams from L2/L3 */
_Static_assert(FEW_NV <= ONV && NP % 16 == 0 && FP % 16 == 0, "tiles and 16-row panels");

static inline __attribute__((always_inline)) vf loadw(const int dt, const void *p, int64_t k)
{
    if (dt == BRT_DT_F32)
        return v_load((const float *)p + k);
    if (dt == BRT_DT_BF16)
        return v_load_bf16((const uint16_t *)p + k);
    return v_load_f16((const uint16_t *)p + k);
}

/* weight rows [j0, j0 + cols) (cols <= NV * VL), k in [k0, k0 + kc), into wp [kc][NV * VL] f32; the
 * columns from cols on are 0 */
static inline __attribute__((always_inline)) void pack_panel_dt(const int dt, const int NV, const void *w, int64_t K, int64_t j0,
                                                                int cols, int64_t k0, int64_t kc, float *wp)
{
    const int64_t es = dt == BRT_DT_F32 ? 4 : 2, P = NV * VL;
    for (int g = 0; g < NV; g++) {
        const int nj = cols - g * VL <= 0 ? 0 : cols - g * VL >= VL ? VL : cols - g * VL;
        float *d = wp + g * VL;
        if (nj == 0) {
            for (int64_t k = 0; k < kc; k++)
                v_store(d + k * P, v_zero());
            continue;
        }
        const char *rows[VL];
        for (int r = 0; r < VL; r++)
            rows[r] = (const char *)w + ((size_t)(j0 + g * VL + (r < nj ? r : 0)) * (size_t)K + (size_t)k0) * es;
        int64_t k = 0;
        for (; k + VL <= kc; k += VL) {
            vf t[VL];
            if (nj == VL) {
                _Pragma("GCC unroll 16") for (int r = 0; r < VL; r++) t[r] = loadw(dt, rows[r], k);
            } else {
                for (int r = 0; r < VL; r++)
                    t[r] = r < nj ? loadw(dt, rows[r], k) : v_zero();
            }
            v_transpose(t);
            _Pragma("GCC unroll 16") for (int s = 0; s < VL; s++) v_store(d + (k + s) * P, t[s]);
        }
        for (; k < kc; k++) {
            float col[VL];
            for (int r = 0; r < VL; r++)
                col[r] = r < nj ? scalar_f32(rows[r], (brt_dtype)dt, k) : 0.0f;
            v_store(d + k * P, v_load(col));
        }
    }
}

/* the same from the backend's packed copy (w->dev: panels of 16 rows, [ceil(rows / 16)][K][16]
 * in the weight's dtype, rows past the end 0); j0 a multiple of 16: a straight copy per k */
static inline __attribute__((always_inline)) void pack_panel_pk_dt(const int dt, const int NV, const void *pk, int64_t K,
                                                                   int64_t j0, int cols, int64_t k0, int64_t kc,
                                                                   float *wp)
{
    const int64_t es = dt == BRT_DT_F32 ? 4 : 2, P = NV * VL;
    for (int g = 0; g * 16 < P; g++) {
        float *d = wp + g * 16;
        if (g * 16 >= cols) {
            for (int64_t k = 0; k < kc; k++)
                _Pragma("GCC unroll 2") for (int h = 0; h < 16; h += VL) v_store(d + k * P + h, v_zero());
            continue;
        }
        const char *src = (const char *)pk + ((size_t)(j0 / 16 + g) * (size_t)K + (size_t)k0) * 16 * (size_t)es;
        for (int64_t k = 0; k < kc; k++)
            _Pragma("GCC unroll 2") for (int h = 0; h < 16; h += VL) v_store(d + k * P + h, loadw(dt, src, k * 16 + h));
    }
}

#define PACK_PANEL(NAME, NV)                                                                       \
    static void NAME(const brt_weight *w, int64_t j0, int cols, int64_t k0, int64_t kc, float *wp)     \
    {                                                                                               \
        const int pk = w->dev && j0 % 16 == 0;                                                      \
        if (w->dtype == BRT_DT_F32)                                                                 \
            pk ? pack_panel_pk_dt(BRT_DT_F32, NV, w->dev, w->cols, j0, cols, k0, kc, wp)            \
               : pack_panel_dt(BRT_DT_F32, NV, w->data, w->cols, j0, cols, k0, kc, wp);             \
        else if (w->dtype == BRT_DT_BF16)                                                           \
            pk ? pack_panel_pk_dt(BRT_DT_BF16, NV, w->dev, w->cols, j0, cols, k0, kc, wp)           \
               : pack_panel_dt(BRT_DT_BF16, NV, w->data, w->cols, j0, cols, k0, kc, wp);            \
        else                                                                                        \
            pk ? pack_panel_pk_dt(BRT_DT_F16, NV, w->dev, w->cols, j0, cols, k0, kc, wp)            \
               : pack_panel_dt(BRT_DT_F16, NV, w->data, w->cols, j0, cols, k0, kc, wp);             \
    }
PACK_PANEL(pack_panel_f, FEW_NV) /* the few-rows path */
PACK_PANEL(pack_panel_w, ONV) /* the register tile's width: the many-rows path */

/* rows x kc of A (row stride lda) into tiles of OMR rows, each [kc][OMR] (tile t at t * kc *
 * OMR); rows past `rows` are 0. VL x VL register transposes whose vectors are stored OMR floats
 * apart, in increasing order, each store's VL - OMR extra lanes overwritten by the next: the
 * buffer needs VL floats of room past its end. */
static void pack_a(const float *a, int64_t lda, int64_t rows, int64_t kc, float *ap)
{
    for (int64_t t = 0; t * OMR < rows; t++) {
        float *d = ap + t * kc * OMR;
        const int nr = rows - t * OMR < OMR ? (int)(rows - t * OMR) : OMR;
        const float *src = a + t * OMR * lda;
        int64_t k = 0;
        for (; k + VL <= kc; k += VL) {
            vf r[VL];
            _Pragma("GCC unroll 16") for (int i = 0; i < VL; i++) r[i] = i < nr ? v_load(src + i * lda + k) : v_zero();
            v_transpose(r);
            _Pragma("GCC unroll 16") for (int s = 0; s < VL; s++) v_store(d + (k + s) * OMR, r[s]);
        }
        for (; k < kc; k++) {
            for (int i = 0; i < nr; i++)
                d[k * OMR + i] = src[i * lda + k];
            for (int i = nr; i < OMR; i++)
                d[k * OMR + i] = 0.0f;
        }
    }
}

/* One register tile over a k block: R rows of A (at: [kc][as]) times NV vectors of weights per k,
 * continuing the chains held in c (or from +0 where first), adding bj ([NP] or NULL) after the
 * last block; the first `cols` columns of c are written. The weights come from a packed panel
 * (DT = 0: wp [kc][NV * VL] f32), or straight from the backend's packed copy (DT = its dtype + 1:
 * vector v at pv[v] + (k0 + k) * 16 elements). */
static inline __attribute__((always_inline)) void tile_r(const int R, const int NV, const int DT, const float *at,
                                                         const int64_t as, const float *wp, const char *const *pv,
                                                         int64_t k0, int64_t kc, float *c, int64_t ldc, int cols,
                                                         int first, const float *bj)
{
    const int P = NV * VL;
    vf acc[OMR][ONV];
    _Alignas(64) float tmp[NP];
    _Pragma("GCC unroll 16") for (int i = 0; i < R; i++)
    {
        if (first) {
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = v_zero();
        } else if (cols == P) {
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = v_load(c + i * ldc + v * VL);
        } else {
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, c + i * ldc, (size_t)cols * sizeof(float));
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = v_load(tmp + v * VL);
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        vf wv[ONV];
        if (DT) {
            if (R > 1) {
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) __builtin_prefetch(
                    pv[v] + (k0 + k + FEW_PF_K) * 16 * (DT - 1 == BRT_DT_F32 ? 4 : 2), 0, 2);
            }
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) wv[v] = loadw(DT - 1, pv[v], (k0 + k) * 16);
        } else {
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) wv[v] = v_load(wp + k * P + v * VL);
        }
        _Pragma("GCC unroll 16") for (int i = 0; i < R; i++)
        {
            const vf av = v_set1(at[k * as + i]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = v_fma(av, wv[v], acc[i][v]);
        }
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < R; i++)
    {
        if (bj) {
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = v_add(acc[i][v], v_load(bj + v * VL));
        }
        if (cols == P) {
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) v_store(c + i * ldc + v * VL, acc[i][v]);
        } else {
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) v_store(tmp + v * VL, acc[i][v]);
            memcpy(c + i * ldc, tmp, (size_t)cols * sizeof(float));
        }
    }
}

/* tile_r compiled for each row count (edge tiles multiply no zero rows) */
static inline __attribute__((always_inline)) void tile_nv(const int NV, const int DT, int R, const float *at,
                                                          int64_t as, const float *wp, const char *const *pv,
                                                          int64_t k0, int64_t kc, float *c, int64_t ldc, int cols,
                                                          int first, const float *bj)
{
#define TILE_CASE(n) \
    case n: tile_r(n, NV, DT, at, as, wp, pv, k0, kc, c, ldc, cols, first, bj); break;
    switch (R) {
#if OMR >= 12
        TILE_CASE(12) TILE_CASE(11) TILE_CASE(10) TILE_CASE(9) TILE_CASE(8) TILE_CASE(7)
#endif
#if OMR >= 6
        TILE_CASE(6) TILE_CASE(5)
#endif
        TILE_CASE(4) TILE_CASE(3) TILE_CASE(2)
    default: tile_r(1, NV, DT, at, as, wp, pv, k0, kc, c, ldc, cols, first, bj); break;
    }
#undef TILE_CASE
}
/* the many-rows path's tile: packed A, a packed panel */
static void tile_w(int R, const float *at, const float *wp, int64_t kc, float *c, int64_t ldc, int cols, int first,
                   const float *bj)
{
    tile_nv(ONV, 0, R, at, OMR, wp, NULL, 0, kc, c, ldc, cols, first, bj);
}
/* the few-rows path's: A packed per tile (as = its rows), weights from a packed panel (dt < 0) or
 * straight from the backend's packed copy in dtype dt */
static void tile_f(int dt, int R, const float *at, int64_t as, const float *wp, const char *const *pv, int64_t k0,
                   int64_t kc, float *c, int64_t ldc, int cols, int first, const float *bj)
{
    switch (dt) {
    case BRT_DT_F32: tile_nv(FEW_NV, BRT_DT_F32 + 1, R, at, as, NULL, pv, k0, kc, c, ldc, cols, first, bj); break;
    case BRT_DT_BF16: tile_nv(FEW_NV, BRT_DT_BF16 + 1, R, at, as, NULL, pv, k0, kc, c, ldc, cols, first, bj); break;
    case BRT_DT_F16: tile_nv(FEW_NV, BRT_DT_F16 + 1, R, at, as, NULL, pv, k0, kc, c, ldc, cols, first, bj); break;
    default: tile_nv(FEW_NV, 0, R, at, as, wp, NULL, k0, kc, c, ldc, cols, first, bj); break;
    }
}

/* the bias of columns [j0, j0 + cols) as [NP] f32, 0 past cols */
static void panel_bias(const brt_weight *bias, int64_t j0, int cols, float *bj)
{
    for (int j = 0; j < NP; j++)
        bj[j] = j < cols ? scalar_f32(bias->data, bias->dtype, j0 + j) : 0.0f;
}

/* Few rows (decode): panel by panel of FP weight rows, k chunk by k chunk, so each weight is read
 * once. A is packed once per tile ([K][R], R its rows). Full panels of the backend's packed copy
 * are read in place (contiguous streams, converted in registers); other panels are packed per
 * chunk. ap: the scratch for A (gemm_scratch_floats). */
static void gemm_few(const float *a, int64_t lda, int64_t m, const brt_weight *w, const brt_weight *bias, float *c,
                     int64_t ldc, int64_t n0, int64_t n1, float *ap)
{
    const int64_t K = w->cols, es = (int64_t)brt_dtype_size(w->dtype);
    const int64_t tiles = (m + OMR - 1) / OMR;
    for (int64_t t = 0; t < tiles; t++) {
        const int R = m - t * OMR < OMR ? (int)(m - t * OMR) : OMR;
        float *d = ap + t * OMR * K;
        for (int64_t k = 0; k < K; k++)
            for (int i = 0; i < R; i++)
                d[k * R + i] = a[(t * OMR + i) * lda + k];
    }
    _Alignas(64) float wp[KC_FEW * FP];
    _Alignas(64) float bj[NP];
    for (int64_t j0 = n0; j0 < n1; j0 += FP) {
        const int cols = n1 - j0 < FP ? (int)(n1 - j0) : FP;
        const int direct = w->dev && j0 % 16 == 0 && cols == FP;
        const char *pv[FEW_NV];
        for (int v = 0; v < FEW_NV; v++)
            pv[v] = direct ? (const char *)w->dev + (((j0 + v * VL) / 16) * K * 16 + (v * VL) % 16) * es : NULL;
        if (bias && bias->data)
            panel_bias(bias, j0, cols, bj);
        for (int64_t k0 = 0; k0 < K; k0 += KC_FEW) {
            const int64_t kc = K - k0 < KC_FEW ? K - k0 : KC_FEW;
            if (!direct)
                pack_panel_f(w, j0, cols, k0, kc, wp);
            const int last = k0 + kc == K;
            for (int64_t t = 0; t < tiles; t++) {
                const int R = m - t * OMR < OMR ? (int)(m - t * OMR) : OMR;
                tile_f(direct ? (int)w->dtype : -1, R, ap + t * OMR * K + k0 * R, R, wp, pv, k0, kc,
                       c + t * OMR * ldc + j0, ldc, cols, k0 == 0, last && bias && bias->data ? bj : NULL);
            }
        }
    }
}

/* the lines of r rows of c (row stride ldc) under a tile's NP columns, for writing */
static inline void prefetch_c(const float *c, int64_t ldc, int r)
{
    for (int i = 0; i < r; i++) {
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + NP / 2, 1, 3);
        __builtin_prefetch(c + i * ldc + NP - 1, 1, 3);
    }
}

/* Many rows (prefill): per block of up to MB_MANY rows and k block of KC_MANY, A's block is
 * packed once ([tile][kc][OMR], into ap: the scratch, gemm_scratch_floats) and every panel of the
 * weights is laid out [kc][NP] and run past all its row tiles, the next panel's weights and the
 * next tile's rows of c prefetched meanwhile. */
static void gemm_many(const float *a, int64_t lda, int64_t m, const brt_weight *w, const brt_weight *bias, float *c,
                      int64_t ldc, int64_t n0, int64_t n1, float *ap)
{
    const int64_t K = w->cols, es = (int64_t)brt_dtype_size(w->dtype);
    const int64_t nblk = (m + MB_MANY - 1) / MB_MANY;
    const int64_t mb = ((m + nblk - 1) / nblk + OMR - 1) / OMR * OMR; /* blocks of about equal size */
    _Alignas(64) float wp[KC_MANY * NP];
    _Alignas(64) float bj[NP];
    for (int64_t m0 = 0; m0 < m; m0 += mb) {
        const int64_t rows = m - m0 < mb ? m - m0 : mb, tiles = (rows + OMR - 1) / OMR;
        for (int64_t k0 = 0; k0 < K; k0 += KC_MANY) {
            const int64_t kc = K - k0 < KC_MANY ? K - k0 : KC_MANY;
            const int first = k0 == 0, last = k0 + kc == K;
            pack_a(a + m0 * lda + k0, lda, rows, kc, ap);
            for (int64_t j0 = n0; j0 < n1; j0 += NP) {
                const int cols = n1 - j0 < NP ? (int)(n1 - j0) : NP;
                pack_panel_w(w, j0, cols, k0, kc, wp);
                if (last && bias && bias->data)
                    panel_bias(bias, j0, cols, bj);
                /* the next panel's weights of this k block, towards L2, spread over the row tiles:
                 * runs of run_lines lines, run_stride bytes apart (the packed copy: one run per 16
                 * rows; the file's layout: one per row) */
                const int64_t next_cols = n1 - j0 - NP < NP ? n1 - j0 - NP : NP;
                const int pk = w->dev && j0 % 16 == 0;
                const int64_t runs = next_cols <= 0 ? 0 : pk ? (next_cols + 15) / 16 : next_cols;
                const int64_t run_lines = ((pk ? 16 : 1) * kc * es + 63) / 64, run_stride = (pk ? 16 : 1) * K * es;
                const char *pf = runs == 0 ? NULL
                                 : pk      ? (const char *)w->dev + ((size_t)(j0 + NP) * (size_t)K + (size_t)k0 * 16) * (size_t)es
                                           : (const char *)w->data + ((size_t)(j0 + NP) * (size_t)K + (size_t)k0) * (size_t)es;
                const int64_t pf_lines = runs * run_lines, pf_per = (pf_lines + tiles - 1) / tiles;
                int64_t pl = 0, prun = 0, pline = 0; /* lines issued; the next one's run and line in it */
                for (int64_t t = 0; t < tiles; t++) {
                    for (const int64_t e = pl + pf_per; pl < e && pl < pf_lines; pl++) {
                        __builtin_prefetch(pf + prun * run_stride + pline * 64, 0, 2);
                        if (++pline == run_lines)
                            pline = 0, prun++;
                    }
                    /* the next tile's rows of c (this panel's next row tile, or the next
                     * panel's first): the tile loads them first thing */
                    const int64_t nt = t + 1 < tiles ? t + 1 : 0, nj = t + 1 < tiles ? j0 : j0 + NP;
                    if (nj < n1)
                        prefetch_c(c + (m0 + nt * OMR) * ldc + nj, ldc,
                                   rows - nt * OMR < OMR ? (int)(rows - nt * OMR) : OMR);
                    const int R = rows - t * OMR < OMR ? (int)(rows - t * OMR) : OMR;
                    tile_w(R, ap + t * kc * OMR, wp, kc, c + (m0 + t * OMR) * ldc + j0, ldc, cols, first,
                         last && bias && bias->data ? bj : NULL);
                }
            }
        }
    }
}

/* floats of scratch gemm_cols needs for up to m rows over K (a task may get fewer rows than its
 * share, and so take the few-rows path): the packed rows of A, with VL floats of room for
 * pack_a's last store */
static int64_t gemm_scratch_floats(int64_t m, int64_t K)
{
    const int64_t few = (m < FEW_MAX_M ? m : FEW_MAX_M) + OMR - 1;
    const int64_t need_few = few / OMR * OMR * K;
    if (m <= FEW_MAX_M)
        return need_few;
    /* gemm_many's row block is at most MB_MANY (or m) rows, rounded up to whole tiles */
    const int64_t mb = ((m < MB_MANY ? m : MB_MANY) + OMR - 1) / OMR * OMR;
    const int64_t need_many = mb * (K < KC_MANY ? K : KC_MANY) + VL;
    return need_few > need_many ? need_few : need_many;
}

static void gemm_cols(const float *a, int64_t lda, int64_t m, const brt_weight *w, const brt_weight *bias,
                      float *c, int64_t ldc, int64_t n0, int64_t n1, float *scratch)
{
    if (w->cols <= 0) {
        /* an empty sum: +0, then the bias */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = n0; j < n1; j++)
                c[i * ldc + j] = bias && bias->data ? 0.0f + scalar_f32(bias->data, bias->dtype, j) : 0.0f;
        return;
    }
    if (m <= FEW_MAX_M)
        gemm_few(a, lda, m, w, bias, c, ldc, n0, n1, scratch);
    else
        gemm_many(a, lda, m, w, bias, c, ldc, n0, n1, scratch);
}

/* ---- attention ------------------------------------------------------------------------- */

/* Per (segment, kv head, up to BRT_ATTN_QV_MAX query vectors): key tiles of TILE keys aligned on
 * key index. A tile is gathered once (K transposed, so scores are computed TILE keys per vector;
 * V as rows) and used by every query vector of the task that sees a key in it. The query vectors
 * that see none are left out of the tile entirely, so each one's arithmetic is the same fixed
 * sequence whatever else is computed beside it:
 *   s_j = (sum over d in order of q_d k_jd) / scale_div, masked to -inf where not visible;
 *   m' = max(m, max_j s_j); p_j = exp(s_j - m'); l = l * exp(m - m') + sum_j p_j (one fused
 *   multiply-add; the sum lane-wise over the tile's vectors, then v_hsum's tree);
 *   acc = acc * exp(m - m') + sum over j in order of p_j v_j.
 * Query vectors go through in groups of QB (1-3 for the rest), which only changes how many share
 * a register pass, never an operation; whole blocks of VL go through the key-major path below,
 * which does the same operations lane-wise. */

#define TILE BRT_ATTN_TILE
#define TV (TILE / VL)
/* query vectors per register block: scores (QK_QB x TV accumulators), P.V (PV_QB x CHV) */
#if defined(BRT_SIMD_ISA_avx512)
#define QK_QB 8
#else
#define QK_QB 2
#endif
#define QB 4
#define PV_QB QB
#define CHV 4  /* vectors of the head dimension per P.V pass */

static inline int32_t round_up(int32_t x, int32_t m) { return (x + m - 1) / m * m; }

/* The score scaling s / scale_div: a multiply by the reciprocal where scale_div is a power of
 * two (head dim 64: 8), which gives the same bits (both round the same exact quotient) without
 * the divider's latency. */
typedef struct score_scale {
    vf v;    /* scale_div, or its reciprocal when inv */
    int inv;
} score_scale;

static inline vf scale_scores(vf s, score_scale sc) { return sc.inv ? v_mul(s, sc.v) : v_div(s, sc.v); }

/* The keys of [t0, t1) a query vector sees, as bits (intervals clipped to the tile). */
static inline uint32_t tile_mask(const brt_attn_vis *v, int32_t t0, int32_t t1)
{
    uint32_t m = 0;
    for (int i = 0; i < v->n; i++) {
        int32_t lo = v->lo[i] > t0 ? v->lo[i] : t0, hi = v->hi[i] < t1 ? v->hi[i] : t1;
        if (lo < hi) {
            int32_t n = hi - lo;
            m |= (n >= 32 ? 0xffffffffu : (1u << n) - 1u) << (lo - t0);
        }
    }
    return m;
}

/* 1 and [lo, hi) where the keys a query vector sees are one unbroken, non-empty range */
static inline int vis_range(const brt_attn_vis *v, int32_t *lo, int32_t *hi)
{
    int32_t l = INT32_MAX, h = 0, len = 0;
    for (int i = 0; i < v->n; i++)
        if (v->lo[i] < v->hi[i]) {
            for (int k = 0; k < i; k++) /* overlapping intervals would count twice */
                if (v->lo[k] < v->hi[k] && v->lo[i] < v->hi[k] && v->lo[k] < v->hi[i])
                    return 0;
            l = v->lo[i] < l ? v->lo[i] : l;
            h = v->hi[i] > h ? v->hi[i] : h;
            len += v->hi[i] - v->lo[i];
        }
    *lo = l;
    *hi = h;
    return len > 0 && len == h - l;
}

/* Where keys [t0, t0 + n) of a segment lie for head kvh: K and V row pointers and dtypes. The
 * cursor (span, base = first key index of that span) only moves forward. */
typedef struct key_cursor {
    int32_t span, base;
} key_cursor;

static inline void key_rows(const brt_cpu_attn_seg *S, int32_t kvh, int32_t hd, key_cursor *cur, int32_t t0,
                            int32_t n, const void **kp, const void **vp, brt_dtype *dt)
{
    for (int32_t j = 0; j < n; j++) {
        int32_t key = t0 + j;
        while (key >= cur->base + S->spans[cur->span].n) {
            cur->base += S->spans[cur->span].n;
            cur->span++;
        }
        const brt_cpu_kv_span *sp = &S->spans[cur->span];
        size_t es = sp->dtype == BRT_DT_F32 ? 4 : 2;
        size_t off = ((size_t)(key - cur->base) * (size_t)sp->stride + (size_t)kvh * (size_t)hd) * es;
        kp[j] = (const char *)sp->k + off;
        vp[j] = (const char *)sp->v + off;
        dt[j] = sp->dtype;
    }
}

static inline vf load_kv(const void *p, brt_dtype dt, int32_t d)
{
    return dt == BRT_DT_F32 ? v_load((const float *)p + d) : v_load_bf16((const uint16_t *)p + d);
}

static inline float scalar_kv(const void *p, brt_dtype dt, int32_t d)
{
    return dt == BRT_DT_F32 ? ((const float *)p)[d] : brt_bf16_to_f32(((const uint16_t *)p)[d]);
}

/* Rows of the next tile to prefetch (K and V of each key, bytes each), issued per_step cache
 * lines at a time: row i, line off (from the row's first line). Keys of one tile may sit in spans
 * of different dtypes: bytes is the first key's, so a bf16 row may get lines it does not need. */
typedef struct pf_queue {
    const void *row[2 * TILE];
    int32_t n, i, bytes, off, per_step;
} pf_queue;

static inline void pf_issue(pf_queue *q, int32_t lines)
{
    for (; lines > 0 && q->i < q->n; lines--) {
        uintptr_t r = (uintptr_t)q->row[q->i], first = r & ~(uintptr_t)63;
        __builtin_prefetch((const void *)(first + (uintptr_t)q->off), 0, 2);
        q->off += 64;
        if (first + (uintptr_t)q->off >= r + (uintptr_t)q->bytes) {
            q->off = 0;
            q->i++;
        }
    }
}

/* Kt [hd][TILE] (keys along a vector) and Vt [TILE][hdp] (rows) from nt keys; Kt columns past nt
 * are zeros. Whole groups of VL keys of one dtype are transposed in registers. */
static void gather_tile(const void *const *kp, const void *const *vp, const brt_dtype *dt, int32_t nt, int32_t hd,
                        int32_t hdp, float *Kt, float *Vt)
{
    for (int32_t g = 0; g < TILE; g += VL) {
        int uniform = g + VL <= nt;
        for (int32_t j = g + 1; uniform && j < g + VL; j++)
            uniform = dt[j] == dt[g];
        int32_t d0 = 0;
        if (uniform) {
            for (; d0 + VL <= hd; d0 += VL) {
                vf r[VL];
                for (int j = 0; j < VL; j++)
                    r[j] = load_kv(kp[g + j], dt[g], d0);
                v_transpose(r);
                for (int j = 0; j < VL; j++)
                    v_store(Kt + (size_t)(d0 + j) * TILE + g, r[j]);
            }
        }
        for (int32_t j = g; j < g + VL; j++)
            for (int32_t d = d0; d < hd; d++)
                Kt[(size_t)d * TILE + j] = j < nt ? scalar_kv(kp[j], dt[j], d) : 0.0f;
    }
    for (int32_t j = 0; j < nt; j++) {
        float *vr = Vt + (size_t)j * hdp;
        int32_t d = 0;
        for (; d + VL <= hd; d += VL)
            v_store(vr + d, load_kv(vp[j], dt[j], d));
        for (; d < hd; d++)
            vr[d] = scalar_kv(vp[j], dt[j], d);
    }
}

/* acc[i] = acc[i] * corr[i] + sum over keys j in order of p_ij v_j, NV vectors of the head
 * dimension from c0, for NQ query vectors (probabilities p[i] = rows of TILE) */
static inline __attribute__((always_inline)) void pv_pass(const int NQ, const int NV, float *const *acc,
                                                          const float *corr, const float *const *p, const float *Vt,
                                                          int32_t hdp, int32_t nt, int32_t c0)
{
    vf ar[PV_QB][CHV];
    for (int i = 0; i < NQ; i++) {
        const vf cv = v_set1(corr[i]);
        for (int c = 0; c < NV; c++)
            ar[i][c] = v_mul(v_load(acc[i] + c0 + c * VL), cv);
    }
    for (int32_t j = 0; j < nt; j++) {
        const float *vj = Vt + (size_t)j * hdp + c0;
        vf pj[PV_QB];
        for (int i = 0; i < NQ; i++)
            pj[i] = v_set1(p[i][j]);
        for (int c = 0; c < NV; c++) {
            vf vv = v_load(vj + c * VL);
            for (int i = 0; i < NQ; i++)
                ar[i][c] = v_fma(pj[i], vv, ar[i][c]);
        }
    }
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < NV; c++)
            v_store(acc[i] + c0 + c * VL, ar[i][c]);
}

static inline __attribute__((always_inline)) void pv_group(const int NQ, float *const *acc, const float *corr,
                                                           const float *const *p, const float *Vt, int32_t hd,
                                                           int32_t hdp, int32_t nt)
{
    const int32_t hdv = round_up(hd, VL); /* lanes past hd only ever hold zeros */
    for (int32_t c0 = 0; c0 < hdv; c0 += CHV * VL) {
        int nv = (hdv - c0) / VL;
        if (nv >= CHV)
            pv_pass(NQ, CHV, acc, corr, p, Vt, hdp, nt, c0);
#if CHV > 3
        else if (nv == 3)
            pv_pass(NQ, 3, acc, corr, p, Vt, hdp, nt, c0);
#endif
#if CHV > 2
        else if (nv == 2)
            pv_pass(NQ, 2, acc, corr, p, Vt, hdp, nt, c0);
#endif
        else
            pv_pass(NQ, 1, acc, corr, p, Vt, hdp, nt, c0);
    }
}

/* Scores of NQ query vectors against the tile: out[i][j] = (sum over d in order of q_id Kt[d][j]) /
 * scale_div. */
static inline __attribute__((always_inline)) void qk_group(const int NQ, const float *const *q, const float *Kt,
                                                           int32_t hd, score_scale scl, float *out)
{
    vf s[QK_QB][TV];
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < TV; c++)
            s[i][c] = v_zero();
    for (int32_t d = 0; d < hd; d++) {
        const float *kd = Kt + (size_t)d * TILE;
        vf b[QK_QB];
        for (int i = 0; i < NQ; i++)
            b[i] = v_set1(q[i][d]);
        for (int c = 0; c < TV; c++) {
            vf kv = v_load(kd + c * VL);
            for (int i = 0; i < NQ; i++)
                s[i][c] = v_fma(b[i], kv, s[i][c]);
        }
    }
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < TV; c++)
            v_store(out + i * TILE + c * VL, scale_scores(s[i][c], scl));
}

/* Key-major blocks: VL query vectors of one head at once, lane l of every vector being the
 * block's query vector l. Scores are vectors over query vectors (one per key), so the tile's
 * max and sum are lane-wise operations and the correction is one vector exp for the block:
 * no horizontal reduction and no scalar step per query vector. Every lane computes exactly the
 * sequence the query-major path above computes for its query vector (the same products in the
 * same order, v_hsum's tree via v_hsum_lanes), so which path a query vector takes, and hence
 * how rows were packed, never changes a bit. */
#if VL == 16
#define KM_KB 16 /* keys per score pass (accumulators) */
#define KM_DB 16 /* head-dimension elements per P.V pass (accumulators) */
#else
#define KM_KB 8
#define KM_DB 8
#endif

/* sk[j] = (sum over d in order of k_jd q_d) / scale_div for keys [j0, j0 + KM_KB) of the tile,
 * -inf in the lanes outside km[j] when MASKED; returns their lane-wise max. qt [hd][VL] holds the
 * block's query vectors down its columns, sk is [TILE][VL]. */
static inline __attribute__((always_inline)) vf km_scores(const int MASKED, const float *qt, const float *Kt,
                                                          int32_t hd, int32_t j0, score_scale scl,
                                                          const uint32_t *km, float *sk)
{
    vf s[KM_KB];
    for (int k = 0; k < KM_KB; k++)
        s[k] = v_zero();
    for (int32_t d = 0; d < hd; d++) {
        const vf qd = v_load(qt + (size_t)d * VL);
        const float *kd = Kt + (size_t)d * TILE + j0;
        for (int k = 0; k < KM_KB; k++)
            s[k] = v_fma(v_set1(kd[k]), qd, s[k]);
    }
    for (int k = 0; k < KM_KB; k++) {
        s[k] = scale_scores(s[k], scl);
        if (MASKED)
            s[k] = v_keep_bits(s[k], km[j0 + k], -INFINITY);
        v_store(sk + (size_t)(j0 + k) * VL, s[k]);
    }
    for (int h = KM_KB / 2; h >= 1; h /= 2)
        for (int k = 0; k < h; k++)
            s[k] = v_max(s[k], s[k + h]);
    return s[0];
}

/* acct[d] = acct[d] * corr + sum over keys j < nt in order of p_j v_jd for d in [d0, d0 + NDB)
 * (acct [hdp][VL], p = sk [TILE][VL]); with PARTIAL, lanes outside `keep` keep their values. */
static inline __attribute__((always_inline)) void km_pv(const int PARTIAL, const int NDB, float *acct, vf corr,
                                                        const float *pk, const float *Vt, int32_t hdp, int32_t nt,
                                                        int32_t d0, uint32_t keep)
{
    vf a[KM_DB];
    for (int k = 0; k < NDB; k++)
        a[k] = v_mul(v_load(acct + (size_t)(d0 + k) * VL), corr);
    for (int32_t j = 0; j < nt; j++) {
        const vf p = v_load(pk + (size_t)j * VL);
        const float *vj = Vt + (size_t)j * hdp + d0;
        for (int k = 0; k < NDB; k++)
            a[k] = v_fma(p, v_set1(vj[k]), a[k]);
    }
    for (int k = 0; k < NDB; k++) {
        float *o = acct + (size_t)(d0 + k) * VL;
        v_store(o, PARTIAL ? v_select_bits(keep, a[k], v_load(o)) : a[k]);
    }
}

#define KM_LANES ((1u << VL) - 1u) /* every lane of a block */

/* km_pv over d in [0, hd): passes of KM_DB, then the rest in a pass of the next multiple of 4
 * (head dim 100: 96 + 4 rather than 112; each element's sum is the same whichever pass it is in) */
static inline __attribute__((always_inline)) void km_pv_all(const int PARTIAL, float *acct, vf corr, const float *pk,
                                                            const float *Vt, int32_t hd, int32_t hdp, int32_t nt,
                                                            uint32_t keep)
{
    int32_t d0 = 0;
    for (; d0 + KM_DB <= hd; d0 += KM_DB)
        km_pv(PARTIAL, KM_DB, acct, corr, pk, Vt, hdp, nt, d0, keep);
    switch ((hd - d0 + 3) / 4) {
    case 0: break;
#if KM_DB > 8
    case 3: km_pv(PARTIAL, 12, acct, corr, pk, Vt, hdp, nt, d0, keep); break;
    case 2: km_pv(PARTIAL, 8, acct, corr, pk, Vt, hdp, nt, d0, keep); break;
#endif
#if KM_DB > 4
    case 1: km_pv(PARTIAL, 4, acct, corr, pk, Vt, hdp, nt, d0, keep); break;
#endif
    default: km_pv(PARTIAL, KM_DB, acct, corr, pk, Vt, hdp, nt, d0, keep); break;
    }
}

/* One gathered tile (nt keys) for a key-major block: act = the lanes that see a key of it, full =
 * those that see all TILE keys, mask[l] = lane l's visible keys (read only where full is not all
 * lanes); ms, ls [VL] and acct [hdp][VL] are the block's state, sk [TILE][VL] scratch. Lanes
 * outside act are left as they were. */
static void km_tile(const float *qt, const float *Kt, const float *Vt, int32_t hd, int32_t hdp, int32_t nt,
                    score_scale scl, const uint32_t *mask, uint32_t act, uint32_t full, float *ms, float *ls,
                    float *acct, float *sk)
{
    vf mt = v_set1(-INFINITY);
    int32_t nv = nt; /* keys up to the last one some lane sees */
    if (full == KM_LANES) {
        for (int32_t j0 = 0; j0 < TILE; j0 += KM_KB)
            mt = v_max(mt, km_scores(0, qt, Kt, hd, j0, scl, NULL, sk));
    } else {
        /* the masks turned key-major: km[j] = the lanes that see key j */
        uint32_t km[TILE];
        for (int j = 0; j < TILE; j++)
            km[j] = full;
        for (int l = 0; l < VL; l++)
            for (uint32_t m = full >> l & 1u ? 0 : mask[l]; m; m &= m - 1)
                km[__builtin_ctz(m)] |= 1u << l;
        int32_t kend = TILE;
        while (kend > 0 && !km[kend - 1])
            kend--;
        nv = kend < nt ? kend : nt;
        /* the keys past the diagonal of a causal block: no lane sees them, so their scores are
         * -inf without computing them and P.V stops before them (a product with p = 0 adds +-0 to
         * a sum that is never -0: the same bits) */
        for (int32_t j0 = 0; j0 < TILE; j0 += KM_KB) {
            if (j0 >= kend) {
                for (int k = 0; k < KM_KB; k++)
                    v_store(sk + (size_t)(j0 + k) * VL, v_set1(-INFINITY));
                continue;
            }
            mt = v_max(mt, km_scores(1, qt, Kt, hd, j0, scl, km, sk));
        }
    }
    const vf mo = v_load(ms), mn = v_max(mo, mt); /* lane-wise mo > mt ? mo : mt */
    const uint32_t fix = v_ne_bits(mo, v_set1(-INFINITY)) & v_ne_bits(mo, mn);
    const vf corr = v_keep_bits(v_exp(v_sub(mo, mn)), fix, 1.0f);
    vf r[VL];
    for (int l = 0; l < VL; l++)
        for (int c = 0; c < TV; c++) {
            float *p = sk + (size_t)(c * VL + l) * VL;
            const vf e = v_exp(v_sub(v_load(p), mn));
            v_store(p, e);
            r[l] = c ? v_add(r[l], e) : e;
        }
    const vf lo = v_load(ls), ln = v_fma(lo, corr, v_hsum_lanes(r));
    if (act == KM_LANES) {
        v_store(ms, mn);
        v_store(ls, ln);
        km_pv_all(0, acct, corr, sk, Vt, hd, hdp, nv, act);
    } else {
        v_store(ms, v_select_bits(act, mn, mo));
        v_store(ls, v_select_bits(act, ln, lo));
        km_pv_all(1, acct, corr, sk, Vt, hd, hdp, nv, act);
    }
}

/* Query vectors [qv0, qv1) of each kv head in [kvh0, kvh1): i = (kvh - kvh0) * per + (qv - qv0)
 * indexes the task's state (the caller keeps the count under BRT_ATTN_QV_MAX). Several heads
 * per task only for few query vectors (decode): a tile then reads whole stretches of each key's
 * slot, which memory streams far faster than one head's slice of it. */
static void attn(const brt_cpu_attn_args *A, const brt_cpu_attn_seg *S, int32_t kvh0, int32_t kvh1, int32_t qv0,
                 int32_t qv1, float *scratch)
{
    const int32_t hd = A->head_dim, hdp = round_up(hd, BRT_ATTN_CHUNK), G = A->n_heads / A->n_kv_heads;
    const int32_t per = qv1 - qv0, nh = kvh1 - kvh0, nqv = per * nh;
    float *Kt = scratch;                              /* [hd][TILE] */
    float *Vt = Kt + (size_t)hdp * TILE;              /* [TILE][hdp] */
    float *ms = Vt + (size_t)TILE * hdp;              /* [QV_MAX] running max */
    float *ls = ms + BRT_ATTN_QV_MAX + QB;            /* [QV_MAX] running sum */
    float *acc = ls + BRT_ATTN_QV_MAX + QB;           /* [QV_MAX][hdp] */
    float *sc = acc + (size_t)(BRT_ATTN_QV_MAX + QB) * hdp; /* [QV_MAX][TILE] scores, then probabilities */
    float *mnew = sc + (size_t)BRT_ATTN_QV_MAX * TILE;   /* [QV_MAX + VL] per active query vector: */
    float *dm = mnew + BRT_ATTN_QV_MAX + VL;            /* new max, old - new max, */
    float *corr = dm + BRT_ATTN_QV_MAX + VL;            /* the correction */
    float *qt = corr + BRT_ATTN_QV_MAX + VL;            /* [QV_MAX][hdp]: key-major blocks' queries */
    /* The first nkm query vectors of each head go through key-major blocks of VL (query vector i
     * of block i0 is lane i - i0; its queries at qt + i0 * hdp as [hd][VL], its acc at acc + i0 *
     * hdp as [hdp][VL]); the rest through the query-major path. */
    const int32_t nkm = per >= VL ? per / VL * VL : 0;
    uint8_t fix[BRT_ATTN_QV_MAX];
    const float *qp[BRT_ATTN_QV_MAX];
    const brt_attn_vis *vis[BRT_ATTN_QV_MAX];
    uint32_t mask[BRT_ATTN_QV_MAX];
    int32_t act[BRT_ATTN_QV_MAX];
    int32_t lo = INT32_MAX, hi = 0; /* keys any query vector sees: tiles outside are never gathered */
    for (int32_t i = 0; i < nqv; i++) {
        int32_t qv = qv0 + i % per, row = qv / G, h = (kvh0 + i / per) * G + qv % G;
        qp[i] = S->q + (int64_t)row * S->ld_q + (int64_t)h * hd;
        vis[i] = &S->vis[row];
        for (int k = 0; k < vis[i]->n; k++)
            if (vis[i]->lo[k] < vis[i]->hi[k]) {
                lo = vis[i]->lo[k] < lo ? vis[i]->lo[k] : lo;
                hi = vis[i]->hi[k] > hi ? vis[i]->hi[k] : hi;
            }
        ms[i] = -INFINITY;
        ls[i] = 0.0f;
        memset(acc + (size_t)i * hdp, 0, (size_t)hdp * sizeof(float));
    }
    for (int32_t hh = 0; hh < nh; hh++)
        for (int32_t i0 = hh * per; i0 < hh * per + nkm; i0 += VL) {
            /* the block's queries down the columns of qt, VL x VL squares transposed in registers */
            float *qb = qt + (size_t)i0 * hdp;
            int32_t d0 = 0;
            for (; d0 + VL <= hd; d0 += VL) {
                vf r[VL];
                for (int l = 0; l < VL; l++)
                    r[l] = v_load(qp[i0 + l] + d0);
                v_transpose(r);
                for (int k = 0; k < VL; k++)
                    v_store(qb + (size_t)(d0 + k) * VL, r[k]);
            }
            for (; d0 < hd; d0++)
                for (int l = 0; l < VL; l++)
                    qb[(size_t)d0 * VL + l] = qp[i0 + l][d0];
        }
    /* Per key-major block, where every lane sees one unbroken range of keys: the keys all of them
     * see (a tile inside needs no per-lane mask) and the keys any of them sees (a tile outside is
     * skipped); blk_one = 0 where some lane's keys are not one range. */
    int32_t blk_all_lo[BRT_ATTN_QV_MAX / VL], blk_all_hi[BRT_ATTN_QV_MAX / VL];
    int32_t blk_any_lo[BRT_ATTN_QV_MAX / VL], blk_any_hi[BRT_ATTN_QV_MAX / VL];
    uint8_t blk_one[BRT_ATTN_QV_MAX / VL];
    uint32_t blk_on[BRT_ATTN_QV_MAX / VL], blk_full[BRT_ATTN_QV_MAX / VL];
    const int32_t kmb = nkm / VL; /* key-major blocks per head */
    for (int32_t hh = 0, b = 0; hh < nh; hh++)
        for (int32_t i0 = hh * per; i0 < hh * per + nkm; i0 += VL, b++) {
            blk_one[b] = 1;
            blk_all_lo[b] = blk_any_hi[b] = 0;
            blk_all_hi[b] = blk_any_lo[b] = INT32_MAX;
            for (int l = 0; l < VL && blk_one[b]; l++) {
                int32_t rlo = 0, rhi = 0;
                blk_one[b] = vis_range(vis[i0 + l], &rlo, &rhi);
                blk_all_lo[b] = rlo > blk_all_lo[b] ? rlo : blk_all_lo[b];
                blk_all_hi[b] = rhi < blk_all_hi[b] ? rhi : blk_all_hi[b];
                blk_any_lo[b] = rlo < blk_any_lo[b] ? rlo : blk_any_lo[b];
                blk_any_hi[b] = rhi > blk_any_hi[b] ? rhi : blk_any_hi[b];
            }
            blk_all_hi[b] = blk_all_hi[b] < S->n_keys ? blk_all_hi[b] : S->n_keys;
        }
    memset(Vt, 0, (size_t)TILE * hdp * sizeof(float));
    hi = hi < S->n_keys ? hi : S->n_keys;
    int e2;
    const int inv = A->scale_div > 0.0f && isfinite(A->scale_div) && frexpf(A->scale_div, &e2) == 0.5f;
    const score_scale scl = {v_set1(inv ? 1.0f / A->scale_div : A->scale_div), inv};
    key_cursor cur = {0, 0};
    const void *kp[TILE], *vp[TILE], *nkp[TILE], *nvp[TILE];
    brt_dtype dt[TILE], ndt[TILE];
    for (int32_t t0 = lo >= hi ? hi : lo / TILE * TILE; t0 < hi; t0 += TILE) {
        const int32_t t1 = t0 + TILE < S->n_keys ? t0 + TILE : S->n_keys, nt = t1 - t0;
        int32_t n_km = 0, n_qm = 0; /* active key-major blocks, active query vectors in the rest */
        for (int32_t h0 = 0, b = 0; h0 < nqv; h0 += per) {
            for (int32_t i0 = h0; i0 < h0 + nkm; i0 += VL, b++) {
                if (blk_one[b] && t0 >= blk_all_lo[b] && t0 + TILE <= blk_all_hi[b]) {
                    blk_on[b] = blk_full[b] = KM_LANES; /* every lane sees the whole tile */
                } else if (blk_one[b] && (t1 <= blk_any_lo[b] || t0 >= blk_any_hi[b])) {
                    blk_on[b] = blk_full[b] = 0; /* no lane sees any of it */
                } else {
                    blk_on[b] = blk_full[b] = 0;
                    for (int l = 0; l < VL; l++) {
                        mask[i0 + l] = tile_mask(vis[i0 + l], t0, t1);
                        blk_on[b] |= (uint32_t)(mask[i0 + l] != 0) << l;
                        blk_full[b] |= (uint32_t)(mask[i0 + l] == 0xffffffffu) << l;
                    }
                }
                n_km += blk_on[b] != 0;
            }
            for (int32_t i = h0 + nkm; i < h0 + per; i++) {
                mask[i] = tile_mask(vis[i], t0, t1);
                n_qm += mask[i] != 0;
            }
        }
        if (!n_km && !n_qm)
            continue;
        key_rows(S, kvh0, hd, &cur, t0, nt, kp, vp, dt);
        /* The next tile's rows (this task's heads of each key slot, in memory order) start on
         * their way to L2 while this one is computed, a few lines per group of query vectors: one
         * burst would stall on the miss queue, and L1 could not hold them until they are used. */
        pf_queue pq = {0};
        if (t1 < hi) {
            int32_t nn = hi - t1 < TILE ? hi - t1 : TILE;
            key_cursor pfc = cur;
            key_rows(S, kvh0, hd, &pfc, t1, nn, nkp, nvp, ndt);
            for (int32_t j = 0; j < nn; j++) {
                pq.row[pq.n++] = nkp[j];
                pq.row[pq.n++] = nvp[j];
            }
            pq.bytes = nh * hd * (ndt[0] == BRT_DT_F32 ? 4 : 2);
            int64_t lines = (int64_t)pq.n * ((pq.bytes + 63) / 64 + 1),
                    groups = nh + 2 * (n_km + nh) + (n_qm + QK_QB - 1) / QK_QB +
                             (n_qm + PV_QB - 1) / PV_QB;
            pq.per_step = (int32_t)((lines + groups - 1) / groups);
        }
        for (int32_t hh = 0; hh < nh; hh++) {
            /* this head's active query vectors: key-major blocks that have one, the rest in order */
            const int32_t h0 = hh * per;
            int32_t n_act = 0, any_km = 0;
            for (int32_t b = hh * kmb; b < (hh + 1) * kmb && !any_km; b++)
                any_km = blk_on[b] != 0;
            for (int32_t i = h0 + nkm; i < h0 + per; i++)
                if (mask[i])
                    act[n_act++] = i;
            if (!n_act && !any_km)
                continue;
            const void *hkp[TILE], *hvp[TILE];
            for (int32_t j = 0; j < nt; j++) {
                size_t off = (size_t)hh * (size_t)hd * (dt[j] == BRT_DT_F32 ? 4 : 2);
                hkp[j] = (const char *)kp[j] + off;
                hvp[j] = (const char *)vp[j] + off;
            }
            pf_issue(&pq, pq.per_step);
            gather_tile(hkp, hvp, dt, nt, hd, hdp, Kt, Vt);
            for (int32_t i0 = h0, b = hh * kmb; i0 < h0 + nkm; i0 += VL, b++) {
                if (!blk_on[b])
                    continue;
                pf_issue(&pq, 2 * pq.per_step);
                km_tile(qt + (size_t)i0 * hdp, Kt, Vt, hd, hdp, nt, scl, mask + i0, blk_on[b], blk_full[b], ms + i0,
                        ls + i0, acc + (size_t)i0 * hdp, sc);
            }
            /* 1. scores of every active query vector (row a of sc) */
            for (int32_t a = 0; a < n_act; a += QK_QB) {
                const int nq = n_act - a < QK_QB ? n_act - a : QK_QB;
                const float *q[QK_QB];
                for (int i = 0; i < nq; i++)
                    q[i] = qp[act[a + i]];
                float *out = sc + (size_t)a * TILE;
                pf_issue(&pq, pq.per_step);
                switch (nq) {
#if QK_QB >= 8
                case 8: qk_group(8, q, Kt, hd, scl, out); break;
                case 7: qk_group(7, q, Kt, hd, scl, out); break;
                case 6: qk_group(6, q, Kt, hd, scl, out); break;
                case 5: qk_group(5, q, Kt, hd, scl, out); break;
                case 4: qk_group(4, q, Kt, hd, scl, out); break;
                case 3: qk_group(3, q, Kt, hd, scl, out); break;
#endif
                case 2: qk_group(2, q, Kt, hd, scl, out); break;
                default: qk_group(1, q, Kt, hd, scl, out); break;
                }
            }
            /* 2. the softmax update of each: independent chains, so they overlap; the corrections
             * exp(m - m') of VL query vectors go through one vector exp (lane-wise the same) */
            for (int32_t a = 0; a < n_act; a++) {
                const int32_t x = act[a];
                float *si = sc + (size_t)a * TILE;
                vf xs[TV];
                for (int c = 0; c < TV; c++)
                    xs[c] = v_load(si + c * VL);
                if (mask[x] != 0xffffffffu)
                    for (int c = 0; c < TV; c++)
                        v_store(si + c * VL, xs[c] = v_keep_bits(xs[c], mask[x] >> (c * VL), -INFINITY));
                vf mv = xs[0];
                for (int c = 1; c < TV; c++)
                    mv = v_max(mv, xs[c]);
                float mt = v_hmax(mv), mo = ms[x], mn = mo > mt ? mo : mt;
                mnew[a] = mn;
                dm[a] = mo - mn;
                fix[a] = mo != -INFINITY && mo != mn;
            }
            for (int32_t a = n_act; a % VL; a++)
                dm[a] = 0.0f;
            for (int32_t a = 0; a < n_act; a += VL) {
                vf e = v_exp(v_load(dm + a));
                v_store(corr + a, e);
            }
            for (int32_t a = 0; a < n_act; a++) {
                const int32_t x = act[a];
                float *si = sc + (size_t)a * TILE;
                const vf mnv = v_set1(mnew[a]);
                vf sum = v_zero();
                for (int c = 0; c < TV; c++) {
                    vf p = v_exp(v_sub(v_load(si + c * VL), mnv));
                    v_store(si + c * VL, p);
                    sum = v_add(sum, p);
                }
                float cf = fix[a] ? corr[a] : 1.0f;
                corr[a] = cf;
                ms[x] = mnew[a];
                ls[x] = fmaf(ls[x], cf, v_hsum(sum)); /* one rounding, as km_tile's v_fma */
            }
            /* 3. acc = acc * correction + P V */
            for (int32_t a = 0; a < n_act; a += PV_QB) {
                const int nq = n_act - a < PV_QB ? n_act - a : PV_QB;
                float *ac[PV_QB];
                const float *p[PV_QB];
                for (int i = 0; i < nq; i++) {
                    ac[i] = acc + (size_t)act[a + i] * hdp;
                    p[i] = sc + (size_t)(a + i) * TILE;
                }
                pf_issue(&pq, pq.per_step);
                switch (nq) {
#if PV_QB >= 8
                case 8: pv_group(8, ac, corr + a, p, Vt, hd, hdp, nt); break;
                case 7: pv_group(7, ac, corr + a, p, Vt, hd, hdp, nt); break;
                case 6: pv_group(6, ac, corr + a, p, Vt, hd, hdp, nt); break;
                case 5: pv_group(5, ac, corr + a, p, Vt, hd, hdp, nt); break;
#endif
                case 4: pv_group(4, ac, corr + a, p, Vt, hd, hdp, nt); break;
                case 3: pv_group(3, ac, corr + a, p, Vt, hd, hdp, nt); break;
                case 2: pv_group(2, ac, corr + a, p, Vt, hd, hdp, nt); break;
                default: pv_group(1, ac, corr + a, p, Vt, hd, hdp, nt); break;
                }
            }
        }
        pf_issue(&pq, INT32_MAX);
    }
    float *op[BRT_ATTN_QV_MAX];
    for (int32_t i = 0; i < nqv; i++) {
        int32_t qv = qv0 + i % per, row = qv / G, h = (kvh0 + i / per) * G + qv % G;
        op[i] = S->out + (int64_t)row * S->ld_o + (int64_t)h * hd;
    }
    for (int32_t h0 = 0; h0 < nqv; h0 += per) {
        for (int32_t i0 = h0; i0 < h0 + nkm; i0 += VL) {
            /* acc [hdp][VL] back to rows, VL x VL squares transposed in registers */
            const float *ab = acc + (size_t)i0 * hdp;
            int32_t d0 = 0;
            for (; d0 + VL <= hd; d0 += VL) {
                vf r[VL];
                for (int k = 0; k < VL; k++)
                    r[k] = v_load(ab + (size_t)(d0 + k) * VL);
                v_transpose(r);
                for (int l = 0; l < VL; l++) {
                    const float lf = ls[i0 + l];
                    v_store(op[i0 + l] + d0, lf > 0.0f ? v_div(r[l], v_set1(lf)) : v_zero());
                }
            }
            for (; d0 < hd; d0++)
                for (int l = 0; l < VL; l++) {
                    const float lf = ls[i0 + l];
                    op[i0 + l][d0] = lf > 0.0f ? ab[(size_t)d0 * VL + l] / lf : 0.0f;
                }
        }
        for (int32_t i = h0 + nkm; i < h0 + per; i++) {
            const float *ai = acc + (size_t)i * hdp;
            const float l = ls[i];
            for (int32_t d = 0; d < hd; d++)
                op[i][d] = l > 0.0f ? ai[d] / l : 0.0f;
        }
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

/* log(sum(exp(x))) for log-probabilities over a vocabulary: the max, then exp(x - max) in f32
 * lanes added lane-wise in double, the lanes then in order. NAN where x holds a NaN or an
 * infinity (x * 0 is then not 0): the caller takes the plain-C reference for those. */
static double logsumexp_row(const float *x, int64_t n)
{
    vf mx = v_set1(-INFINITY), nonfinite = v_zero();
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        const vf v = v_load(x + i);
        mx = v_max(mx, v);
        nonfinite = v_fma(v, v_zero(), nonfinite);
    }
    float m = v_hmax(mx), bad = v_hsum(nonfinite);
    for (int64_t t = i; t < n; t++) {
        m = x[t] > m ? x[t] : m;
        bad += x[t] * 0.0f;
    }
    if (bad != 0.0f || !isfinite(m))
        return NAN;
    const vf mv = v_set1(m);
    double lane[VL] = {0};
    _Alignas(64) float e[VL];
    for (int64_t j = 0; j < i; j += VL) {
        v_store(e, v_exp(v_sub(v_load(x + j), mv)));
        for (int l = 0; l < VL; l++)
            lane[l] += e[l];
    }
    double sum = 0;
    for (int l = 0; l < VL; l++)
        sum += lane[l];
    for (; i < n; i++)
        sum += exp((double)x[i] - m);
    return m + log(sum);
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
    .gemm_nr = NP,
    .gemm_mr = OMR,
    .gemm_cols = gemm_cols,
    .gemm_scratch_floats = gemm_scratch_floats,
    .attn = attn,
    .rmsnorm_row = rmsnorm_row,
    .silu_mul_row = silu_mul_row,
    .add_row = add_row,
    .rope_row = rope_row,
    .to_f32_row = to_f32_row,
    .logsumexp_row = logsumexp_row,
};
