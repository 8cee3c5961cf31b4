/* beaconrt run: batch jobs in the OpenAI Batch format, as one MPI job. World rank 0 reads the
 * input, tokenizes, schedules and writes the output; every rank runs its pipeline stage. The
 * output file is the journal: each result is appended and flushed when its job ends, and a
 * rerun of the same command skips what is already there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/batch_source.h"
#include "base/log.h"
#include "cli.h"


static const char *const k_help =
    "usage: [mpirun -np N] beaconrt run --model DIR --input jobs.jsonl --output results.jsonl\n"
    "                      [--pp P] [--dp D] [--config configs/X.json] [--trace FILE] [options]\n"
    "\n"
    "Runs every request of an OpenAI Batch file (one JSON object per line: custom_id, method POST,\n"
    "url /v1/completions with prompt, max_tokens, temperature, top_p, seed, stop, echo, logprobs; or\n"
    "url /v1/chat/completions with messages, rendered with the model's chat template)\n"
    "and appends one line per request to the output: the completion, or an error for that request\n"
    "alone. The output is also the journal: rerunning the same command after a crash or a Slurm\n"
    "requeue skips requests already answered and redoes a torn last line. Progress goes to stderr.\n"
    "Under mpirun/srun the ranks form a DP x PP grid (default: one pipeline of all ranks).\n"
    "\n"
    "  --input FILE          requests (JSONL)\n"
    "  --output FILE         results (JSONL), appended\n"
    "  --served-model NAME   model name written in the responses (default: the folder name)\n"
    "  --chat-template NAME  chat requests' template (llama-2, chatml, qwen2, smollm2, llama-3, llama-3.1;\n"
    "                        default: recognised from the model's tokenizer_config.json)\n"
    "  --trace FILE          write each rank's micro-batch timings (JSON lines)\n"
    "  --pp P, --dp D        pipeline stages x data-parallel replicas (P x D = ranks)\n"
    "  --max-inflight N      micro-batches in flight per pipeline (default 2 x stages)\n"
    "  --timeout S           seconds a rank waits for a peer before failing the run (default 600)\n"
    "\n" CLI_MODEL_HELP CLI_RESOURCE_HELP;

int cmd_run(int argc, char **argv)
{
    static struct option opts[] = {{"input", required_argument, 0, 'i'},
                                   {"output", required_argument, 0, 'o'},
                                   {"served-model", required_argument, 0, 'M'},
                                   {"trace", required_argument, 0, 'T'},
                                   {"chat-template", required_argument, 0, 'C'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    const char *in = NULL, *out_path = NULL, *served = NULL;
    int opt, rc = 1;
    optind = 1;
    int li = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'i': in = optarg; break;
        case 'o': out_path = optarg; break;
        case 'M': served = optarg; break;
        case 'T': c.node.trace_path = optarg; break;
        case 'C': c.chat_template = optarg; break;
        case 'h': fputs(k_help, stdout); rc = 0; goto done;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            rc = cli_bad_option("run", opts, li, opt);
            goto done;
        }
    }
    if (cli_common_finish(&c, "run") != 0) {
        rc = 2;
        goto done;
    }
    if (!in || !out_path) {
        fprintf(stderr, "beaconrt run: --input and --output are required\n");
        rc = 2;
        goto done;
    }
    brt_transport *tr = g_cli_tr;
    const int rank = tr ? tr->rank : 0;
    brt_err err;
    brt_node *node = NULL;
    brt_batch_source *bs = NULL;
    c.node.need_tokenizer = 0; /* text prompts need it; token-id prompts do not */
    if (brt_node_open(&c.node, tr, &node, &err) != BRT_OK) {
        rc = cli_fail("run", &err);
        if (tr && tr->world > 1)
            tr->abort(tr, rc);
        goto done;
    }
    /* with a disk tier, SIGTERM (Slurm's warning before preemption or the time limit) keeps every job
     * still reading its prompt on disk before the run stops, and the rerun resumes there; without
     * one a signal stops at once (finished results are in the journal either way) */
    if (c.node.cache_dir) {
        node->graceful = 1;
        node->drain_seconds = 0;
    }
    if (rank != 0) { /* a stage of a pipeline: run until the coordinator says stop */
        rc = brt_node_run(node, &err) == BRT_OK ? 0 : cli_fail("run", &err);
        brt_node_close(node);
        goto done;
    }
    brt_api_model am = brt_api_model_make(&node->model, served, c.chat_template);
    brt_status st = brt_batch_source_open(in, out_path, &am, &bs, &err);
    if (st == BRT_OK)
        st = brt_node_start_sched_ex(node, NULL, NULL, 1, &err); /* written results are freed */
    if (st == BRT_OK)
        st = brt_node_add_source(node, brt_batch_source_base(bs), &err);
    if (st != BRT_OK) {
        rc = cli_fail("run", &err);
        goto close;
    }
    const brt_batch_stats *bst = brt_batch_source_stats(bs);
    if (bst->truncated)
        brt_log_warn("%s: cut a torn last line (%zu bytes) left by an interrupted run; that request is redone",
                     out_path, bst->truncated);
    if (bst->done_before)
        brt_log_info("%s: %zu of %zu requests already answered; running the rest", out_path, bst->done_before,
                     bst->lines);
    if (!c.quiet)
        brt_log_info("%zu requests (%zu already answered, %zu refused at parsing), policy %s, %d ranks (%d x %d)",
                     bst->lines, bst->done_before, bst->refused, brt_policy_name(node->model.cfg.policy),
                     node->grid.world, node->grid.dp, node->grid.pp);
    double t0 = brt_now();
    st = brt_node_run(node, &err);
    double dt = brt_now() - t0;
    if (bst->io_err.status != BRT_OK) { /* the run halted on it (st is the same error) */
        rc = cli_fail("run", &bst->io_err);
        fprintf(stderr,
                "beaconrt run: stopped: %lld of %zu requests are in %s; %lld finished but could not be written; "
                "rerun the same command to finish\n",
                (long long)(bst->done_before + (size_t)bst->ok + (size_t)bst->failed - (size_t)bst->lost), bst->lines,
                out_path, (long long)bst->lost);
        goto close;
    }
    if (st != BRT_OK) {
        rc = cli_fail("run", &err);
        goto close;
    }
    if (node->stop_signal) { /* stopped by a signal after checkpointing */
        brt_cache_log_summary(brt_sched_cache_counters(node->sched));
        fprintf(stderr,
                "beaconrt run: stopped by signal %d: %lld of %zu requests are in %s; %d unfinished jobs were kept at "
                "the step they reached in %s; rerun the same command to resume\n",
                node->stop_signal, (long long)(bst->done_before + (size_t)bst->ok + (size_t)bst->failed), bst->lines,
                out_path, node->checkpointed, c.node.cache_dir);
        rc = 1;
        goto close;
    }
    if (!c.quiet) {
        brt_log_info("done: %lld ok, %lld failed; %lld prompt + %lld generated tokens in %.1fs (%.0f tok/s); output %s",
                     (long long)bst->ok, (long long)bst->failed, (long long)bst->prompt_tokens,
                     (long long)bst->gen_tokens, dt, dt > 0 ? (bst->prompt_tokens + bst->gen_tokens) / dt : 0,
                     out_path);
        for (int32_t d = 0; node->grid.dp > 1 && d < node->grid.dp; d++)
            brt_log_info("replica %d: %lld tokens", d, (long long)brt_sched_pipeline_tokens(node->sched, d));
        brt_cache_log_summary(brt_sched_cache_counters(node->sched));
    }
    rc = 0;
close:
    if (rc != 0 && node && node->grid.rank == 0 && !node->stop_signal)
        brt_node_abort_others(node); /* the other ranks wait for work that will not come (a run stopped by a
                                        signal has shut them down already) */
    brt_batch_source_close(bs);
    brt_node_close(node);
done:
    cli_common_free(&c);
    return rc;
}
