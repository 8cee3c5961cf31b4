/* beaconrt run: batch jobs in the OpenAI Batch format, as one MPI job. World rank 0 reads the
 * input, tokenizes, schedules and writes the output; every rank runs its pipeline stage. The
 * output file is the journal: each result is appended and flushed when its job ends, and a
 * rerun of the same command skips what is already there. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "cli.h"
#include "sched/batchio.h"

extern brt_transport *g_cli_tr;

static const char *const k_help =
    "usage: [mpirun -np N] beaconrt run --model DIR --input jobs.jsonl --output results.jsonl\n"
    "                      [--pp P] [--dp D] [--config configs/X.json] [--trace FILE] [options]\n"
    "\n"
    "Runs every request of an OpenAI Batch file (one JSON object per line: custom_id, method POST,\n"
    "url /v1/completions, body with prompt, max_tokens, temperature, top_p, seed, stop, echo, logprobs)\n"
    "and appends one line per request to the output: the completion, or an error for that request\n"
    "alone. The output is also the journal: rerunning the same command after a crash or a Slurm\n"
    "requeue skips requests already answered and redoes a torn last line. Progress goes to stderr.\n"
    "Under mpirun/srun the ranks form a DP x PP grid (default: one pipeline of all ranks).\n"
    "\n"
    "  --input FILE          requests (JSONL)\n"
    "  --output FILE         results (JSONL), appended\n"
    "  --served-model NAME   model name written in the responses (default: the folder name)\n"
    "  --trace FILE          write each rank's micro-batch timings (JSON lines)\n"
    "  --pp P, --dp D        pipeline stages x data-parallel replicas (P x D = ranks)\n"
    "  --max-inflight N      micro-batches in flight per pipeline (default 2 x stages)\n"
    "  --timeout S           seconds a rank waits for a peer before failing the run (default 600)\n"
    "\n" CLI_COMMON_HELP;

typedef struct run_ctx {
    brt_batch batch;
    brt_journal *journal;
    const brt_tokenizer *tok;
    const char *model_name;
    int32_t eos;
    int64_t ok, failed, gen_tokens, prompt_tokens;
    brt_status io_status;
    brt_err io_err;
} run_ctx;

static uint64_t id_seed(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void write_line(run_ctx *rc, const char *id, char *line)
{
    brt_err e;
    if (!line)
        return;
    if (brt_journal_append(rc->journal, id, line, &e) != BRT_OK && rc->io_status == BRT_OK) {
        rc->io_status = e.status;
        rc->io_err = e;
    }
    free(line);
}

static void write_error(run_ctx *rc, const char *id, brt_status st, const char *msg)
{
    char *line = NULL;
    brt_err e;
    if (brt_batch_format_error(id, brt_status_name(st), msg, &line, &e) == BRT_OK)
        write_line(rc, id, line);
    rc->failed++;
}

/* The text a token adds (pieces with U+2581 as a space, byte tokens as bytes); "<id>" when the
 * model folder has no tokenizer (token-id prompts need none). */
static size_t tok_text(const brt_tokenizer *t, int32_t id, char *buf, size_t cap)
{
    if (!t) {
        int n = snprintf(buf, cap, "<%d>", id);
        return n > 0 && (size_t)n < cap ? (size_t)n : 0;
    }
    return brt_tokenizer_token_bytes(t, id, buf, cap);
}

static void on_done(void *ctx, brt_job *job)
{
    run_ctx *rc = ctx;
    const brt_request *req = job->user;
    if (job->status != BRT_JOB_DONE) {
        write_error(rc, job->name, job->err_status ? job->err_status : BRT_ERR_INTERNAL, job->error);
        return;
    }
    const brt_tokenizer *tok = rc->tok;
    const int echo = req->echo, k = req->logprobs > 0 ? req->logprobs : 0, want_lp = req->logprobs >= 0;
    /* generated tokens that count as text: stop before EOS */
    int32_t n_gen = job->n_gen, n_text = n_gen;
    const int32_t *gen = job->tokens + job->prompt_len;
    if (n_text > 0 && gen[n_text - 1] == rc->eos && !job->ignore_eos)
        n_text--;
    size_t cap = 64 + (size_t)(job->prompt_len + n_gen) * 16 + (echo && req->prompt ? strlen(req->prompt) : 0);
    char *text = malloc(cap);
    size_t len = 0;
    int32_t n_lp = (int32_t)((echo ? job->prompt_len : 0) + n_text);
    const char **tokens = want_lp ? calloc((size_t)n_lp + 1, sizeof *tokens) : NULL;
    float *lps = want_lp ? calloc((size_t)n_lp + 1, sizeof *lps) : NULL;
    int32_t *offs = want_lp ? calloc((size_t)n_lp + 1, sizeof *offs) : NULL;
    const char **top_tok = want_lp && k ? calloc((size_t)n_lp * k + 1, sizeof *top_tok) : NULL;
    float *top_lp = want_lp && k ? calloc((size_t)n_lp * k + 1, sizeof *top_lp) : NULL;
    char **owned = calloc((size_t)(n_lp + 1) * (k + 1), sizeof *owned);
    int32_t n_owned = 0, li = 0;
    if (!text || !owned || (want_lp && (!tokens || !lps || !offs)) || (want_lp && k && (!top_tok || !top_lp))) {
        write_error(rc, job->name, BRT_ERR_NOMEM, "out of memory formatting the result");
        goto out;
    }
#define OWN(s) (owned[n_owned++] = (s))
    /* echo: the prompt as given (its text), its tokens with their logprobs */
    if (echo) {
        if (req->prompt) {
            memcpy(text, req->prompt, strlen(req->prompt));
        }
        size_t plen = req->prompt ? strlen(req->prompt) : 0;
        size_t tl = 0;
        for (int64_t i = 0; i < job->prompt_len; i++) {
            char buf[64];
            size_t n = tok_text(tok, job->tokens[i], buf, sizeof buf);
            if (!req->prompt) {
                if (len + n + 1 > cap) {
                    cap = cap * 2 + n;
                    char *nt = realloc(text, cap);
                    if (!nt)
                        break;
                    text = nt;
                }
                memcpy(text + len, buf, n);
            }
            if (want_lp) {
                tokens[li] = OWN(strndup(buf, n));
                offs[li] = (int32_t)(req->prompt ? (tl < plen ? tl : plen) : len);
                lps[li] = job->prompt_logprob ? job->prompt_logprob[i] : NAN;
                for (int32_t j = 0; j < k; j++) {
                    const brt_tok_lp *t = job->prompt_top ? &job->prompt_top[i * k + j] : NULL;
                    char b2[64];
                    size_t n2 = t ? tok_text(tok, t->token, b2, sizeof b2) : 0;
                    top_tok[li * k + j] = OWN(strndup(b2, n2));
                    top_lp[li * k + j] = t && i > 0 ? t->logprob : NAN;
                }
                li++;
            }
            tl += n;
            if (!req->prompt)
                len += n;
        }
        if (req->prompt)
            len = plen;
    }
    size_t gen_start = len;
    for (int32_t i = 0; i < n_text; i++) {
        char buf[64];
        size_t n = tok_text(tok, gen[i], buf, sizeof buf);
        if (len + n + 1 > cap) {
            cap = cap * 2 + n;
            char *nt = realloc(text, cap);
            if (!nt)
                break;
            text = nt;
        }
        if (want_lp) {
            tokens[li] = OWN(strndup(buf, n));
            offs[li] = (int32_t)len;
            lps[li] = job->gen_logprob[i];
            for (int32_t j = 0; j < k; j++) {
                const brt_tok_lp *t = &job->gen_top[(int64_t)i * k + j];
                char b2[64];
                size_t n2 = tok_text(tok, t->token, b2, sizeof b2);
                top_tok[li * k + j] = OWN(strndup(b2, n2));
                top_lp[li * k + j] = t->logprob;
            }
            li++;
        }
        memcpy(text + len, buf, n);
        len += n;
    }
    if (job->text_cut >= 0 && gen_start + (size_t)job->text_cut < len)
        len = gen_start + (size_t)job->text_cut; /* a stop string: the text ends before it */
    text[len] = '\0';
    brt_completion c = {text, len, job->finish_reason ? job->finish_reason : "length", (int32_t)job->prompt_len,
                        n_gen, want_lp ? (size_t)li : 0, want_lp ? tokens : NULL, lps, offs, k,
                        (const char *const *)top_tok, top_lp};
    char *line = NULL;
    brt_err e;
    if (brt_batch_format_success(job->name, rc->model_name, (int64_t)time(NULL), &c, &line, &e) != BRT_OK)
        write_error(rc, job->name, e.status, e.msg);
    else {
        write_line(rc, job->name, line);
        rc->ok++;
        rc->gen_tokens += n_gen;
        rc->prompt_tokens += job->prompt_len;
    }
#undef OWN
out:
    for (int32_t i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(text);
    free(tokens);
    free(lps);
    free(offs);
    free(top_tok);
    free(top_lp);
}

int cmd_run(int argc, char **argv)
{
    static struct option opts[] = {{"input", required_argument, 0, 'i'},
                                   {"output", required_argument, 0, 'o'},
                                   {"served-model", required_argument, 0, 'M'},
                                   {"trace", required_argument, 0, 'T'},
                                   {"help", no_argument, 0, 'h'},
                                   CLI_COMMON_OPTIONS,
                                   {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c);
    const char *in = NULL, *out_path = NULL, *served = NULL;
    int opt, rc = 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'i': in = optarg; break;
        case 'o': out_path = optarg; break;
        case 'M': served = optarg; break;
        case 'T': c.node.trace_path = optarg; break;
        case 'h': fputs(k_help, stdout); rc = 0; goto done;
        default:
            if (opt >= 1000 && cli_common_opt(&c, opt, optarg) == 1)
                break;
            fprintf(stderr, "beaconrt run: bad option or value (see beaconrt run --help)\n");
            rc = 2;
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
    run_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    brt_err err;
    brt_node *node = NULL;
    c.node.need_tokenizer = 0; /* text prompts need it; token-id prompts do not */
    if (brt_node_open(&c.node, tr, &node, &err) != BRT_OK) {
        rc = cli_fail("run", &err);
        if (tr && tr->world > 1)
            tr->abort(tr, rc);
        goto done;
    }
    if (rank != 0) { /* a stage of a pipeline: run until the coordinator says stop */
        rc = brt_node_run(node, &err) == BRT_OK ? 0 : cli_fail("run", &err);
        brt_node_close(node);
        goto done;
    }
    brt_status st = brt_batch_read(in, &ctx.batch, &err);
    if (st == BRT_OK)
        st = brt_journal_open(out_path, &ctx.journal, &err);
    if (st != BRT_OK) {
        rc = cli_fail("run", &err);
        if (tr && tr->world > 1)
            tr->abort(tr, rc);
        goto close;
    }
    const char *slash = strrchr(node->model.dir, '/');
    ctx.model_name = served ? served : slash && slash[1] ? slash + 1 : node->model.dir;
    ctx.tok = node->model.tok;
    ctx.eos = node->model.cfg.eos_id;
    if (brt_node_start_sched(node, on_done, &ctx, &err) != BRT_OK) {
        rc = cli_fail("run", &err);
        goto close;
    }
    size_t total = ctx.batch.n + ctx.batch.n_bad, done_before = brt_journal_n_done(ctx.journal);
    if (brt_journal_truncated_bytes(ctx.journal))
        brt_log_warn("%s: cut a torn last line (%zu bytes) left by an interrupted run; that request is redone",
                     out_path, brt_journal_truncated_bytes(ctx.journal));
    if (done_before)
        brt_log_info("%s: %zu of %zu requests already answered; running the rest", out_path, done_before, total);
    for (size_t i = 0; i < ctx.batch.n_bad; i++) {
        struct brt_batch_bad *b = &ctx.batch.bad[i];
        if (!brt_journal_is_done(ctx.journal, b->custom_id))
            write_error(&ctx, b->custom_id, b->status, b->message);
    }
    const brt_model_config *cfg = &node->model.cfg;
    int64_t submitted = 0;
    for (size_t i = 0; i < ctx.batch.n; i++) {
        brt_request *r = &ctx.batch.reqs[i];
        if (brt_journal_is_done(ctx.journal, r->custom_id))
            continue;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        char msg[BRT_ERR_MSG_MAX + 64];
        if ((r->prompt || r->n_stop) && !node->model.tok) {
            snprintf(msg, sizeof msg,
                     "line %zu: %s needs the model's tokenizer.model, which %s does not have (give the prompt as "
                     "token ids)",
                     r->line_no, r->prompt ? "a text prompt" : "a stop string", node->model.dir);
            write_error(&ctx, r->custom_id, BRT_ERR_INVALID, msg);
            continue;
        }
        if (r->prompt) {
            if (brt_tokenizer_encode(node->model.tok, r->prompt, strlen(r->prompt), 1, &ids, &n_ids, &err) != BRT_OK) {
                snprintf(msg, sizeof msg, "line %zu: prompt: %s", r->line_no, err.msg);
                write_error(&ctx, r->custom_id, err.status, msg);
                continue;
            }
        } else {
            ids = malloc(r->n_prompt_ids * sizeof *ids);
            if (ids)
                memcpy(ids, r->prompt_ids, r->n_prompt_ids * sizeof *ids);
            n_ids = r->n_prompt_ids;
        }
        /* plain attention cannot read past the model's context; the long-context policies can */
        if (cfg->policy == BRT_POLICY_FULL && (int64_t)n_ids + r->max_tokens > cfg->max_pos) {
            snprintf(msg, sizeof msg,
                     "line %zu: prompt of %zu tokens + max_tokens %d exceeds the model's context of %d tokens (policy "
                     "full; use a long-context policy such as --policy beacon_v1)",
                     r->line_no, n_ids, r->max_tokens, cfg->max_pos);
            write_error(&ctx, r->custom_id, BRT_ERR_RANGE, msg);
            free(ids);
            continue;
        }
        brt_job_spec spec = {r->custom_id, ids, (int64_t)n_ids, r->max_tokens, r->temperature, r->top_p,
                             r->has_seed ? r->seed : id_seed(r->custom_id), r->logprobs, r->echo, 0, 0,
                             (const char *const *)r->stop, r->n_stop, r};
        brt_job *job;
        st = brt_sched_submit(node->sched, &spec, &job, &err);
        free(ids);
        if (st != BRT_OK) {
            rc = cli_fail("run", &err);
            goto close;
        }
        submitted++;
    }
    brt_log_info("%lld requests to run (%zu lines, %zu already answered, %zu refused at parsing), policy %s, %d ranks "
                 "(%d x %d)",
                 (long long)submitted, total, done_before, ctx.batch.n_bad, brt_policy_name(cfg->policy),
                 node->grid.world, node->grid.dp, node->grid.pp);
    double t0 = brt_now();
    st = brt_node_run(node, &err);
    double dt = brt_now() - t0;
    if (st != BRT_OK) {
        rc = cli_fail("run", &err);
        goto close;
    }
    if (ctx.io_status != BRT_OK) {
        rc = cli_fail("run", &ctx.io_err);
        goto close;
    }
    brt_log_info("done: %lld ok, %lld failed; %lld prompt + %lld generated tokens in %.1fs (%.0f tok/s); output %s",
                 (long long)ctx.ok, (long long)ctx.failed, (long long)ctx.prompt_tokens, (long long)ctx.gen_tokens, dt,
                 dt > 0 ? (ctx.prompt_tokens + ctx.gen_tokens) / dt : 0, out_path);
    rc = 0;
close:
    if (ctx.journal)
        brt_journal_close(ctx.journal);
    brt_batch_free(&ctx.batch);
    brt_node_close(node);
done:
    cli_common_free(&c);
    return rc;
}
