/* beaconrt serve: an OpenAI-compatible HTTP API on world rank 0, over the same pipelines as batch
 * runs (every rank runs its stage; rank 0 also listens). SIGTERM or SIGINT stops it gracefully:
 * new requests get 503, the open ones finish, then the ranks shut down; a second signal stops at
 * once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/batch_source.h"
#include "base/log.h"
#include "cli.h"
#include "serve/server.h"

static const char *const k_help =
    "usage: [mpirun -np N] beaconrt serve --model DIR [--host H] [--port P] [--pp P] [--dp D] [options]\n"
    "\n"
    "Serves OpenAI's API on http://HOST:PORT (world rank 0; the other ranks run their pipeline stages):\n"
    "  POST /v1/completions        prompt (text or token ids), max_tokens, temperature, top_p, seed, stop,\n"
    "                              echo, logprobs (0-5), stream, stream_options.include_usage\n"
    "  POST /v1/chat/completions   messages (rendered with the model's chat template), max_tokens /\n"
    "                              max_completion_tokens, temperature, top_p, seed, stop, logprobs +\n"
    "                              top_logprobs (0-20), stream, stream_options.include_usage\n"
    "  GET  /v1/models, /health (200 when every rank is up, 503 while stopping), /metrics (Prometheus)\n"
    "Streams are server-sent events as OpenAI sends them, ending with data: [DONE]. Requests from all\n"
    "clients share the scheduler (continuous batching); a client that disconnects cancels its job.\n"
    "SIGTERM/SIGINT: refuse new requests (503), let the open ones finish for --drain-seconds, cancel\n"
    "what is left, stop with status 0 (a second signal stops at once).\n"
    "\n"
    "  --host H              address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all)\n"
    "  --port P              default 8000 (0: any free port, printed at start)\n"
    "  --api-key KEY         require Authorization: Bearer KEY (also $BEACONRT_API_KEY)\n"
    "  --max-body-mb N       largest request body (default 64)\n"
    "  --max-waiting N       requests waiting or running before new ones get 429 (default 1024)\n"
    "  --queue-timeout S     a request whose state finds no room in the pools for S seconds gets 429\n"
    "                        (default 60)\n"
    "  --served-model NAME   model name in responses and /v1/models (default: the folder name)\n"
    "  --chat-template NAME  llama-2, chatml, qwen2, smollm2, llama-3, llama-3.1 (default: recognised from\n"
    "                        the model's tokenizer_config.json)\n"
    "  --input F --output F  also run a batch file through the same pipelines (results to F)\n"
    "  --port-file F         write the port listened on to F once ready (for scripts)\n"
    "  --drain-seconds S     on SIGTERM, time the open requests get to finish (default 30; under mpirun\n"
    "                        also pass --mca odls_base_sigkill_timeout S+5, or it kills the ranks after 1s)\n"
    "\n" CLI_MODEL_HELP CLI_RESOURCE_HELP CLI_PARALLEL_HELP;

int cmd_serve(int argc, char **argv)
{
    static struct option opts[] = {{"host", required_argument, 0, 'H'},
                                   {"port", required_argument, 0, 'p'},
                                   {"api-key", required_argument, 0, 'k'},
                                   {"max-body-mb", required_argument, 0, 'B'},
                                   {"max-waiting", required_argument, 0, 'W'},
                                   {"served-model", required_argument, 0, 'M'},
                                   {"chat-template", required_argument, 0, 'C'},
                                   {"input", required_argument, 0, 'i'},
                                   {"output", required_argument, 0, 'o'},
                                   {"port-file", required_argument, 0, 'P'},
                                   {"trace", required_argument, 0, 'T'},
                                   {"drain-seconds", required_argument, 0, 'D'},
                                   {"queue-timeout", required_argument, 0, 'Q'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    brt_server_opts so = {0};
    so.port = 8000;
    so.api_key = getenv("BEACONRT_API_KEY");
    const char *served = NULL, *in = NULL, *out_path = NULL, *port_file = NULL;
    int opt, rc = 1, li = -1;
    double drain_s = 30;
    long v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'H': so.host = optarg; break;
        case 'p':
        case 'B':
        case 'W':
            if (!cli_num(optarg, opt == 'p' ? 0 : 1, opt == 'p' ? 65535 : 1 << 20, &v)) {
                rc = cli_bad_option("serve", opts, li, opt);
                goto done;
            }
            if (opt == 'p')
                so.port = (int)v;
            else if (opt == 'B')
                so.max_body_bytes = (int64_t)v << 20;
            else
                so.max_waiting = (int32_t)v;
            break;
        case 'k': so.api_key = optarg; break;
        case 'M': served = optarg; break;
        case 'C': c.chat_template = optarg; break;
        case 'i': in = optarg; break;
        case 'o': out_path = optarg; break;
        case 'P': port_file = optarg; break;
        case 'T': c.node.trace_path = optarg; break;
        case 'D':
        case 'Q':
            if (!cli_num(optarg, opt == 'D' ? 0 : 1, 86400, &v)) {
                rc = cli_bad_option("serve", opts, li, opt);
                goto done;
            }
            if (opt == 'D')
                drain_s = (double)v;
            else
                so.queue_timeout = (double)v;
            break;
        case 'h': fputs(k_help, stdout); rc = 0; goto done;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            rc = cli_bad_option("serve", opts, li, opt);
            goto done;
        }
    }
    if (cli_common_finish(&c, "serve") != 0) {
        rc = 2;
        goto done;
    }
    if (!in != !out_path) {
        fprintf(stderr, "beaconrt serve: --input and --output go together\n");
        rc = 2;
        goto done;
    }
    brt_transport *tr = g_cli_tr;
    brt_err err;
    brt_node *node = NULL;
    brt_server *srv = NULL;
    brt_batch_source *bs = NULL;
    c.node.need_tokenizer = 0; /* token-id prompts need none; text requests say so when it is missing */
    c.node.progress = 0;       /* a server has no total to count down */
    if (brt_node_open(&c.node, tr, &node, &err) != BRT_OK) {
        rc = cli_fail("serve", &err);
        if (tr && tr->world > 1)
            tr->abort(tr, rc);
        goto done;
    }
    node->graceful = 1; /* SIGTERM drains (every rank: the stage ranks wait for rank 0 to stop them) */
    node->drain_seconds = drain_s;
    if (node->grid.rank != 0) {
        rc = brt_node_run(node, &err) == BRT_OK ? 0 : cli_fail("serve", &err);
        brt_node_close(node);
        goto done;
    }
    brt_api_model am = brt_api_model_make(&node->model, served, c.chat_template);
    brt_status st = brt_node_start_sched_ex(node, NULL, NULL, 1, &err);
    if (st == BRT_OK)
        st = brt_server_start(&so, &am, node, &srv, &err);
    if (st == BRT_OK)
        st = brt_node_add_source(node, brt_server_source(srv), &err);
    if (st == BRT_OK && in && (st = brt_batch_source_open(in, out_path, &am, &bs, &err)) == BRT_OK)
        st = brt_node_add_source(node, brt_batch_source_base(bs), &err);
    if (st != BRT_OK) {
        rc = cli_fail("serve", &err);
        goto close;
    }
    brt_log_info("serving %s as \"%s\" on http://%s:%d (policy %s, %d ranks = %d x %d, %s)", node->model.dir, am.name,
                 so.host ? so.host : "127.0.0.1", brt_server_port(srv), brt_policy_name(node->model.cfg.policy),
                 node->grid.world, node->grid.dp, node->grid.pp, node->be->name);
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%d\n", brt_server_port(srv)) < 0 || fclose(f) != 0) {
            rc = cli_fail("serve", &(brt_err){BRT_ERR_IO, "cannot write the --port-file"});
            goto close;
        }
    }
    st = brt_node_run(node, &err);
    brt_server_stop(srv, 10);
    srv = NULL;
    if (st != BRT_OK) {
        rc = cli_fail("serve", &err);
        goto close;
    }
    if (bs) {
        const brt_batch_stats *b = brt_batch_source_stats(bs);
        brt_log_info("batch %s: %lld ok, %lld failed, %lld left for a rerun (%zu answered before)", out_path,
                     (long long)b->ok, (long long)b->failed,
                     (long long)(b->lines - b->done_before - (size_t)(b->ok + b->failed)), b->done_before);
        if (b->io_err.status != BRT_OK) {
            rc = cli_fail("serve", &b->io_err);
            goto close;
        }
    }
    brt_cache_log_summary(brt_sched_cache_counters(node->sched));
    brt_log_info("serve: stopped");
    rc = 0;
close:
    if (rc != 0 && node && node->grid.rank == 0)
        brt_node_abort_others(node);
    brt_server_stop(srv, 0);
    brt_batch_source_close(bs);
    brt_node_close(node);
done:
    cli_common_free(&c);
    return rc;
}
