#include "api/stream.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void brt_stream_init(brt_stream *st, const brt_request *r)
{
    memset(st, 0, sizeof *st);
    st->logprobs = r->logprobs;
    st->top_k = r->logprobs > 0 ? r->logprobs : 0;
    st->chat = r->kind == BRT_API_CHAT;
    st->as_ids = r->tokens_as_ids;
    size_t longest = 0;
    for (int i = 0; i < r->n_stop; i++)
        if (strlen(r->stop[i]) > longest)
            longest = strlen(r->stop[i]);
    st->hold = longest > 0 ? longest - 1 : 0;
}

void brt_stream_free(brt_stream *st)
{
    brt_buf_free(&st->text);
    free(st->toks);
    memset(st, 0, sizeof *st);
}

int brt_stream_push(brt_stream *st, const brt_model *m, const brt_job *job)
{
    const int32_t g = job->n_gen - 1, id = job->tokens[job->n_tokens - 1];
    char buf[256];
    size_t n = brt_api_token_text(m, id, buf, sizeof buf);
    if (brt_buf_append(&st->text, buf, n) != 0)
        return -1;
    if (st->logprobs < 0)
        return 0;
    if (st->n_toks == st->cap_toks) {
        size_t cap = st->cap_toks ? st->cap_toks * 2 : 16;
        brt_stream_tok *t = realloc(st->toks, cap * sizeof *t);
        if (!t)
            return -1;
        st->toks = t;
        st->cap_toks = cap;
    }
    brt_stream_tok *t = &st->toks[st->n_toks++];
    t->id = id;
    t->logprob = job->gen_logprob[g];
    if (st->top_k && job->gen_top)
        memcpy(t->top, job->gen_top + (int64_t)g * st->top_k, (size_t)st->top_k * sizeof(brt_tok_lp));
    t->end = st->text.len;
    return 0;
}

/* The end of the last complete UTF-8 character at or before limit (from `from`). */
static size_t utf8_boundary(const char *s, size_t from, size_t limit)
{
    for (size_t back = 1; back <= 3 && limit >= from + back; back++) {
        const unsigned char c = (unsigned char)s[limit - back];
        if ((c & 0xC0) == 0x80)
            continue; /* a continuation byte: look further back for its lead */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? limit - back : limit;
    }
    return limit;
}

int brt_stream_take(brt_stream *st, const brt_model *m, int final, int64_t text_cut, brt_api_result *piece)
{
    memset(piece, 0, sizeof *piece);
    size_t limit = st->text.len;
    if (final) {
        if (text_cut >= 0 && (size_t)text_cut < limit)
            limit = (size_t)text_cut;
    } else {
        limit = limit > st->hold ? limit - st->hold : 0;
        limit = utf8_boundary(st->text.data, st->sent, limit);
    }
    if (limit < st->sent)
        limit = st->sent;
    size_t nt = 0; /* tokens whose bytes are all in the text sent so far */
    while (nt < st->n_toks && st->toks[nt].end <= limit)
        nt++;
    if (final) /* tokens cut off by a stop string are never sent */
        nt = st->n_toks;
    if (limit == st->sent && nt == 0)
        return 0;
    piece->text = malloc(limit - st->sent + 1);
    if (!piece->text)
        return -1;
    memcpy(piece->text, st->text.data + st->sent, limit - st->sent);
    piece->text[limit - st->sent] = '\0';
    piece->c.chat = st->chat;
    piece->c.text = piece->text;
    piece->c.text_len = limit - st->sent;
    if (st->logprobs >= 0) {
        const int32_t k = st->top_k;
        piece->tokens = calloc(nt + 1, sizeof *piece->tokens);
        piece->lps = calloc(nt + 1, sizeof *piece->lps);
        piece->offs = calloc(nt + 1, sizeof *piece->offs);
        piece->top_tok = calloc((nt + 1) * (size_t)(k ? k : 1), sizeof *piece->top_tok);
        piece->top_lp = calloc((nt + 1) * (size_t)(k ? k : 1), sizeof *piece->top_lp);
        piece->owned = calloc((nt + 1) * (size_t)(k + 1), sizeof *piece->owned);
        if (!piece->tokens || !piece->lps || !piece->offs || !piece->top_tok || !piece->top_lp || !piece->owned) {
            brt_api_result_free(piece);
            return -1;
        }
        int oom = 0;
        for (size_t i = 0; i < nt; i++) {
            const brt_stream_tok *t = &st->toks[i];
            char buf[256];
            size_t n = brt_api_token_text(m, t->id, buf, sizeof buf);
            piece->offs[i] = (int32_t)(t->end >= n ? t->end - n : 0);
            n = brt_api_lp_token(m, st->as_ids, t->id, buf, sizeof buf);
            oom |= !(piece->tokens[i] = piece->owned[piece->n_owned++] = strndup(buf, n));
            piece->lps[i] = t->logprob;
            for (int32_t j = 0; j < k; j++) {
                char b2[256];
                size_t n2 = brt_api_lp_token(m, st->as_ids, t->top[j].token, b2, sizeof b2);
                oom |= !(piece->top_tok[i * (size_t)k + (size_t)j] = piece->owned[piece->n_owned++] = strndup(b2, n2));
                piece->top_lp[i * (size_t)k + (size_t)j] = t->top[j].logprob;
            }
        }
        if (oom) {
            brt_api_result_free(piece);
            return -1;
        }
        piece->c.n_tokens = nt;
        piece->c.tokens = piece->tokens;
        piece->c.token_logprobs = piece->lps;
        piece->c.text_offset = piece->offs;
        piece->c.top_k = k;
        piece->c.top_tokens = (const char *const *)piece->top_tok;
        piece->c.top_logprobs = piece->top_lp;
        memmove(st->toks, st->toks + nt, (st->n_toks - nt) * sizeof *st->toks);
        st->n_toks -= nt;
    }
    st->sent = limit;
    return 1;
}
