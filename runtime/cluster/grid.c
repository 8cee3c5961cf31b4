#include "cluster/grid.h"

#include <string.h>

static double layer_cost(const brt_model_config *c)
{
    double d = c->hidden, q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    return d * (q + 2 * kv) + q * d + 3.0 * d * c->intermediate;
}

double brt_grid_stage_cost(const brt_model_config *c, int32_t a, int32_t b, int first, int last)
{
    double cost = (b - a) * layer_cost(c);
    if (last) /* lm_head runs only for rows that need logits: sampled tokens, scored prompts; on long
                 documents a small share of the rows. Counted as one row in eight. */
        cost += (double)c->vocab_size * c->hidden / 8;
    if (first)
        cost += c->hidden;                          /* the lookup is cheap */
    return cost;
}

void brt_grid_partition(const brt_model_config *c, int32_t pp, int32_t *layers)
{
    const int32_t L = c->n_layers;
    /* binary search on the largest stage cost, greedy fill from the front */
    double lo = 0, hi = brt_grid_stage_cost(c, 0, L, 1, 1) + 1;
    for (int it = 0; it < 100; it++) {
        double mid = (lo + hi) / 2;
        int32_t s = 0, a = 0, ok = 1;
        while (a < L && ok) {
            int32_t b = a;
            while (b < L && brt_grid_stage_cost(c, a, b + 1, s == 0, s == pp - 1 && b + 1 == L) <= mid)
                b++;
            if (b == a)
                ok = 0;
            a = b;
            s++;
            if (s > pp)
                ok = 0;
        }
        if (ok && brt_grid_stage_cost(c, 0, 0, 0, 1) <= mid)
            hi = mid;
        else
            lo = mid;
    }
    /* the split at cost hi, then make sure every stage has at least one layer */
    int32_t s = 0, a = 0;
    layers[0] = 0;
    while (s < pp) {
        int32_t b = a;
        int32_t left = pp - s - 1; /* stages after this one need a layer each */
        while (b < L - left && (b == a || brt_grid_stage_cost(c, a, b + 1, s == 0, s == pp - 1) <= hi))
            b++;
        if (s == pp - 1)
            b = L;
        layers[++s] = b;
        a = b;
    }
}

brt_status brt_grid_init(brt_grid *g, int32_t world, int32_t rank, int32_t pp, int32_t dp, const brt_model_config *cfg,
                         brt_err *err)
{
    memset(g, 0, sizeof *g);
    g->world = world;
    g->rank = rank;
    if (pp <= 0 && dp <= 0)
        pp = world, dp = 1;
    else if (pp <= 0)
        pp = dp > 0 && world % dp == 0 ? world / dp : 0;
    else if (dp <= 0)
        dp = world % pp == 0 ? world / pp : 0;
    if (pp <= 0 || dp <= 0 || pp * dp != world) {
        if (pp > 0 && dp <= 0)
            return brt_errf(err, BRT_ERR_INVALID, "--pp %d does not divide the %d ranks of the job", pp, world);
        if (dp > 0 && pp <= 0)
            return brt_errf(err, BRT_ERR_INVALID, "--dp %d does not divide the %d ranks of the job", dp, world);
        return brt_errf(err, BRT_ERR_INVALID, "--pp %d x --dp %d does not match the %d ranks of the job", pp, dp, world);
    }
    if (pp > cfg->n_layers)
        return brt_errf(err, BRT_ERR_INVALID, "--pp %d: more pipeline stages than the model's %d layers", pp,
                        cfg->n_layers);
    if (pp > BRT_MAX_STAGES)
        return brt_errf(err, BRT_ERR_INVALID, "--pp %d: at most %d stages", pp, BRT_MAX_STAGES);
    g->pp = pp;
    g->dp = dp;
    g->my_dp = rank / pp;
    g->my_pp = rank % pp;
    g->local_size = 1;
    brt_grid_partition(cfg, pp, g->layers);
    return BRT_OK;
}
