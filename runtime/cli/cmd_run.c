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

#include "base/buf.h"
#include "base/hash.h"
#include "base/log.h"
#include "cli.h"
#include "sched/batchio.h"


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
    "\n" CLI_MODEL_HELP CLI_RESOURCE_HELP;

typedef struct run_ctx {
    brt_batch batch;
    brt_journal *journal;
    const brt_tokenizer *tok;
    const char *model_name;
    int32_t eos;
    int64_t ok, failed, gen_tokens, prompt_tokens;
    brt_sched *sched;      /* halted when the output cannot be written */
    brt_err io_err;        /* status != OK: the first output write that failed */
    int64_t lost;          /* results that could not be written */
} run_ctx;

static uint64_t id_seed(const char *s) { return brt_fnv1a(BRT_FNV_INIT, s, strlen(s)); }

static void write_line(run_ctx *rc, const char *id, char *line)
{
    brt_err e;
    if (!line)
        return;
    /* a result that cannot be written is lost: stop the run rather than compute more of them
     * (the rerun redoes what the output lacks) */
    if (brt_journal_append(rc->journal, id, line, &e) != BRT_OK) {
        rc->lost++;
        if (rc->io_err.status == BRT_OK) {
            rc->io_err = e;
            if (rc->sched)
                brt_sched_halt(rc->sched, &e);
        }
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

/* Logprob entries of one returned token (OpenAI's "logprobs" object, one entry per token). */
typedef struct lp_rows {
    const char **tokens;
    float *lps;
    int32_t *offs;
    const char **top_tok;
    float *top_lp;
    char **owned;
    int32_t n, n_owned, k;
} lp_rows;

static const char *own(lp_rows *r, const char *buf, size_t n) { return r->owned[r->n_owned++] = strndup(buf, n); }

/* One token of the output: its bytes go to the text, its logprob entry to rows (when asked). */
static int add_token(run_ctx *rc, brt_buf *text, lp_rows *rows, int32_t token, float lp, const brt_tok_lp *top,
                     int have_top, size_t offset, size_t *nbytes)
{
    char buf[256];
    size_t n = tok_text(rc->tok, token, buf, sizeof buf);
    *nbytes = n;
    if (rows) {
        int32_t i = rows->n++;
        rows->tokens[i] = own(rows, buf, n);
        rows->lps[i] = lp;
        rows->offs[i] = (int32_t)offset;
        for (int32_t j = 0; j < rows->k; j++) {
            char b2[256];
            size_t n2 = top ? tok_text(rc->tok, top[j].token, b2, sizeof b2) : 0;
            rows->top_tok[(int64_t)i * rows->k + j] = own(rows, b2, n2);
            rows->top_lp[(int64_t)i * rows->k + j] = top && have_top ? top[j].logprob : NAN;
        }
    }
    return text ? brt_buf_append(text, buf, n) : 0;
}

static void on_done(void *ctx, brt_job *job)
{
    run_ctx *rc = ctx;
    const brt_request *req = job->user;
    if (job->status != BRT_JOB_DONE) {
        write_error(rc, job->name, job->err_status ? job->err_status : BRT_ERR_INTERNAL, job->error);
        return;
    }
    const int echo = req->echo, k = req->logprobs > 0 ? req->logprobs : 0, want_lp = req->logprobs >= 0;
    /* generated tokens that count as text: stop before EOS */
    const int32_t n_gen = job->n_gen;
    const int32_t *gen = job->tokens + job->prompt_len;
    int32_t n_text = n_gen;
    if (n_text > 0 && gen[n_text - 1] == rc->eos && !job->ignore_eos)
        n_text--;
    const size_t n_lp = (size_t)((echo ? job->prompt_len : 0) + n_text) + 1;
    lp_rows rows = {0}, *lr = want_lp ? &rows : NULL;
    brt_buf text = {0};
    int oom = 0;
    if (want_lp) {
        rows.k = k;
        rows.tokens = calloc(n_lp, sizeof *rows.tokens);
        rows.lps = calloc(n_lp, sizeof *rows.lps);
        rows.offs = calloc(n_lp, sizeof *rows.offs);
        rows.top_tok = calloc(n_lp * (size_t)(k ? k : 1), sizeof *rows.top_tok);
        rows.top_lp = calloc(n_lp * (size_t)(k ? k : 1), sizeof *rows.top_lp);
        rows.owned = calloc(n_lp * (size_t)(k + 1), sizeof *rows.owned);
        oom = !rows.tokens || !rows.lps || !rows.offs || !rows.top_tok || !rows.top_lp || !rows.owned;
    }
    /* echo: the prompt as the user gave it (its text, or its tokens' text), with each prompt
     * token's logprob (none for the first) */
    if (echo && !oom) {
        if (req->prompt)
            oom |= brt_buf_append(&text, req->prompt, strlen(req->prompt)) != 0;
        const size_t plen = text.len;
        size_t at = 0, nb, lead = 0; /* bytes the prompt tokens add up to here */
        /* the tokenizer's dummy-prefix space is in the first piece, not in the prompt text */
        for (int64_t i = 0; req->prompt && i < job->prompt_len; i++) {
            char b0[256];
            size_t n0 = tok_text(rc->tok, job->tokens[i], b0, sizeof b0);
            if (!n0)
                continue;
            lead = b0[0] == ' ' && (plen == 0 || req->prompt[0] != ' ');
            break;
        }
        for (int64_t i = 0; i < job->prompt_len && !oom; i++) {
            size_t a = at > lead ? at - lead : 0;
            size_t off = req->prompt ? (a < plen ? a : plen) : text.len;
            oom |= add_token(rc, req->prompt ? NULL : &text, lr, job->tokens[i],
                             job->prompt_logprob ? job->prompt_logprob[i] : NAN,
                             job->prompt_top ? &job->prompt_top[i * k] : NULL, i > 0, off, &nb) != 0;
            at += nb;
        }
    }
    const size_t gen_start = text.len;
    size_t nb;
    for (int32_t i = 0; i < n_text && !oom; i++)
        oom |= add_token(rc, &text, lr, gen[i], job->gen_logprob[i], job->gen_top ? &job->gen_top[(int64_t)i * k] : NULL,
                         1, text.len, &nb) != 0;
    oom |= brt_buf_append(&text, "", 0) != 0;
    if (oom) {
        write_error(rc, job->name, BRT_ERR_NOMEM, "out of memory formatting the result");
        goto out;
    }
    if (job->text_cut >= 0 && gen_start + (size_t)job->text_cut < text.len) {
        text.len = gen_start + (size_t)job->text_cut; /* a stop string: the text ends before it */
        text.data[text.len] = '\0';
    }
    brt_completion c = {text.data, text.len, job->finish_reason ? job->finish_reason : "length",
                        (int32_t)job->prompt_len, n_gen, lr ? (size_t)rows.n : 0, lr ? rows.tokens : NULL,
                        rows.lps, rows.offs, k, (const char *const *)rows.top_tok, rows.top_lp};
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
out:
    for (int32_t i = 0; i < rows.n_owned; i++)
        free(rows.owned[i]);
    free(rows.owned);
    free(rows.tokens);
    free(rows.lps);
    free(rows.offs);
    free(rows.top_tok);
    free(rows.top_lp);
    brt_buf_free(&text);
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
    int li = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (opt) {
        case 'i': in = optarg; break;
        case 'o': out_path = optarg; break;
        case 'M': served = optarg; break;
        case 'T': c.node.trace_path = optarg; break;
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
    if (brt_node_start_sched_ex(node, on_done, &ctx, 1, &err) != BRT_OK) { /* written results are freed */
        rc = cli_fail("run", &err);
        goto close;
    }
    ctx.sched = node->sched;
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
        if (ctx.io_err.status != BRT_OK) { /* an error line could not be written */
            rc = cli_fail("run", &ctx.io_err);
            goto close;
        }
        if (brt_journal_is_done(ctx.journal, r->custom_id))
            continue;
        brt_node_keepalive(node); /* tokenizing a large batch takes a while */
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
            if (!ids) {
                rc = cli_fail("run", &(brt_err){BRT_ERR_NOMEM, "out of memory copying prompt ids"});
                goto close;
            }
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
    if (!c.quiet)
        brt_log_info("%lld requests to run (%zu lines, %zu already answered, %zu refused at parsing), policy %s, %d ranks "
                 "(%d x %d)",
                 (long long)submitted, total, done_before, ctx.batch.n_bad, brt_policy_name(cfg->policy),
                 node->grid.world, node->grid.dp, node->grid.pp);
    double t0 = brt_now();
    st = brt_node_run(node, &err);
    double dt = brt_now() - t0;
    if (ctx.io_err.status != BRT_OK) { /* the run halted on it (st is the same error) */
        rc = cli_fail("run", &ctx.io_err);
        fprintf(stderr,
                "beaconrt run: stopped: %zu of %zu requests are in %s; %lld finished but could not be written; "
                "rerun the same command to finish\n",
                brt_journal_n_done(ctx.journal), total, out_path, (long long)ctx.lost);
        goto close;
    }
    if (st != BRT_OK) {
        rc = cli_fail("run", &err);
        goto close;
    }
    if (!c.quiet)
        brt_log_info("done: %lld ok, %lld failed; %lld prompt + %lld generated tokens in %.1fs (%.0f tok/s); output %s",
                 (long long)ctx.ok, (long long)ctx.failed, (long long)ctx.prompt_tokens, (long long)ctx.gen_tokens, dt,
                 dt > 0 ? (ctx.prompt_tokens + ctx.gen_tokens) / dt : 0, out_path);
    rc = 0;
close:
    if (rc != 0 && node && node->grid.rank == 0)
        brt_node_abort_others(node); /* the other ranks wait for work that will not come */
    if (ctx.journal)
        brt_journal_close(ctx.journal);
    brt_batch_free(&ctx.batch);
    brt_node_close(node);
done:
    cli_common_free(&c);
    return rc;
}
