/* beaconrt logits: one forward over the given token ids, logits of every position. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli.h"


static const char *const k_help =
    "usage: beaconrt logits --model DIR --input-ids FILE.safetensors[:TENSOR] --out OUT.safetensors [options]\n"
    "\n"
    "Runs the model over the token ids (an I64 tensor [1, L], default name input_ids) exactly as one\n"
    "forward call of the official code would, with the model's long-context policy, and writes the F32\n"
    "tensor 'logits' [1, L, V]: the logits at every input position (beacon rows are not outputs).\n"
    "\n" CLI_COMMON_HELP;

typedef struct {
    brt_job *job;
} logits_ctx;

static void on_done(void *ctx, brt_job *job) { ((logits_ctx *)ctx)->job = job; }

int cmd_logits(int argc, char **argv)
{
    static struct option opts[] = {{"input-ids", required_argument, 0, 'i'},
                                   {"out", required_argument, 0, 'o'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    const char *ids_spec = NULL, *out_path = NULL;
    int opt, rc = 1;
    optind = 1;
    int li = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'i': ids_spec = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h': fputs(k_help, stdout); rc = 0; goto out;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            rc = cli_bad_option("logits", opts, li, opt);
            goto out;
        }
    }
    if (cli_common_finish(&c, "logits") != 0 || !ids_spec || !out_path) {
        if (c.model)
            fprintf(stderr, "beaconrt logits: --input-ids and --out are required\n");
        rc = 2;
        goto out;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    brt_node *node = NULL;
    brt_err err;
    if (cli_read_ids(ids_spec, &ids, &n) != 0)
        goto out;
    if (!cli_open_coordinator(&c, "logits", ids_spec, ids, n, &node, &rc))
        goto cleanup;
    logits_ctx lc = {0};
    if (brt_node_start_sched(node, on_done, &lc, &err) != BRT_OK) {
        rc = cli_fail("logits", &err);
        goto cleanup;
    }
    brt_job_spec spec = {.name = "logits", .prompt = ids, .prompt_len = (int64_t)n, .top_p = 1, .logprobs = -1,
                         .full_logits = 1, .ignore_eos = 1};
    if ((rc = cli_run_one_job(node, "logits", &spec, &lc.job)) != 0)
        goto cleanup;
    rc = 1;
    if (lc.job->full_rows != (int64_t)n) {
        fprintf(stderr, "beaconrt logits: internal error: %lld of %zu rows computed\n", (long long)lc.job->full_rows, n);
        goto cleanup;
    }
    brt_st_out_tensor t = {"logits", BRT_DT_F32, 3, {1, (int64_t)n, node->model.cfg.vocab_size}, lc.job->full};
    if (brt_st_write(out_path, &t, 1, &err) != BRT_OK) {
        rc = cli_fail("logits", &err);
        goto cleanup;
    }
    if (!c.quiet)
        brt_log_info("wrote logits [1, %zu, %d] to %s", n, node->model.cfg.vocab_size, out_path);
    rc = 0;
cleanup:
    if (rc != 0 && node && node->grid.rank == 0)
        brt_node_abort_others(node); /* the other ranks wait for work that will not come */
    brt_node_close(node);
    free(ids);
out:
    cli_common_free(&c);
    return rc;
}
