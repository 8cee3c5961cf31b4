/* Attention on the GPU, flash style: never a score matrix in memory. One block per (segment, kv
 * head, 32 query vectors of that head group); the block streams its segment's keys in tiles of BK
 * through shared memory (K and V converted to f32 from the spans' f32 or bf16 slots, found by the
 * key's span), each warp keeps 4 query vectors' online-softmax state (running max, sum and
 * accumulator, f32) in registers. Within a tile, lane j scores key j of a 32-key chunk against the
 * warp's queries; a chunk a query sees nothing of leaves that query's state untouched, as on the
 * CPU. Tiles outside every row's visible intervals are skipped. Works for any policy's segments:
 * condensed memory, the open window with its masks, v2 interleave, FoT memory + local cache.
 *
 * Tensor-core (mma) tiles are the next step for speed; this version is the simple, checked one. */
#include <math.h>
#include <stdlib.h>

#include "cuda/cuda_impl.h"

#define WARPS 8
#define QPW 4                 /* query vectors per warp */
#define BQ (WARPS * QPW)      /* query vectors per block */

typedef struct seg_desc {
    uint64_t q, out;          /* device addresses of row 0 */
    int64_t ld_q, ld_o;
    int32_t rows, n_keys;
    int32_t span0, n_spans;   /* into the span table */
    int32_t vis0, pad;        /* into the vis table */
} seg_desc;

typedef struct span_desc {
    uint64_t k, v;
    int64_t ld;               /* elements between slots */
    int32_t start, n;         /* first key index (virtual), keys */
    int32_t dtype, pad;
} span_desc;

typedef struct blk_desc {
    int32_t seg, kvh, qv0;
    int32_t klo, khi;         /* keys any of the block's rows may see */
} blk_desc;

typedef struct vis_desc {
    int32_t lo[BRT_ATTN_MAX_INTERVALS], hi[BRT_ATTN_MAX_INTERVALS];
    int32_t n;
} vis_desc;

__device__ __forceinline__ int visible(const vis_desc &v, int t)
{
    int ok = 0;
#pragma unroll
    for (int i = 0; i < BRT_ATTN_MAX_INTERVALS; i++)
        ok |= i < v.n && t >= v.lo[i] && t < v.hi[i];
    return ok;
}

__device__ __forceinline__ int meets(const vis_desc &v, int a, int b)
{
    int ok = 0;
#pragma unroll
    for (int i = 0; i < BRT_ATTN_MAX_INTERVALS; i++)
        ok |= i < v.n && v.lo[i] < b && a < v.hi[i];
    return ok;
}

/* DPL: head-dimension values per lane (head_dim <= 32 * DPL); BK keys per tile. */
template <int DPL, int BK>
__global__ void __launch_bounds__(WARPS * 32) k_attention(const seg_desc *segs, const span_desc *spans,
                                                          const vis_desc *vis, const blk_desc *blks, int n_heads,
                                                          int n_kv_heads, int D, float scale_div)
{
    extern __shared__ float smem[];
    float *Ks = smem;                          /* [BK][D + 1] */
    float *Vs = Ks + BK * (D + 1);             /* [BK][D] */
    float *Qs = Vs + BK * D;                   /* [BQ][D] */
    const char **kp = (const char **)(Qs + BQ * D); /* [BK] slot addresses */
    const char **vp = kp + BK;                 /* [BK] */
    int *kdt = (int *)(vp + BK);               /* [BK] */

    const blk_desc b = blks[blockIdx.x];
    const seg_desc sg = segs[b.seg];
    const int G = n_heads / n_kv_heads, nqv = sg.rows * G;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    /* this warp's query vectors */
    vis_desc qvis[QPW];
    int qrow[QPW], qhead[QPW], live[QPW];
#pragma unroll
    for (int qq = 0; qq < QPW; qq++) {
        const int qv = b.qv0 + warp * QPW + qq;
        live[qq] = qv < nqv;
        qrow[qq] = live[qq] ? qv / G : 0;
        qhead[qq] = b.kvh * G + (live[qq] ? qv % G : 0);
        qvis[qq] = vis[sg.vis0 + qrow[qq]];
        if (!live[qq])
            qvis[qq].n = 0;
        float *qs = Qs + (warp * QPW + qq) * D;
        const float *q = (const float *)sg.q + (int64_t)qrow[qq] * sg.ld_q + (int64_t)qhead[qq] * D;
        for (int d = lane; d < D; d += 32)
            qs[d] = live[qq] ? q[d] : 0.0f;
    }
    float m[QPW], l[QPW], acc[QPW][DPL];
#pragma unroll
    for (int qq = 0; qq < QPW; qq++) {
        m[qq] = -INFINITY;
        l[qq] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            acc[qq][i] = 0.0f;
    }
    const int t_begin = b.klo / BK * BK, t_end = b.khi < sg.n_keys ? b.khi : sg.n_keys;
    for (int t0 = t_begin; t0 < t_end; t0 += BK) {
        __syncthreads(); /* the previous tile is consumed (and Qs written, the first time) */
        /* where each key of the tile lives: its span, by binary search over the span starts */
        if (threadIdx.x < BK) {
            const int t = t0 + threadIdx.x;
            kp[threadIdx.x] = NULL;
            if (t < sg.n_keys) {
                int lo = 0, hi = sg.n_spans - 1;
                while (lo < hi) {
                    const int mid = (lo + hi + 1) / 2;
                    if (spans[sg.span0 + mid].start <= t)
                        lo = mid;
                    else
                        hi = mid - 1;
                }
                const span_desc sp = spans[sg.span0 + lo];
                const size_t es = sp.dtype == BRT_DT_F32 ? 4 : 2;
                const size_t off = ((size_t)(t - sp.start) * (size_t)sp.ld + (size_t)b.kvh * D) * es;
                kp[threadIdx.x] = (const char *)sp.k + off;
                vp[threadIdx.x] = (const char *)sp.v + off;
                kdt[threadIdx.x] = sp.dtype;
            }
        }
        __syncthreads();
        for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
            const int kk = e / D, d = e % D;
            float kv = 0.0f, vv = 0.0f;
            if (kp[kk]) {
                kv = brt_dev_load(kp[kk], kdt[kk], d);
                vv = brt_dev_load(vp[kk], kdt[kk], d);
            }
            Ks[kk * (D + 1) + d] = kv;
            Vs[kk * D + d] = vv;
        }
        __syncthreads();
        for (int c0 = 0; c0 < BK; c0 += 32) {
            const int ca = t0 + c0, cb = ca + 32;
            int any = 0;
#pragma unroll
            for (int qq = 0; qq < QPW; qq++)
                any |= meets(qvis[qq], ca, cb);
            if (!any)
                continue;
            const int kk = c0 + lane, t = t0 + kk;
            float s[QPW];
#pragma unroll
            for (int qq = 0; qq < QPW; qq++)
                s[qq] = 0.0f;
            const float *kr = Ks + kk * (D + 1);
            for (int d = 0; d < D; d++) {
                const float kd = kr[d];
#pragma unroll
                for (int qq = 0; qq < QPW; qq++)
                    s[qq] = fmaf(Qs[(warp * QPW + qq) * D + d], kd, s[qq]);
            }
#pragma unroll
            for (int qq = 0; qq < QPW; qq++) {
                const int see = t < sg.n_keys && visible(qvis[qq], t);
                float sc = see ? s[qq] / scale_div : -INFINITY;
                float cm = sc;
                for (int o = 16; o > 0; o >>= 1)
                    cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, o));
                if (cm == -INFINITY)
                    continue; /* nothing visible in this chunk: the state stays as it is */
                const float mn = fmaxf(m[qq], cm);
                const float corr = m[qq] == -INFINITY ? 1.0f : expf(m[qq] - mn);
                const float p = see ? expf(sc - mn) : 0.0f;
                float ps = p;
                for (int o = 16; o > 0; o >>= 1)
                    ps += __shfl_xor_sync(0xffffffffu, ps, o);
                m[qq] = mn;
                l[qq] = l[qq] * corr + ps;
#pragma unroll
                for (int i = 0; i < DPL; i++)
                    acc[qq][i] *= corr;
                for (int j = 0; j < 32; j++) {
                    const float pj = __shfl_sync(0xffffffffu, p, j);
                    if (pj == 0.0f)
                        continue;
                    const float *vr = Vs + (c0 + j) * D;
#pragma unroll
                    for (int i = 0; i < DPL; i++) {
                        const int d = lane + 32 * i;
                        if (d < D)
                            acc[qq][i] = fmaf(pj, vr[d], acc[qq][i]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int qq = 0; qq < QPW; qq++) {
        if (!live[qq])
            continue;
        float *o = (float *)sg.out + (int64_t)qrow[qq] * sg.ld_o + (int64_t)qhead[qq] * D;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
            if (d < D)
                o[d] = l[qq] > 0.0f ? acc[qq][i] / l[qq] : 0.0f;
        }
    }
}

static size_t smem_bytes(int D, int BK)
{
    return (size_t)(BK * (D + 1) + BK * D + BQ * D) * sizeof(float) + (size_t)BK * (2 * sizeof(void *) + sizeof(int));
}

template <int DPL, int BK>
static brt_status launch(brt_backend *be, unsigned n_blocks, const seg_desc *segs, const span_desc *spans,
                         const vis_desc *vis, const blk_desc *blks, const brt_attn_args *a, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    const size_t sm = smem_bytes(a->head_dim, BK);
    if (sm > ci->smem_optin)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "attention: head dimension %d needs %zu bytes of shared memory; GPU %d "
                                                  "allows %zu",
                        a->head_dim, sm, ci->dev, ci->smem_optin);
    CU_TRY(cudaFuncSetAttribute(k_attention<DPL, BK>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
    k_attention<DPL, BK><<<n_blocks, WARPS * 32, sm, ci->stream>>>(segs, spans, vis, blks, a->n_heads, a->n_kv_heads,
                                                                   a->head_dim, a->scale_div);
    LAUNCH_TRY("attention");
    return BRT_OK;
}

static brt_status cu_attention(brt_backend *be, const brt_attn_args *a, brt_err *err)
{
    if (a->n_segs <= 0)
        return BRT_OK;
    const int D = a->head_dim, G = a->n_heads / a->n_kv_heads;
    if (D > 256 || D % 2)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "attention on the GPU: head dimension %d (even, at most 256)", D);
    int64_t n_spans = 0, n_rows = 0, n_blocks = 0;
    for (int32_t s = 0; s < a->n_segs; s++) {
        n_spans += a->segs[s].n_spans;
        n_rows += a->segs[s].rows;
        n_blocks += (int64_t)a->n_kv_heads * ((a->segs[s].rows * G + BQ - 1) / BQ);
    }
    seg_desc *sd = (seg_desc *)malloc((size_t)a->n_segs * sizeof *sd);
    span_desc *pd = (span_desc *)malloc((size_t)(n_spans ? n_spans : 1) * sizeof *pd);
    vis_desc *vd = (vis_desc *)malloc((size_t)(n_rows ? n_rows : 1) * sizeof *vd);
    blk_desc *bd = (blk_desc *)malloc((size_t)(n_blocks ? n_blocks : 1) * sizeof *bd);
    brt_status st = BRT_OK;
    if (!sd || !pd || !vd || !bd) {
        st = brt_errf(err, BRT_ERR_NOMEM, "attention: out of host memory");
        goto out;
    }
    {
        int64_t sp = 0, vr = 0, bk = 0;
        for (int32_t s = 0; s < a->n_segs; s++) {
            const brt_attn_seg *g = &a->segs[s];
            sd[s] = (seg_desc){(uint64_t)dptr(g->q), (uint64_t)dptr(g->out), g->q.ld, g->out.ld, g->rows, g->n_keys,
                               (int32_t)sp, g->n_spans, (int32_t)vr, 0};
            int32_t start = 0;
            for (int32_t i = 0; i < g->n_spans; i++) {
                const brt_kv_span *k = &g->spans[i];
                if (k->k.ld != k->v.ld || k->k.dtype != k->v.dtype) {
                    st = brt_errf(err, BRT_ERR_INTERNAL, "attention: a span's K and V differ in stride or dtype");
                    goto out;
                }
                pd[sp++] = (span_desc){(uint64_t)dptr(k->k), (uint64_t)dptr(k->v), k->k.ld, start, k->n,
                                       (int32_t)k->k.dtype, 0};
                start += k->n;
            }
            if (start != g->n_keys) {
                st = brt_errf(err, BRT_ERR_INTERNAL, "attention: segment %d has %d keys in its spans, %d announced", s,
                              start, g->n_keys);
                goto out;
            }
            for (int32_t r = 0; r < g->rows; r++) {
                const brt_attn_vis *v = &g->vis[r];
                vis_desc *o = &vd[vr + r];
                *o = (vis_desc){{0}, {0}, v->n < BRT_ATTN_MAX_INTERVALS ? v->n : BRT_ATTN_MAX_INTERVALS};
                for (int i = 0; i < o->n; i++) {
                    o->lo[i] = v->lo[i];
                    o->hi[i] = v->hi[i];
                }
            }
            /* blocks: 32 query vectors of one kv head; the keys their rows see at all */
            const int32_t nqv = g->rows * G;
            for (int32_t kvh = 0; kvh < a->n_kv_heads; kvh++)
                for (int32_t q0 = 0; q0 < nqv; q0 += BQ) {
                    int32_t lo = INT32_MAX, hi = 0;
                    const int32_t r1 = (q0 + BQ < nqv ? q0 + BQ : nqv) - 1;
                    for (int32_t r = q0 / G; r <= r1 / G; r++)
                        for (int i = 0; i < vd[vr + r].n; i++)
                            if (vd[vr + r].hi[i] > vd[vr + r].lo[i]) {
                                lo = vd[vr + r].lo[i] < lo ? vd[vr + r].lo[i] : lo;
                                hi = vd[vr + r].hi[i] > hi ? vd[vr + r].hi[i] : hi;
                            }
                    bd[bk++] = (blk_desc){s, kvh, q0, lo == INT32_MAX ? 0 : lo, hi};
                }
            vr += g->rows;
        }
    }
    {
        if (n_blocks == 0)
            goto out;
        const void *tabs[4] = {sd, pd, vd, bd};
        const size_t sizes[4] = {(size_t)a->n_segs * sizeof *sd, (size_t)(n_spans ? n_spans : 1) * sizeof *pd,
                                 (size_t)(n_rows ? n_rows : 1) * sizeof *vd, (size_t)n_blocks * sizeof *bd};
        void *devs[4];
        if ((st = brt_cuda_uploads(be, 4, tabs, sizes, devs, err)) != BRT_OK)
            goto out;
        const seg_desc *S = (const seg_desc *)devs[0];
        const span_desc *P = (const span_desc *)devs[1];
        const vis_desc *V = (const vis_desc *)devs[2];
        const blk_desc *B = (const blk_desc *)devs[3];
        const unsigned nb = (unsigned)n_blocks;
        if (D <= 64)
            st = launch<2, 64>(be, nb, S, P, V, B, a, err);
        else if (D <= 128)
            st = launch<4, 64>(be, nb, S, P, V, B, a, err);
        else
            st = launch<8, 32>(be, nb, S, P, V, B, a, err);
    }
out:
    free(sd);
    free(pd);
    free(vd);
    free(bd);
    return st;
}

void brt_cuda_set_attention_op(brt_backend *be) { be->attention = cu_attention; }
