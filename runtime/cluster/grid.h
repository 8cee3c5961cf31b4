/* The rank grid DP x PP over the world (tensor parallelism is a later axis): world rank =
 * dp * PP + pp, so a pipeline's ranks are consecutive and a block distribution puts
 * neighbouring stages on one node first. Layers are split into contiguous stages balancing
 * cost: each layer its parameters, plus the embedding lookup on the first stage and the final
 * norm + lm_head on the last. */
#ifndef BRT_GRID_H
#define BRT_GRID_H

#include <stdint.h>

#include "base/status.h"
#include "model/config.h"

#define BRT_MAX_STAGES 256

typedef struct brt_grid {
    int32_t world, rank;
    int32_t dp, pp;           /* replicas x stages */
    int32_t my_dp, my_pp;     /* this rank's place */
    int32_t local_rank, local_size; /* on this node (device binding, thread counts) */
    int32_t layers[BRT_MAX_STAGES + 1]; /* stage s holds [layers[s], layers[s+1]) */
} brt_grid;

/* Fill the grid for world ranks; pp, dp <= 0 mean "derive" (default: one pipeline of all ranks). */
brt_status brt_grid_init(brt_grid *g, int32_t world, int32_t rank, int32_t pp, int32_t dp, const brt_model_config *cfg,
                         brt_err *err);
/* Contiguous split of cfg's layers into pp stages minimising the most expensive stage. */
void brt_grid_partition(const brt_model_config *cfg, int32_t pp, int32_t *layers);
static inline int32_t brt_grid_rank_of(const brt_grid *g, int32_t dp, int32_t pp) { return dp * g->pp + pp; }
/* Relative cost of a stage (parameters touched per token), for plan/inspect. */
double brt_grid_stage_cost(const brt_model_config *cfg, int32_t a, int32_t b, int first, int last);

#endif
