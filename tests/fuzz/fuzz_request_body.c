/* An HTTP request body, read the way the server reads it (runtime/serve/server.c: json_loadb with
 * JSON_REJECT_DUPLICATES, then brt_request_parse_body), for both endpoints; whatever "messages"
 * holds then goes through every chat template, valid request or not, since the renderer must
 * refuse bad messages by itself. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api/chat_template.h"
#include "api/request.h"
#include "fuzz_util.h"

static const brt_chat_kind k_chat_kinds[] = {BRT_CHAT_LLAMA2, BRT_CHAT_CHATML,  BRT_CHAT_QWEN2,
                                             BRT_CHAT_SMOLLM2, BRT_CHAT_LLAMA3, BRT_CHAT_LLAMA31};

/* The segmentation chat_template.h promises: text pieces never empty, never adjacent, and
 * NUL-terminated at len; every special named; a stop token. */
static void check_prompt(const brt_chat_prompt *p)
{
    FUZZ_CHECK(p->n > 0 && p->pieces != NULL && p->stop_token != NULL);
    for (size_t i = 0; i < p->n; i++) {
        const brt_chat_piece *c = &p->pieces[i];
        FUZZ_CHECK(c->text != NULL && c->text[c->len] == '\0' && c->len > 0);
        FUZZ_CHECK(c->special || i == 0 || p->pieces[i - 1].special);
    }
}

static void render_all(const json_t *messages)
{
    for (size_t k = 0; k < sizeof k_chat_kinds / sizeof k_chat_kinds[0]; k++) {
        brt_chat_prompt p;
        brt_err e;
        brt_err_clear(&e);
        if (brt_chat_render(k_chat_kinds[k], messages, &p, &e) == BRT_OK)
            check_prompt(&p);
        else
            FUZZ_CHECK(p.n == 0 && e.msg[0] != '\0');
        brt_chat_prompt_free(&p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!body)
        return 0;
    const brt_api_kind kinds[] = {BRT_API_COMPLETIONS, BRT_API_CHAT};
    for (size_t i = 0; i < 2; i++) {
        brt_request r;
        brt_err e;
        brt_err_clear(&e);
        brt_status st = brt_request_parse_body(body, kinds[i], &r, &e);
        FUZZ_CHECK(st == BRT_OK || e.msg[0] != '\0');
        if (st == BRT_OK) {
            FUZZ_CHECK(r.kind == kinds[i]);
            FUZZ_CHECK(r.kind == BRT_API_CHAT ? r.messages != NULL : (r.prompt || r.prompt_ids));
            FUZZ_CHECK(!r.include_usage || r.stream);
        }
        brt_request_free(&r);
    }
    const json_t *messages = json_is_object(body) ? json_object_get(body, "messages") : NULL;
    if (messages)
        render_all(messages);
    json_decref(body);
    return 0;
}
