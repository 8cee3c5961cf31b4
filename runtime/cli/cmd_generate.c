/* beaconrt generate: one prompt from the command line, for a quick look. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli.h"
#include "api/text.h"


static const char *const k_help =
    "usage: beaconrt generate --model DIR (--prompt TEXT | --prompt-file FILE | --input-ids FILE[:TENSOR])\n"
    "                         [-n N] [--temperature T] [--top-p P] [--seed S] [--greedy] [--json] [options]\n"
    "\n"
    "Prints the continuation of the prompt. Text prompts are tokenized with the model's tokenizer.json\n"
    "(else its tokenizer.model), with BOS first when that tokenizer adds one; --input-ids reads an I64\n"
    "tensor [1, L] (default name input_ids) as is.\n"
    "\n"
    "  --prompt TEXT            the prompt\n"
    "  --prompt-file FILE       read the prompt from a file (long documents)\n"
    "  --input-ids FILE[:T]     token ids from a safetensors file\n"
    "  -n, --max-tokens N       tokens to generate (default 256)\n"
    "  --temperature T          in [0, 2]; 0 = greedy (default 0.8)\n"
    "  --top-p P                nucleus sampling mass in (0, 1] (default 0.95)\n"
    "  --seed S                 sampling seed (default 1337; equal seeds give equal outputs)\n"
    "  --greedy                 same as --temperature 0\n"
    "  --ignore-eos             keep generating after the end-of-sequence token\n"
    "  --json                   print {\"generated_ids\": [...], \"text\": ...} instead of text\n"
    "\n" CLI_COMMON_HELP;

typedef struct gen_ctx {
    const brt_tokenizer *tok;
    int stream;         /* print text as tokens arrive */
    brt_job *job;
    int32_t printed;
} gen_ctx;

static void on_done(void *ctx, brt_job *job)
{
    gen_ctx *g = ctx;
    g->job = job;
}

int cmd_generate(int argc, char **argv)
{
    static struct option opts[] = {{"prompt", required_argument, 0, 'p'},
                                   {"prompt-file", required_argument, 0, 'f'},
                                   {"input-ids", required_argument, 0, 'i'},
                                   {"max-tokens", required_argument, 0, 'n'},
                                   {"temperature", required_argument, 0, 't'},
                                   {"top-p", required_argument, 0, 'P'},
                                   {"seed", required_argument, 0, 's'},
                                   {"greedy", no_argument, 0, 'g'},
                                   {"ignore-eos", no_argument, 0, 'E'},
                                   {"json", no_argument, 0, 'j'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    const char *prompt = NULL, *prompt_file = NULL, *ids_spec = NULL;
    long max_new = 256;
    double temperature = 0.8, top_p = 0.95;
    unsigned long long seed = 1337;
    int as_json = 0, ignore_eos = 0, opt, rc = 1;
    optind = 1;
    int li = -1;
    while ((opt = getopt_long(argc, argv, "n:h", opts, &li)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'p': prompt = optarg; break;
        case 'f': prompt_file = optarg; break;
        case 'i': ids_spec = optarg; break;
        case 'n':
            max_new = strtol(optarg, &end, 10);
            if (*end || max_new < 0 || max_new > (1 << 24)) {
                fprintf(stderr, "beaconrt generate: -n wants a token count, not '%s'\n", optarg);
                rc = 2;
                goto out;
            }
            break;
        case 't': /* the batch requests' range (api/request.c); strtod also reads "nan" and "inf" */
            temperature = strtod(optarg, &end);
            if (!*optarg || *end || !cli_temperature_ok(temperature)) {
                fprintf(stderr, "beaconrt generate: --temperature wants a number in [0, 2], not '%s'\n", optarg);
                rc = 2;
                goto out;
            }
            break;
        case 'P':
            top_p = strtod(optarg, &end);
            if (!*optarg || *end || !cli_top_p_ok(top_p)) {
                fprintf(stderr, "beaconrt generate: --top-p wants a number in (0, 1], not '%s'\n", optarg);
                rc = 2;
                goto out;
            }
            break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno || *optarg == '-') {
                fprintf(stderr, "beaconrt generate: --seed wants a non-negative integer, not '%s'\n", optarg);
                rc = 2;
                goto out;
            }
            break;
        case 'g': temperature = 0; break;
        case 'E': ignore_eos = 1; break;
        case 'j': as_json = 1; break;
        case 'h': fputs(k_help, stdout); rc = 0; goto out;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            rc = cli_bad_option("generate", opts, li, opt);
            goto out;
        }
    }
    if (cli_common_finish(&c, "generate") != 0) {
        rc = 2;
        goto out;
    }
    if (!!prompt + !!prompt_file + !!ids_spec != 1) {
        fprintf(stderr, "beaconrt generate: give exactly one of --prompt, --prompt-file, --input-ids\n");
        rc = 2;
        goto out;
    }
    c.node.need_tokenizer = !ids_spec;
    brt_err err;
    brt_node *node = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *file_text = NULL;
    if (ids_spec && cli_read_ids(ids_spec, &ids, &n_ids) != 0)
        goto out;
    if (prompt_file) {
        file_text = cli_read_file(prompt_file, NULL);
        if (!file_text) {
            fprintf(stderr, "beaconrt generate: cannot read %s: %s\n", prompt_file, strerror(errno));
            goto out;
        }
        prompt = file_text;
    }
    if (!cli_open_coordinator(&c, "generate", ids_spec, ids, n_ids, &node, &rc))
        goto cleanup;
    if (!ids) {
        if (brt_tokenizer_encode(node->model.tok, prompt, strlen(prompt), brt_tokenizer_adds_bos(node->model.tok), &ids,
                                 &n_ids, &err) != BRT_OK) {
            brt_err_prefix(&err, "%s: ", prompt_file ? prompt_file : "--prompt");
            rc = cli_fail("generate", &err);
            goto cleanup;
        }
    }
    gen_ctx g = {node->model.tok, !as_json, NULL, 0};
    if (brt_node_start_sched(node, on_done, &g, &err) != BRT_OK) {
        rc = cli_fail("generate", &err);
        goto cleanup;
    }
    if (!c.quiet)
        brt_log_info("%s, policy %s, %zu prompt tokens, %s", node->model.dir, brt_policy_name(node->model.cfg.policy),
                     n_ids, node->be->name);
    brt_job_spec spec = {.name = "generate", .prompt = ids, .prompt_len = (int64_t)n_ids, .max_new = (int32_t)max_new,
                         .temperature = (float)temperature, .top_p = (float)top_p, .seed = seed, .logprobs = -1,
                         .ignore_eos = ignore_eos};
    if ((rc = cli_run_one_job(node, "generate", &spec, &g.job)) != 0)
        goto cleanup;
    rc = 1;
    const int32_t *gen = g.job->tokens + g.job->prompt_len;
    int32_t n_gen = g.job->n_gen;
    char *text = NULL;
    size_t text_len = 0;
    if (node->model.tok) { /* the continuation as it reads after the prompt, up to EOS */
        int32_t n_text = 0;
        while (n_text < n_gen && (ignore_eos || !brt_config_is_eos(&node->model.cfg, gen[n_text])))
            n_text++;
        if (brt_tokenizer_join(node->model.tok, gen, (size_t)n_text, &text, &text_len, &err) != BRT_OK) {
            rc = cli_fail("generate", &err);
            goto cleanup;
        }
    }
    if (as_json) {
        json_t *o = json_object(), *a = json_array();
        for (int32_t i = 0; i < n_gen; i++)
            json_array_append_new(a, json_integer(gen[i]));
        json_object_set_new(o, "generated_ids", a);
        if (text) /* generation may stop inside a multi-byte character */
            json_object_set_new(o, "text", brt_json_string_lossy(text, text_len));
        json_object_set_new(o, "finish_reason", json_string(g.job->finish_reason ? g.job->finish_reason : "length"));
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        json_decref(o);
        if (!s) {
            fprintf(stderr, "beaconrt generate: error: out of memory writing JSON\n");
            free(text);
            goto cleanup;
        }
        puts(s);
        free(s);
    } else if (text) {
        fwrite(text, 1, text_len, stdout);
        fputc('\n', stdout);
    }
    free(text);
    if (!c.quiet) {
        double dt = g.job->t_done - g.job->t_admit;
        brt_log_info("%zu prompt + %d generated tokens in %.2fs", n_ids, n_gen, dt);
    }
    rc = 0;
cleanup:
    if (rc != 0 && node && node->grid.rank == 0)
        brt_node_abort_others(node); /* the other ranks wait for work that will not come */
    brt_node_close(node);
    free(ids);
    free(file_text);
out:
    cli_common_free(&c);
    return rc;
}
