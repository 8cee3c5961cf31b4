#include "api/job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/hash.h"
#include "api/chat_template.h"

size_t brt_api_token_text(const brt_model *m, int32_t id, char *buf, size_t cap)
{
    if (!m->tok) {
        int n = snprintf(buf, cap, "<%d>", id);
        return n > 0 && (size_t)n < cap ? (size_t)n : 0;
    }
    return brt_tokenizer_token_bytes(m->tok, id, buf, cap);
}

brt_api_model brt_api_model_make(const brt_model *m, const char *served, const char *chat_template)
{
    const char *slash = strrchr(m->dir, '/');
    const char *name = served ? served : slash && slash[1] ? slash + 1 : m->dir;
    return (brt_api_model){m, name, chat_template, 0, {BRT_OK, ""}};
}

size_t brt_api_lp_token(const brt_model *m, int as_ids, int32_t id, char *buf, size_t cap)
{
    if (!as_ids)
        return brt_api_token_text(m, id, buf, cap);
    int n = snprintf(buf, cap, "token_id:%d", id);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The chat template of the run: --chat-template, else the model's tokenizer_config.json; decided once. */
static brt_status chat_kind(brt_api_model *am, brt_err *err)
{
    if (am->chat_kind > 0)
        return BRT_OK;
    if (am->chat_err.status != BRT_OK) {
        *err = am->chat_err;
        return err->status;
    }
    brt_chat_kind k;
    brt_status st = am->chat_template ? brt_chat_kind_from_name(am->chat_template, &k, &am->chat_err)
                                      : brt_chat_detect(am->model->dir, &k, &am->chat_err);
    if (st != BRT_OK) {
        *err = am->chat_err;
        return st;
    }
    am->chat_kind = (int)k;
    return BRT_OK;
}

static brt_status append_ids(int32_t **ids, size_t *n, size_t *cap, const int32_t *add, size_t m, brt_err *err)
{
    if (*n + m > *cap) {
        size_t c = (*n + m) * 2;
        int32_t *p = realloc(*ids, c * sizeof *p);
        if (!p)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory tokenizing the messages");
        *ids = p;
        *cap = c;
    }
    memcpy(*ids + *n, add, m * sizeof *add);
    *n += m;
    return BRT_OK;
}

/* The most prompt tokens a request may have: the model's context under plain attention, beaconrt's
 * per-job limit otherwise, less what it asks to generate. Tokenizing stops past it, so a huge
 * prompt is refused for the memory of its text, not of all its tokens. */
static size_t prompt_limit(const brt_model_config *cfg, const brt_request *r)
{
    const int64_t gen = r->max_tokens > 0 ? r->max_tokens : 0;
    const int64_t cap = (cfg->policy == BRT_POLICY_FULL ? cfg->max_pos : BRT_MAX_JOB_TOKENS) - gen;
    return cap > 0 ? (size_t)cap : 0;
}

static brt_status too_long(const brt_model_config *cfg, const brt_request *r, size_t limit, brt_err *err)
{
    if (cfg->policy == BRT_POLICY_FULL)
        return brt_errf(err, BRT_ERR_RANGE,
                        "the prompt of more than %zu tokens + max_tokens %d exceeds the model's context of %d tokens "
                        "(policy full; a long-context policy such as beacon_v1 reads further)",
                        limit, r->max_tokens > 0 ? r->max_tokens : 0, cfg->max_pos);
    return brt_errf(err, BRT_ERR_RANGE,
                    "the prompt of more than %zu tokens + max_tokens %d is above beaconrt's limit of %d tokens per job",
                    limit, r->max_tokens > 0 ? r->max_tokens : 0, BRT_MAX_JOB_TOKENS);
}

/* messages -> the template's pieces -> ids: specials by their token, text encoded on its own (as a
 * Hugging Face tokenizer splits a rendered prompt on its special tokens) */
static brt_status chat_ids(brt_api_model *am, const brt_request *r, int32_t **ids, size_t *n_ids, int32_t *stop_id,
                           brt_err *err)
{
    const brt_tokenizer *tok = am->model->tok;
    BRT_TRY(chat_kind(am, err));
    brt_chat_prompt p;
    BRT_TRY(brt_chat_render((brt_chat_kind)am->chat_kind, r->messages, &p, err));
    size_t cap = 0;
    brt_status st = BRT_OK;
    *ids = NULL;
    *n_ids = 0;
    for (size_t i = 0; i < p.n && st == BRT_OK; i++) {
        if (p.pieces[i].special) {
            int32_t id = brt_tokenizer_piece_id(tok, p.pieces[i].text, p.pieces[i].len);
            if (id < 0)
                st = brt_errf(err, BRT_ERR_UNSUPPORTED,
                              "the %s chat template needs the special token %s, which %s's tokenizer does not have "
                              "(a different --chat-template?)",
                              brt_chat_kind_name((brt_chat_kind)am->chat_kind), p.pieces[i].text, am->model->dir);
            else
                st = append_ids(ids, n_ids, &cap, &id, 1, err);
            continue;
        }
        int32_t *t = NULL;
        size_t nt = 0;
        const size_t limit = prompt_limit(&am->model->cfg, r);
        st = brt_tokenizer_encode_max(tok, p.pieces[i].text, p.pieces[i].len, 0, limit > *n_ids ? limit - *n_ids : 0,
                                      &t, &nt, err);
        if (st == BRT_ERR_RANGE && p.pieces[i].len <= ((size_t)1 << 29))
            st = too_long(&am->model->cfg, r, limit, err);
        if (st == BRT_OK)
            st = append_ids(ids, n_ids, &cap, t, nt, err);
        free(t);
    }
    *stop_id = p.stop_token ? brt_tokenizer_piece_id(tok, p.stop_token, strlen(p.stop_token)) : -1;
    brt_chat_prompt_free(&p);
    if (st == BRT_OK && *n_ids == 0)
        st = brt_errf(err, BRT_ERR_INVALID, "the messages render to an empty prompt");
    if (st != BRT_OK) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

brt_status brt_api_job_spec(brt_api_model *am, const brt_request *r, const char *id, brt_job_spec *spec,
                            int32_t **ids, brt_err *err)
{
    const brt_model *m = am->model;
    const brt_model_config *cfg = &m->cfg;
    memset(spec, 0, sizeof *spec);
    *ids = NULL;
    size_t n_ids = 0;
    int32_t stop_id = -1;
    if ((r->prompt || r->messages || r->n_stop) && !m->tok)
        return brt_errf(err, BRT_ERR_INVALID,
                        "%s needs the model's tokenizer, which %s does not have (give the prompt as token ids)",
                        r->messages ? "a chat request" : r->prompt ? "a text prompt" : "a stop string", m->dir);
    if (r->kind == BRT_API_CHAT)
        BRT_TRY(chat_ids(am, r, ids, &n_ids, &stop_id, err));
    else if (r->prompt) {
        const size_t limit = prompt_limit(cfg, r);
        /* BOS first when the model's tokenizer puts it there (Llama: yes; Qwen2: no) */
        brt_status st = brt_tokenizer_encode_max(m->tok, r->prompt, strlen(r->prompt), brt_tokenizer_adds_bos(m->tok),
                                                 limit, ids, &n_ids, err);
        if (st == BRT_ERR_RANGE && strlen(r->prompt) <= ((size_t)1 << 29))
            return too_long(cfg, r, limit, err);
        BRT_TRY(st);
    }
    else {
        *ids = malloc((r->n_prompt_ids ? r->n_prompt_ids : 1) * sizeof **ids);
        if (!*ids)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory copying prompt ids");
        memcpy(*ids, r->prompt_ids, r->n_prompt_ids * sizeof **ids);
        n_ids = r->n_prompt_ids;
    }
    int64_t max_new = r->max_tokens;
    if (max_new < 0) /* chat without max_tokens: up to the model's context */
        max_new = cfg->policy == BRT_POLICY_FULL ? cfg->max_pos - (int64_t)n_ids : cfg->max_pos;
    /* plain attention cannot read past the model's context; the long-context policies can */
    if (cfg->policy == BRT_POLICY_FULL && (int64_t)n_ids + (max_new > 0 ? max_new : 0) > cfg->max_pos) {
        brt_status st = brt_errf(err, BRT_ERR_RANGE,
                                 "the prompt of %zu tokens + max_tokens %lld exceeds the model's context of %d tokens "
                                 "(policy full; a long-context policy such as beacon_v1 reads further)",
                                 n_ids, (long long)max_new, cfg->max_pos);
        free(*ids);
        *ids = NULL;
        return st;
    }
    spec->name = id;
    spec->prompt = *ids;
    spec->prompt_len = (int64_t)n_ids;
    spec->max_new = (int32_t)(max_new < INT32_MAX ? max_new : INT32_MAX);
    spec->temperature = r->temperature;
    spec->top_p = r->top_p;
    spec->seed = r->has_seed ? r->seed : brt_fnv1a(BRT_FNV_INIT, id, strlen(id));
    spec->logprobs = r->logprobs;
    spec->echo = r->echo;
    spec->ignore_eos = r->ignore_eos;
    spec->stop = (const char *const *)r->stop;
    spec->n_stop = r->n_stop;
    spec->user = (void *)r;
    if (stop_id >= 0 && !brt_config_is_eos(cfg, stop_id))
        spec->stop_ids[spec->n_stop_ids++] = stop_id;
    return BRT_OK;
}

void brt_api_result_free(brt_api_result *res)
{
    for (int32_t i = 0; i < res->n_owned; i++)
        free(res->owned[i]);
    free(res->owned);
    free(res->tokens);
    free(res->top_tok);
    free(res->lps);
    free(res->top_lp);
    free(res->offs);
    free(res->text);
    memset(res, 0, sizeof *res);
}

/* One returned token: its bytes to the text, its logprob entry (with its top alternatives). */
static int add_token(const brt_model *m, brt_api_result *res, brt_buf *text, int want_lp, int as_ids, int32_t token,
                     float lp, const brt_tok_lp *top, int have_top, int32_t k, size_t offset, size_t *nbytes)
{
    char buf[256], name[256];
    size_t n = brt_api_token_text(m, token, buf, sizeof buf);
    *nbytes = n;
    if (want_lp) {
        int32_t i = (int32_t)res->c.n_tokens++;
        size_t nn = brt_api_lp_token(m, as_ids, token, name, sizeof name);
        if (!(res->tokens[i] = res->owned[res->n_owned++] = strndup(name, nn)))
            return -1;
        res->lps[i] = lp;
        res->offs[i] = (int32_t)offset;
        for (int32_t j = 0; j < k; j++) {
            char b2[256];
            size_t n2 = top ? brt_api_lp_token(m, as_ids, top[j].token, b2, sizeof b2) : 0;
            if (!(res->top_tok[(int64_t)i * k + j] = res->owned[res->n_owned++] = strndup(b2, n2)))
                return -1;
            res->top_lp[(int64_t)i * k + j] = top && have_top ? top[j].logprob : NAN;
        }
    }
    return text ? brt_buf_append(text, buf, n) : 0;
}

brt_status brt_api_result_make(const brt_api_model *am, const brt_request *r, const brt_sched *s, const brt_job *job,
                               brt_api_result *res, brt_err *err)
{
    const brt_model *m = am->model;
    memset(res, 0, sizeof *res);
    const int chat = r->kind == BRT_API_CHAT, echo = r->echo && !chat;
    const int32_t k = r->logprobs > 0 ? r->logprobs : 0;
    const int want_lp = r->logprobs >= 0;
    /* generated tokens that count as text: not the EOS or turn end that stopped it */
    const int32_t *gen = job->tokens + job->prompt_len;
    int32_t n_text = job->n_gen;
    if (n_text > 0 && brt_job_is_stop_token(s, job, gen[n_text - 1]))
        n_text--;
    const size_t n_lp = (size_t)((echo ? job->prompt_len : 0) + n_text) + 1;
    brt_buf text = {0};
    int oom = 0;
    if (want_lp) {
        res->c.top_k = k;
        res->tokens = calloc(n_lp, sizeof *res->tokens);
        res->lps = calloc(n_lp, sizeof *res->lps);
        res->offs = calloc(n_lp, sizeof *res->offs);
        res->top_tok = calloc(n_lp * (size_t)(k ? k : 1), sizeof *res->top_tok);
        res->top_lp = calloc(n_lp * (size_t)(k ? k : 1), sizeof *res->top_lp);
        res->owned = calloc(n_lp * (size_t)(k + 1), sizeof *res->owned);
        oom = !res->tokens || !res->lps || !res->offs || !res->top_tok || !res->top_lp || !res->owned;
    }
    /* echo: the prompt as the user gave it (its text, or its tokens' text), with each prompt
     * token's logprob (none for the first) */
    if (echo && !oom) {
        if (r->prompt)
            oom |= brt_buf_append(&text, r->prompt, strlen(r->prompt)) != 0;
        const size_t plen = text.len;
        size_t at = 0, nb, lead = 0; /* bytes the prompt tokens add up to here */
        /* the tokenizer's dummy-prefix space is in the first piece, not in the prompt text */
        for (int64_t i = 0; r->prompt && i < job->prompt_len; i++) {
            char b0[256];
            size_t n0 = brt_api_token_text(m, job->tokens[i], b0, sizeof b0);
            if (!n0)
                continue;
            lead = b0[0] == ' ' && (plen == 0 || r->prompt[0] != ' ');
            break;
        }
        for (int64_t i = 0; i < job->prompt_len && !oom; i++) {
            size_t a = at > lead ? at - lead : 0;
            size_t off = r->prompt ? (a < plen ? a : plen) : text.len;
            oom |= add_token(m, res, r->prompt ? NULL : &text, want_lp, r->tokens_as_ids, job->tokens[i],
                             job->prompt_logprob ? job->prompt_logprob[i] : NAN,
                             job->prompt_top ? &job->prompt_top[i * k] : NULL, i > 0, k, off, &nb) != 0;
            at += nb;
        }
    }
    const size_t gen_start = text.len;
    size_t nb;
    for (int32_t i = 0; i < n_text && !oom; i++)
        oom |= add_token(m, res, &text, want_lp, r->tokens_as_ids, gen[i], job->gen_logprob[i],
                         job->gen_top ? &job->gen_top[(int64_t)i * k] : NULL, 1, k, text.len, &nb) != 0;
    oom |= brt_buf_append(&text, "", 0) != 0;
    if (oom) {
        brt_buf_free(&text);
        brt_api_result_free(res);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory formatting the result of %s", job->name);
    }
    if (job->text_cut >= 0 && gen_start + (size_t)job->text_cut < text.len) {
        text.len = gen_start + (size_t)job->text_cut; /* a stop string: the text ends before it */
        text.data[text.len] = '\0';
    }
    res->text = text.data;
    res->c.chat = chat;
    res->c.text = text.data;
    res->c.text_len = text.len;
    res->c.finish_reason = job->finish_reason ? job->finish_reason : "length";
    res->c.prompt_tokens = (int32_t)job->prompt_len;
    res->c.cached_tokens = (int32_t)job->cached_tokens;
    res->c.completion_tokens = job->n_gen;
    if (want_lp) {
        res->c.tokens = res->tokens;
        res->c.token_logprobs = res->lps;
        res->c.text_offset = res->offs;
        res->c.top_tokens = (const char *const *)res->top_tok;
        res->c.top_logprobs = res->top_lp;
    }
    return BRT_OK;
}
