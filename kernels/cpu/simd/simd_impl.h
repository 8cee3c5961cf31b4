/* The vector vocabulary the CPU kernels are written in. simd_kernels.c is compiled once per
 * instruction set (CMakeLists.txt defines BRT_SIMD_ISA_<isa>); each build gets its own
 * symbol suffix, and the backend picks one by cpuid at run time.
 *
 * Reductions (v_hsum, v_hmax) use one fixed tree per ISA, so a value never depends on where
 * in a tile or micro-batch it was computed. */
#ifndef BRT_SIMD_IMPL_H
#define BRT_SIMD_IMPL_H

#include <stdint.h>
#include <string.h>

#if defined(BRT_SIMD_ISA_avx512)
#include <immintrin.h>
#define VL 16
#define ISA_SUFFIX(n) n##_avx512
typedef __m512 vf;
static inline vf v_zero(void) { return _mm512_setzero_ps(); }
static inline vf v_set1(float x) { return _mm512_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_store(float *p, vf x) { _mm512_storeu_ps(p, x); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf v_floor(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
static inline vf v_pow2i(vf n) /* 2^n for integral n in float range */
{
    __m512i i = _mm512_cvtps_epi32(n);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23));
}
static inline vf v_load_bf16(const uint16_t *p)
{
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline vf v_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline float v_hsum(vf x)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
static inline float v_hmax(vf x)
{
    __m256 a = _mm256_max_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
/* y where x >= t, else 0 */
static inline vf v_keep_ge(vf x, float t, vf y) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(t), _CMP_GE_OQ), y); }
/* bit l set where lane l of a != lane l of b (C's !=: true when either is NaN) */
static inline uint32_t v_ne_bits(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
/* x in the lanes whose bit of `bits` is set, fill in the others */
static inline vf v_keep_bits(vf x, uint32_t bits, float fill)
{
    return _mm512_mask_blend_ps((__mmask16)bits, _mm512_set1_ps(fill), x);
}
/* x in the lanes whose bit of `bits` is set, y in the others */
static inline vf v_select_bits(uint32_t bits, vf x, vf y) { return _mm512_mask_blend_ps((__mmask16)bits, y, x); }
/* r[i][j] <- r[j][i]: 16 x 16 in registers (pairs, then quads, then 128-bit blocks) */
static inline void v_transpose(vf r[VL])
{
    __m512 t[16];
    for (int j = 0; j < 16; j += 2) {
        t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 16; j += 4) {
        __m512d a = _mm512_castps_pd(t[j]), b = _mm512_castps_pd(t[j + 1]), c = _mm512_castps_pd(t[j + 2]),
                d = _mm512_castps_pd(t[j + 3]);
        r[j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; j++) {
        __m512 b0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44), b1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xee);
        __m512 b2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44), b3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xee);
        t[j] = _mm512_shuffle_f32x4(b0, b2, 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(b0, b2, 0xdd);
        t[8 + j] = _mm512_shuffle_f32x4(b1, b3, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(b1, b3, 0xdd);
    }
    for (int j = 0; j < 16; j++)
        r[j] = t[j];
}
#define GEMM_OMR 12 /* GEMM register tile (simd_kernels.c): rows x vectors of columns */
#define GEMM_ONV 2

#elif defined(BRT_SIMD_ISA_avx2)
#include <immintrin.h>
#define VL 8
#define ISA_SUFFIX(n) n##_avx2
typedef __m256 vf;
static inline vf v_zero(void) { return _mm256_setzero_ps(); }
static inline vf v_set1(float x) { return _mm256_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_store(float *p, vf x) { _mm256_storeu_ps(p, x); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf v_floor(vf a) { return _mm256_floor_ps(a); }
static inline vf v_pow2i(vf n)
{
    __m256i i = _mm256_cvtps_epi32(n);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23));
}
static inline vf v_load_bf16(const uint16_t *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline vf v_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline float v_hsum(vf x)
{
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
static inline float v_hmax(vf x)
{
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
static inline vf v_keep_ge(vf x, float t, vf y) { return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(t), _CMP_GE_OQ), y); }
static inline uint32_t v_ne_bits(vf a, vf b) { return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_NEQ_UQ)); }
static inline vf v_select_bits(uint32_t bits, vf x, vf y)
{
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lane), lane);
    return _mm256_blendv_ps(y, x, _mm256_castsi256_ps(on));
}
static inline vf v_keep_bits(vf x, uint32_t bits, float fill) { return v_select_bits(bits, x, _mm256_set1_ps(fill)); }
static inline void v_transpose(vf r[VL])
{
    __m256 t[8], u[8];
    for (int j = 0; j < 8; j += 2) {
        t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 8; j += 4) {
        u[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
        u[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xee);
        u[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
        u[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}
#define GEMM_OMR 6
#define GEMM_ONV 2

#else /* generic C: fixed-size arrays the compiler may vectorise */
#include <math.h>
#define VL 8
#define ISA_SUFFIX(n) n##_generic
typedef struct {
    float x[VL];
} vf;
#define VF_LOOP(expr)             \
    vf r_;                        \
    for (int l_ = 0; l_ < VL; l_++) \
        r_.x[l_] = (expr);        \
    return r_
static inline vf v_zero(void) { VF_LOOP(0.0f); }
static inline vf v_set1(float x) { VF_LOOP(x); }
static inline vf v_load(const float *p) { VF_LOOP(p[l_]); }
static inline void v_store(float *p, vf x) { memcpy(p, x.x, sizeof x.x); }
static inline vf v_fma(vf a, vf b, vf c) { VF_LOOP(fmaf(a.x[l_], b.x[l_], c.x[l_])); }
static inline vf v_add(vf a, vf b) { VF_LOOP(a.x[l_] + b.x[l_]); }
static inline vf v_sub(vf a, vf b) { VF_LOOP(a.x[l_] - b.x[l_]); }
static inline vf v_mul(vf a, vf b) { VF_LOOP(a.x[l_] * b.x[l_]); }
static inline vf v_div(vf a, vf b) { VF_LOOP(a.x[l_] / b.x[l_]); }
static inline vf v_max(vf a, vf b) { VF_LOOP(a.x[l_] > b.x[l_] ? a.x[l_] : b.x[l_]); }
static inline vf v_min(vf a, vf b) { VF_LOOP(a.x[l_] < b.x[l_] ? a.x[l_] : b.x[l_]); }
static inline vf v_floor(vf a) { VF_LOOP(floorf(a.x[l_])); }
static inline vf v_pow2i(vf n) { VF_LOOP(ldexpf(1.0f, (int)n.x[l_])); }
static inline vf v_load_bf16(const uint16_t *p)
{
    vf r;
    for (int l = 0; l < VL; l++) {
        uint32_t u = (uint32_t)p[l] << 16;
        memcpy(&r.x[l], &u, 4);
    }
    return r;
}
static inline float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        u = sign | 0x7f800000u | (man << 13);
    else
        u = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline vf v_load_f16(const uint16_t *p) { VF_LOOP(half_to_float(p[l_])); }
static inline float v_hsum(vf x)
{
    float a[4], b[2];
    for (int i = 0; i < 4; i++)
        a[i] = x.x[i] + x.x[i + 4];
    b[0] = a[0] + a[2];
    b[1] = a[1] + a[3];
    return b[0] + b[1];
}
static inline float v_hmax(vf x)
{
    float m = x.x[0];
    for (int i = 1; i < VL; i++)
        m = x.x[i] > m ? x.x[i] : m;
    return m;
}
static inline vf v_keep_ge(vf x, float t, vf y) { VF_LOOP(x.x[l_] >= t ? y.x[l_] : 0.0f); }
static inline uint32_t v_ne_bits(vf a, vf b)
{
    uint32_t m = 0;
    for (int l = 0; l < VL; l++)
        m |= (uint32_t)(a.x[l] != b.x[l]) << l;
    return m;
}
static inline vf v_keep_bits(vf x, uint32_t bits, float fill) { VF_LOOP(bits >> l_ & 1u ? x.x[l_] : fill); }
static inline vf v_select_bits(uint32_t bits, vf x, vf y) { VF_LOOP(bits >> l_ & 1u ? x.x[l_] : y.x[l_]); }
static inline void v_transpose(vf r[VL])
{
    vf t[VL];
    for (int i = 0; i < VL; i++)
        for (int j = 0; j < VL; j++)
            t[i].x[j] = r[j].x[i];
    for (int i = 0; i < VL; i++)
        r[i] = t[i];
}
#define GEMM_OMR 4
#define GEMM_ONV 2
#endif

/* Lane l of the result = v_hsum of (r[0][l], r[1][l], ..., r[VL-1][l]): every v_hsum above is
 * the same halving tree (element i + element i + n/2, down to one), here taken across vectors
 * instead of across lanes, so the two give the same bits. r is overwritten. */
static inline vf v_hsum_lanes(vf r[VL])
{
    for (int h = VL / 2; h >= 1; h /= 2)
        for (int i = 0; i < h; i++)
            r[i] = v_add(r[i], r[i + h]);
    return r[0];
}

/* exp(x) for the softmax and SiLU: Cephes-style range reduction and polynomial (~1 ulp),
 * the same on every lane and every call. exp(-inf) = 0. */
static inline vf v_exp(vf x)
{
    const vf hi = v_set1(88.3762626647949f), lo = v_set1(-87.3365447504019f);
    vf xc = v_max(v_min(x, hi), lo);
    vf n = v_floor(v_fma(xc, v_set1(1.44269504088896341f), v_set1(0.5f)));
    vf r = v_fma(n, v_set1(-0.693359375f), xc);
    r = v_fma(n, v_set1(2.12194440e-4f), r);
    vf y = v_set1(1.9875691500E-4f);
    y = v_fma(y, r, v_set1(1.3981999507E-3f));
    y = v_fma(y, r, v_set1(8.3334519073E-3f));
    y = v_fma(y, r, v_set1(4.1665795894E-2f));
    y = v_fma(y, r, v_set1(1.6666665459E-1f));
    y = v_fma(y, r, v_set1(5.0000001201E-1f));
    y = v_fma(y, v_mul(r, r), v_add(r, v_set1(1.0f)));
    y = v_mul(y, v_pow2i(n));
    /* below the clamp the true value underflows: exactly 0 (masked scores are -inf) */
    return v_keep_ge(x, -87.3365447504019f, y);
}

/* Bring [p, p + bytes) towards L1 ahead of its use: strided rows (one head of each key, one
 * weight row per column) defeat the hardware prefetchers. */
static inline void v_prefetch_range(const void *p, int64_t bytes)
{
    for (int64_t o = 0; o < bytes; o += 64)
        __builtin_prefetch((const char *)p + o, 0, 3);
}

#endif
