#include "engine/kvstate.h"

#include <stdlib.h>
#include <string.h>

void brt_layer_state_init(brt_layer_state *ls, brt_kvpool *pool, int32_t kv_dim, brt_dtype mem_dtype, int keep_kpre)
{
    memset(ls, 0, sizeof *ls);
    brt_kvseq_init(&ls->sink_k, BRT_DT_F32, kv_dim, pool);
    brt_kvseq_init(&ls->sink_v, BRT_DT_F32, kv_dim, pool);
    brt_kvseq_init(&ls->mem_k, mem_dtype, kv_dim, pool);
    brt_kvseq_init(&ls->mem_v, mem_dtype, kv_dim, pool);
    brt_kvseq_init(&ls->raw_k, BRT_DT_F32, kv_dim, pool);
    brt_kvseq_init(&ls->raw_v, BRT_DT_F32, kv_dim, pool);
    brt_kvseq_init(&ls->raw_kpre, BRT_DT_F32, kv_dim, pool);
    ls->has_kpre = keep_kpre;
}

void brt_layer_state_clear(brt_layer_state *ls, brt_kvpool *pool)
{
    brt_kvseq_clear(&ls->sink_k, pool);
    brt_kvseq_clear(&ls->sink_v, pool);
    brt_kvseq_clear(&ls->mem_k, pool);
    brt_kvseq_clear(&ls->mem_v, pool);
    brt_kvseq_clear(&ls->raw_k, pool);
    brt_kvseq_clear(&ls->raw_v, pool);
    brt_kvseq_clear(&ls->raw_kpre, pool);
    ls->raw_base = 0;
}

void brt_rope_rows(brt_rope_ctx *rc, float *x, int64_t ld, int32_t rows, int32_t heads, const int32_t *pos)
{
    for (int32_t done = 0; done < rows; done += rc->tmp_rows) {
        int32_t n = rows - done < rc->tmp_rows ? rows - done : rc->tmp_rows;
        for (int32_t i = 0; i < n; i++)
            rc->tmp_pos[i] = rc->pos_div == 1.0f ? (float)pos[done + i] : (float)pos[done + i] / rc->pos_div;
        rc->be->rope(rc->be, x + (int64_t)done * ld, ld, n, heads, rc->head_dim, rc->tmp_pos, rc->inv_freq);
    }
}

brt_status brt_kv_append_rotated(brt_rope_ctx *rc, brt_kvpool *pool, brt_kvseq *kseq, const float *kpre,
                                 int64_t ldk, int32_t n, int32_t first_pos, int rotate, brt_err *err)
{
    if (!rotate)
        return brt_kvseq_append_f32(kseq, pool, kpre, ldk, n, err);
    const int32_t kvd = rc->n_kv_heads * rc->head_dim;
    for (int32_t done = 0; done < n; done += rc->tmp_rows) {
        int32_t m = n - done < rc->tmp_rows ? n - done : rc->tmp_rows;
        for (int32_t i = 0; i < m; i++) {
            memcpy(rc->tmp + (int64_t)i * kvd, kpre + (int64_t)(done + i) * ldk, (size_t)kvd * sizeof(float));
            float p = (float)(first_pos + done + i);
            rc->tmp_pos[i] = rc->pos_div == 1.0f ? p : p / rc->pos_div;
        }
        rc->be->rope(rc->be, rc->tmp, kvd, m, rc->n_kv_heads, rc->head_dim, rc->tmp_pos, rc->inv_freq);
        BRT_TRY(brt_kvseq_append_f32(kseq, pool, rc->tmp, kvd, m, err));
    }
    return BRT_OK;
}

void brt_kv_rebase_raw(brt_rope_ctx *rc, brt_layer_state *ls, int32_t base)
{
    if (ls->raw_base == base)
        return;
    ls->raw_base = base;
    const int32_t kvd = rc->n_kv_heads * rc->head_dim, n = ls->raw_k.n;
    for (int32_t done = 0; done < n; done += rc->tmp_rows) {
        int32_t m = n - done < rc->tmp_rows ? n - done : rc->tmp_rows;
        for (int32_t i = 0; i < m; i++) {
            brt_kvseq_read_f32(&ls->raw_kpre, done + i, rc->tmp + (int64_t)i * kvd);
            float p = (float)(base + done + i);
            rc->tmp_pos[i] = rc->pos_div == 1.0f ? p : p / rc->pos_div;
        }
        rc->be->rope(rc->be, rc->tmp, kvd, m, rc->n_kv_heads, rc->head_dim, rc->tmp_pos, rc->inv_freq);
        for (int32_t i = 0; i < m; i++)
            memcpy(brt_kvseq_slot(&ls->raw_k, done + i), rc->tmp + (int64_t)i * kvd, (size_t)kvd * sizeof(float));
    }
}

int32_t brt_kv_add_spans(const brt_kvseq *k, const brt_kvseq *v, brt_kv_span *out, int32_t n, int32_t cap)
{
    return n + brt_kvseq_spans(k, v, out + n, cap - n);
}
