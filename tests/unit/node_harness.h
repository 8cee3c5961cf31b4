/* Shared by the unit tests that run the whole single-process engine (included, not a test
 * itself): open a one-rank node on a model folder with its scheduler started, failing the test
 * with the folder and the error when it cannot, and the job specs they submit. */
#ifndef BRT_TEST_NODE_HARNESS_H
#define BRT_TEST_NODE_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "cluster/node.h"
#include "sched/sched.h"

/* dir: the model folder; overrides: a config JSON object or NULL (borrowed); kv_budget in bytes */
static inline brt_node *harness_node(const char *dir, json_t *overrides, int threads, int64_t kv_budget,
                                     brt_job_done_fn on_done, void *ctx)
{
    brt_node_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = dir;
    o.overrides = overrides;
    o.threads = threads;
    o.kv_budget = kv_budget;
    brt_node *node = NULL;
    brt_err err;
    memset(&err, 0, sizeof err);
    if (brt_node_open(&o, NULL, &node, &err) != BRT_OK)
        fail_msg("%s: open: %s", dir, err.msg);
    if (brt_node_start_sched(node, on_done, ctx, &err) != BRT_OK)
        fail_msg("%s: scheduler: %s", dir, err.msg);
    return node;
}

/* A greedy job over a prompt: max_new tokens generated (EOS ignored), all prompt logits if full */
static inline brt_job_spec harness_spec(const char *name, const int32_t *ids, int64_t n, int32_t max_new, int full)
{
    brt_job_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = name;
    spec.prompt = ids;
    spec.prompt_len = n;
    spec.max_new = max_new;
    spec.temperature = 0.0f;
    spec.top_p = 1.0f;
    spec.logprobs = -1;
    spec.full_logits = full;
    spec.ignore_eos = 1;
    return spec;
}

#endif
