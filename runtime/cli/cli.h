/* The beaconrt command line: one function per subcommand and the flags they share. */
#ifndef BRT_CLI_H
#define BRT_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdint.h>

#include "cluster/grid.h"
#include "cluster/node.h"
#include "engine/policy.h"
#include "model/model.h"
#include "model/plan_weights.h"

extern brt_transport *g_cli_tr; /* MPI when launched by mpirun/srun, else NULL (main.c) */

int cmd_generate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Flags every model-running command takes (model, policy knobs, resources). */
typedef struct cli_common {
    const char *model;
    const char *config_path;  /* --config preset */
    json_t *overrides;        /* config keys set by flags */
    brt_node_opts node;
    double kv_budget_mb;
    double cache_dev_mb, cache_host_mb, cache_disk_gb; /* --state-cache-device-mb, -host-mb, -disk-gb */
    int32_t ranks;            /* preset parallel.ranks (plan, submit) */
    int32_t preset_pp, preset_dp; /* preset parallel.pp / dp: used when the launch has their ranks */
    char *preset_model;       /* preset "model", resolved against the preset's folder */
    char *model_config;       /* preset: config.json to plan with when the model folder is absent */
    char *preset_device, *preset_precision; /* preset resources.device / precision */
    double gpu_mem_gb;        /* plan: memory of one GPU (preset resources.gpu_mem_gb) */
    double gpu_tflops;        /* plan: sustained TFLOP/s of the engine on one GPU (resources.gpu_tflops) */
    int quiet;
    const char *chat_template;  /* --chat-template NAME (run, serve) */
    brt_transport *tr;        /* MPI when launched by mpirun/srun, else NULL */
} cli_common;

#define CLI_COMMON_OPTIONS                                              \
    {"model", required_argument, 0, 1000}, {"policy", required_argument, 0, 1001},              \
    {"beacon-window", required_argument, 0, 1002}, {"beacon-stride", required_argument, 0, 1003}, \
    {"beacon-ratio", required_argument, 0, 1004}, {"beacon-ratio-mix", required_argument, 0, 1005}, \
    {"beacon-attn", required_argument, 0, 1006}, {"beacon-param", required_argument, 0, 1007},   \
    {"mem-layers", required_argument, 0, 1008}, {"last-context-length", required_argument, 0, 1009}, \
    {"mem-dtype", required_argument, 0, 1010}, {"set", required_argument, 0, 1011},             \
    {"threads", required_argument, 0, 1012}, {"isa", required_argument, 0, 1013},               \
    {"kv-budget-mb", required_argument, 0, 1014}, {"max-rows", required_argument, 0, 1015},     \
    {"prefill-chunk", required_argument, 0, 1016}, {"pp", required_argument, 0, 1017},          \
    {"dp", required_argument, 0, 1018}, {"quiet", no_argument, 0, 1019},                        \
    {"config", required_argument, 0, 1020}, {"max-inflight", required_argument, 0, 1021},       \
    {"timeout", required_argument, 0, 1022}, {"beacon-pos", required_argument, 0, 1023},        \
    {"beacon-sink-size", required_argument, 0, 1024}, {"max-jobs", required_argument, 0, 1025},   \
    {"device", required_argument, 0, 1026}, {"precision", required_argument, 0, 1027},           \
    {"state-cache-host-mb", required_argument, 0, 1028}, {"state-cache-dir", required_argument, 0, 1029}, \
    {"state-cache-disk-gb", required_argument, 0, 1030}, {"checkpoint-every", required_argument, 0, 1031}, \
    {"state-cache-device-mb", required_argument, 0, 1032}

#define CLI_MODEL_HELP                                                                           \
    "model and long-context policy:\n"                                                           \
    "  --model DIR              Hugging Face model folder (config.json, *.safetensors, tokenizer files)\n" \
    "  --config FILE            deployment preset (configs/*.json; paths in it are relative to it);\n" \
    "                           flags override it\n"                                               \
    "  --policy P               full | beacon_v1 | beacon_v2 | fot (default: from config.json)\n" \
    "  --beacon-window N        Activation Beacon: raw tokens per window\n"                      \
    "  --beacon-stride N        tokens condensed per full window (default: the window)\n"        \
    "  --beacon-ratio R[,R..]   condensing ratio(s); 0 keeps raw activations\n"                  \
    "  --beacon-ratio-mix M     adapt-N | sequence | step-random (one ratio)\n"                  \
    "  --beacon-attn A          step-expansion | segmentation | full-coverage\n"                 \
    "  --beacon-param L         beacon projections, e.g. q,k,v,o\n"                              \
    "  --beacon-pos P           v2: interleave | append\n"                                       \
    "  --beacon-sink-size N     v2: attention sink slots\n"                                      \
    "  --mem-layers L           LongLLaMA: memory layers, e.g. 6,12,18\n"                        \
    "  --last-context-length N  LongLLaMA: tokens kept local at the end of a call\n"             \
    "  --mem-dtype D            LongLLaMA: bfloat16 | float32\n"                                 \
    "  --set KEY=JSON           set any config.json field (null removes it)\n"
#define CLI_RESOURCE_HELP                                                                        \
    "resources:\n"                                                                               \
    "  --device D               cpu | cuda: where every rank computes (default cpu; cuda: each rank\n" \
    "                           takes GPU local-rank mod GPUs)\n"                                  \
    "  --precision P            cuda: bf16 (bf16 GEMMs and state, fp32 accumulation; default) | f32\n" \
    "                           (TF32 off: the golden-exact mode)\n"                               \
    "  --threads N              CPU kernel threads per rank (default: the CPUs the rank may run on,\n" \
    "                           split among ranks that share them)\n" \
    "  --isa I                  avx512 | avx2 | generic (default: best available)\n"             \
    "  --kv-budget-mb N         long-context state memory per pipeline stage\n"                  \
    "  --max-rows N             rows per micro-batch\n"                                          \
    "  --prefill-chunk N        full policy: tokens per prefill step (default 512)\n"                  \
    "  --max-jobs N             jobs running at once per pipeline (default 64)\n"            \
    "  --quiet                  no progress lines\n"                                              \
    "state cache (a document's state, reused by later requests that start with it):\n"         \
    "  --state-cache-device-mb N  per stage, in the device's memory (GPU memory with --device\n" \
    "                           cuda: a hit is a copy on the GPU; default 0: off)\n"               \
    "  --state-cache-host-mb N  per stage, in host memory (default 0: off)\n"                   \
    "  --state-cache-dir DIR    a disk tier in DIR (kept across runs; mid-document checkpoints)\n" \
    "  --state-cache-disk-gb N  per stage on disk (default 64)\n"                               \
    "  --checkpoint-every N     with a disk tier: keep each job's state every N prefill steps, so\n" \
    "                           a killed run resumes there (default 0: only when stopped by SIGTERM)\n"
#define CLI_PARALLEL_HELP                                                                        \
    "ranks (under mpirun / srun):\n"                                                             \
    "  --pp P, --dp D           pipeline stages x data-parallel replicas (P x D = ranks; default: one\n" \
    "                           pipeline of all ranks)\n"                                          \
    "  --max-inflight N         micro-batches in flight per pipeline (default 2 x stages)\n"       \
    "  --timeout S              seconds a rank waits for a peer before failing (default 600)\n"
#define CLI_COMMON_HELP CLI_MODEL_HELP CLI_RESOURCE_HELP CLI_PARALLEL_HELP

void cli_common_init(cli_common *c);
void cli_common_free(cli_common *c);
/* Handle one of the common options; returns 1 if it was one, -1 on a bad value. */
int cli_common_opt(cli_common *c, int opt, const char *arg);
/* After parsing: apply --config, check --model. */
int cli_common_finish(cli_common *c, const char *cmd);

/* The message for an option getopt refused or a value cli_common_opt refused; returns 2. */
int cli_bad_option(const char *cmd, const struct option *opts, int longindex, int opt);

/* Read token ids from FILE.safetensors[:TENSOR] (default tensor input_ids). */
int cli_read_ids(const char *spec, int32_t **ids, size_t *n);
/* Whole file into memory (NUL-terminated). */
char *cli_read_file(const char *path, size_t *len);

int cli_fail(const char *cmd, const brt_err *err);
/* Parses a whole decimal integer in [lo, hi]; 1 on success, 0 (out untouched) otherwise. */
int cli_num(const char *arg, long lo, long hi, long *out);
/* Parses a token count in [lo, hi]: a decimal number with an optional suffix K (x 1,000) or M
 * (x 1,000,000), decimal like the token counts in papers, not 1024: 400K, 1M, 1.5M, 131072. The
 * result must be whole. 1 on success, 0 (out untouched) otherwise. */
int cli_tokens(const char *arg, long long lo, long long hi, long long *out);
/* --temperature / --top-p values, with the batch requests' ranges (runtime/api/request.c):
 * temperature a finite number in [0, 2], top_p in (0, 1]. 1 when valid. */
int cli_temperature_ok(double t);
int cli_top_p_ok(double p);
/* Opens the node for a one-job command. Returns 1 on the coordinator (rank 0) once the ids fit the
 * model's vocabulary; otherwise 0 with *rc set: the open failed (the other ranks are aborted), the ids
 * are out of range, or this rank was a pipeline stage and has already served the coordinator. */
int cli_open_coordinator(cli_common *c, const char *cmd, const char *ids_spec, const int32_t *ids, size_t n,
                         brt_node **node, int *rc);
/* Submits one job on the coordinator and runs the node until it ends. *done is where the scheduler's
 * on_done callback stores the finished job. Returns 0 when it finished; otherwise prints why and
 * returns the exit status. Warns first when plain attention runs past the model's trained positions. */
int cli_run_one_job(brt_node *node, const char *cmd, const brt_job_spec *spec, brt_job *const *done);
/* An id outside [0, vocab) is an error naming the ids file (spec) and the position. */
int cli_check_ids(const char *cmd, const char *spec, const int32_t *ids, size_t n, int32_t vocab);

/* What plan and inspect report for one deployment of a model, computed in one place so that the
 * two commands print the same figures: the model (its checkpoint when the folder has one, else its
 * config alone), the rank grid, and per pipeline stage the weights, activations, KV budget, one
 * job's state and how many jobs fit. */
typedef struct cli_stage_row {
    int32_t a, b;             /* layers [a, b) */
    brt_weight_count w;      /* as stored */
    int64_t weights;          /* bytes on the stage's device (as stored on CPUs) */
    int64_t acts;             /* GPU activation buffers */
    int64_t budget;           /* KV budget */
    int64_t job;              /* one job's state (0 without a document length) */
    int64_t fit;              /* jobs that fit (-1 without a document length) */
    int weights_fit;          /* the weights leave the runtime's minimum KV budget (256 MiB) */
} cli_stage_row;

typedef struct cli_plan {
    const char *cmd;
    int64_t doc, max_new;
    /* the model */
    brt_model model;          /* open (config, tokenizer, weights) when the folder has weights */
    int have_weights;
    brt_model_config cfg;
    char config_path[4096];   /* the config.json the figures come from */
    brt_dtype dtype;          /* without weights: the element type of every tensor */
    const char *dtype_from;   /* "torch_dtype", "--weight-dtype" or "default" */
    /* the deployment */
    int32_t ranks;
    brt_grid g;
    char grid_note[256];      /* how the grid was chosen, for the reader */
    int gpu, f32, dev_es;     /* --device cuda, --precision f32, matrix element bytes on the GPU */
    brt_dtype state_dt;
    int64_t gpu_mem, kv_budget; /* kv_budget: --kv-budget-mb / preset (0: the runtime's default) */
    int32_t chunk, max_rows, block_bytes;
    brt_state_need need;
    int64_t pos_need, pos_limit; /* positions one job occupies and the model has (0 without a length) */
    cli_stage_row rows[BRT_MAX_STAGES];
    int64_t fit_min;          /* jobs per pipeline (-1 without a document length) */
    int64_t cache_dev, cache_host, cache_disk; /* state-cache tiers per stage (0: off) */
} cli_plan;

/* Opens the model and lays out the deployment. ranks: --ranks (0: the preset's, or --pp x --dp, or
 * 1); --ranks without --pp/--dp picks the grid: the fewest stages whose weights and one job fit, the
 * rest replicas. weight_dtype: --weight-dtype (sizes a checkpoint that is not here; NULL: the
 * config's torch_dtype). Returns 0 (close it with cli_plan_close), or the exit status after printing
 * why (nothing left open). */
int cli_plan_open(cli_plan *p, cli_common *c, const char *cmd, const char *weight_dtype, int64_t doc, int64_t max_new,
                  int32_t ranks);
void cli_plan_close(cli_plan *p);
/* The per-stage table (text) and its JSON array. */
void cli_plan_print_stages(const cli_plan *p);
json_t *cli_plan_stages_json(const cli_plan *p);
/* What makes the deployment fail: a document needing more positions than the model has, a stage
 * that holds no job of that length, weights that leave a GPU no room. Prints one warning line each
 * on stderr, appends them to warnings (may be NULL); returns how many. */
int cli_plan_warnings(const cli_plan *p, json_t *warnings);

#endif
