/* Chat templates written out in C from the official Jinja templates (see chat_template.h).
 *
 * The templates, as their tokenizer_config.json files hold them (\n: a newline in the rendered text):
 *
 * llama-2 (meta-llama/Llama-2-13b-chat-hf, the chat-hf family's template):
 *   {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message =
 *   messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}
 *   {% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{
 *   raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}
 *   {% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message +
 *   '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}
 *   {% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
 *   {% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}
 *
 * qwen2 (Qwen/Qwen2-7B-Instruct); smollm2 (HuggingFaceTB/SmolLM2-135M-Instruct) is the same with the default
 * "You are a helpful AI assistant named SmolLM, trained by Hugging Face" (no final period); chatml
 * (e.g. teknium/OpenHermes-2.5-Mistral-7B) is the same without the default:
 *   {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n
 *   You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' +
 *   message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{
 *   '<|im_start|>assistant\n' }}{% endif %}
 *
 * llama-3 (meta-llama/Meta-Llama-3-8B-Instruct):
 *   {% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' +
 *   message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}
 *   {% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{
 *   '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
 *
 * llama-3.1 (meta-llama/Llama-3.1-8B-Instruct), the parts that render without tools: bos_token; the first
 * message, when a system one, taken out as system_message = content|trim (else ""); then
 *   "<|start_header_id|>system<|end_header_id|>\n\n" "Cutting Knowledge Date: December 2023\n"
 *   "Today Date: " + date_string ("26 Jul 2024" unless the caller defines it) + "\n\n" + system_message
 *   + "<|eot_id|>"; then every other message as in llama-3, then the same generation prompt.
 *
 * Jinja's trim and Python's strip() both strip what Python's str.isspace() calls whitespace, which
 * is more than ASCII (U+00A0, U+3000, ...): strip_ws() below does the same. */
#include "api/chat_template.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

static const struct {
    brt_chat_kind kind;
    const char *name;
} kinds[] = {
    {BRT_CHAT_LLAMA2, "llama-2"}, {BRT_CHAT_CHATML, "chatml"},   {BRT_CHAT_QWEN2, "qwen2"},
    {BRT_CHAT_SMOLLM2, "smollm2"}, {BRT_CHAT_LLAMA3, "llama-3"}, {BRT_CHAT_LLAMA31, "llama-3.1"},
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

static const char QWEN2_SYSTEM[] = "You are a helpful assistant.";
static const char SMOLLM2_SYSTEM[] = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
static const char LLAMA31_SYSTEM_HEAD[] = "\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

const char *brt_chat_kind_name(brt_chat_kind k)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (kinds[i].kind == k)
            return kinds[i].name;
    return "unknown";
}

/* For error messages; test_chat_template checks that it names every entry of kinds[]. */
#define KNOWN_NAMES "llama-2, chatml, qwen2, smollm2, llama-3, llama-3.1"

brt_status brt_chat_kind_from_name(const char *name, brt_chat_kind *out, brt_err *err)
{
    for (size_t i = 0; name && i < N_KINDS; i++)
        if (strcmp(name, kinds[i].name) == 0) {
            *out = kinds[i].kind;
            return BRT_OK;
        }
    return brt_errf(err, BRT_ERR_INVALID, "unknown chat template \"%.64s\" (known: %s)", name ? name : "",
                    KNOWN_NAMES);
}

/* ---- whitespace as Python's str.isspace() sees it ------------------------------------------ */

/* Byte length of the whitespace character that starts s and spans exactly n bytes, or 0. */
static size_t ws_char(const unsigned char *s, size_t n)
{
    if (n == 1)
        return (s[0] == ' ' || (s[0] >= 0x09 && s[0] <= 0x0d) || (s[0] >= 0x1c && s[0] <= 0x1f)) ? 1 : 0;
    if (n == 2)
        return (s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) ? 2 : 0; /* U+0085, U+00A0 */
    if (n != 3 || (s[0] & 0xf0) != 0xe0 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
        return 0;
    uint32_t cp = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
    int ws = cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
             cp == 0x205f || cp == 0x3000;
    return ws ? 3 : 0;
}

/* Narrow [*s, *s + *n) to its str.strip() */
static void strip_ws(const char **s, size_t *n)
{
    const unsigned char *p = (const unsigned char *)*s;
    size_t len = *n;
    for (int again = 1; again;) {
        again = 0;
        for (size_t k = 1; k <= 3 && k <= len; k++)
            if (ws_char(p, k)) {
                p += k, len -= k, again = 1;
                break;
            }
    }
    for (int again = 1; again;) {
        again = 0;
        for (size_t k = 1; k <= 3 && k <= len; k++)
            if (ws_char(p + len - k, k)) {
                len -= k, again = 1;
                break;
            }
    }
    *s = (const char *)p;
    *n = len;
}

/* ---- the messages -------------------------------------------------------------------------- */

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };
static const char *const role_names[] = {"system", "user", "assistant"};

static int role_index(const char *role)
{
    for (int r = 0; r < 3; r++)
        if (strcmp(role, role_names[r]) == 0)
            return r;
    return -1;
}

typedef struct msg {
    int role;
    const char *text; /* the JSON string, or owned.data for content parts */
    size_t len;
    brt_buf owned;
} msg;

static void msgs_free(msg *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++)
        brt_buf_free(&m[i].owned);
    free(m);
}

static brt_status parse_content(const json_t *c, size_t i, msg *m, brt_err *err)
{
    if (json_is_string(c)) {
        m->text = json_string_value(c);
        m->len = json_string_length(c);
        return BRT_OK;
    }
    if (!json_is_array(c))
        return brt_errf(err, BRT_ERR_INVALID, "messages[%zu].content: %s (want a string or an array of text parts)",
                        i, c ? "wrong type" : "missing");
    for (size_t j = 0; j < json_array_size(c); j++) {
        const json_t *part = json_array_get(c, j);
        if (!json_is_object(part))
            return brt_errf(err, BRT_ERR_INVALID, "messages[%zu].content[%zu]: not an object", i, j);
        const json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type))
            return brt_errf(err, BRT_ERR_INVALID, "messages[%zu].content[%zu].type: %s (want \"text\")", i, j,
                            type ? "not a string" : "missing");
        if (strcmp(json_string_value(type), "text") != 0)
            return brt_errf(err, BRT_ERR_INVALID,
                            "messages[%zu].content[%zu].type: \"%.32s\" is not supported (only \"text\" parts)", i,
                            j, json_string_value(type));
        if (!json_is_string(text))
            return brt_errf(err, BRT_ERR_INVALID, "messages[%zu].content[%zu].text: %s (want a string)", i, j,
                            text ? "not a string" : "missing");
        if (brt_buf_append(&m->owned, json_string_value(text), json_string_length(text)) != 0)
            return brt_errf(err, BRT_ERR_NOMEM, "messages[%zu].content: out of memory", i);
    }
    m->text = m->owned.data ? m->owned.data : "";
    m->len = m->owned.len;
    return BRT_OK;
}

static brt_status parse_messages(const json_t *messages, msg **out, size_t *n_out, brt_err *err)
{
    if (!json_is_array(messages))
        return brt_errf(err, BRT_ERR_INVALID, "messages: %s (want an array)", messages ? "wrong type" : "missing");
    size_t n = json_array_size(messages);
    if (n == 0)
        return brt_errf(err, BRT_ERR_INVALID, "messages: empty (want at least one message)");
    msg *m = calloc(n, sizeof *m);
    if (!m)
        return brt_errf(err, BRT_ERR_NOMEM, "messages: out of memory");
    brt_status st = BRT_OK;
    for (size_t i = 0; i < n && st == BRT_OK; i++) {
        const json_t *o = json_array_get(messages, i), *role = json_object_get(o, "role");
        if (!json_is_object(o))
            st = brt_errf(err, BRT_ERR_INVALID, "messages[%zu]: not an object", i);
        else if (!json_is_string(role))
            st = brt_errf(err, BRT_ERR_INVALID, "messages[%zu].role: %s (want \"system\", \"user\" or \"assistant\")",
                          i, role ? "not a string" : "missing");
        else if ((m[i].role = role_index(json_string_value(role))) < 0)
            st = brt_errf(err, BRT_ERR_INVALID,
                          "messages[%zu].role: \"%.32s\" is not supported (want \"system\", \"user\" or \"assistant\")",
                          i, json_string_value(role));
        else
            st = parse_content(json_object_get(o, "content"), i, &m[i], err);
    }
    if (st != BRT_OK) {
        msgs_free(m, n);
        return st;
    }
    *out = m;
    *n_out = n;
    return BRT_OK;
}

/* ---- building the pieces ------------------------------------------------------------------- */

/* Text accumulates in pending until a special closes it, so text pieces come out maximal. An
 * allocation failure sets oom and turns every later call into a no-op: the renderers stay
 * straight-line and check once at the end. */
typedef struct builder {
    brt_chat_prompt p;
    size_t cap;
    brt_buf pending;
    int oom;
} builder;

static void push_piece(builder *b, int special, char *text, size_t len)
{
    if (!b->oom && b->p.n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 16;
        brt_chat_piece *np = realloc(b->p.pieces, cap * sizeof *np);
        if (np) {
            b->p.pieces = np;
            b->cap = cap;
        } else {
            b->oom = 1;
        }
    }
    if (b->oom || !text) {
        b->oom = 1;
        free(text);
        return;
    }
    b->p.pieces[b->p.n++] = (brt_chat_piece){.special = special, .text = text, .len = len};
}

static void emit_text_n(builder *b, const char *s, size_t n)
{
    if (!b->oom && brt_buf_append(&b->pending, s, n) != 0)
        b->oom = 1;
}

static void emit_text(builder *b, const char *s)
{
    emit_text_n(b, s, strlen(s));
}

static void flush_text(builder *b)
{
    if (b->oom || b->pending.len == 0)
        return;
    size_t len = b->pending.len;
    char *owned = b->pending.data; /* handed over: the piece owns it from here */
    b->pending = (brt_buf){0};
    push_piece(b, 0, owned, len);
}

static void emit_special(builder *b, const char *tok)
{
    flush_text(b);
    if (!b->oom)
        push_piece(b, 1, strdup(tok), strlen(tok));
}

/* ---- the families -------------------------------------------------------------------------- */

/* Official behaviour kept: the system message folds into the first user turn and the folded text
 * is stripped as a whole (so the system text's own edges stay, the user text's end goes). One
 * deliberate difference: the official template checks alternation by position, so a system message
 * at an odd position passes its check and renders as nothing; here any system message after the
 * first is refused rather than silently dropped. */
static brt_status render_llama2(builder *b, const msg *m, size_t n, brt_err *err)
{
    size_t first = m[0].role == ROLE_SYSTEM ? 1 : 0;
    if (first == n)
        return brt_errf(err, BRT_ERR_INVALID, "messages: llama-2 needs a user message after the system message");
    for (size_t i = first; i < n; i++) {
        int want = (i - first) % 2 == 0 ? ROLE_USER : ROLE_ASSISTANT;
        if (m[i].role != want)
            return brt_errf(err, BRT_ERR_INVALID,
                            "messages[%zu].role: \"%s\" where \"%s\" was due: llama-2 roles must alternate "
                            "user/assistant/user/... after an optional first system message",
                            i, role_names[m[i].role], role_names[want]);
    }
    if (m[n - 1].role != ROLE_USER)
        return brt_errf(err, BRT_ERR_INVALID,
                        "messages[%zu]: the last message must be the user's: the llama-2 template has no way to "
                        "open an assistant turn after an assistant message",
                        n - 1);
    brt_buf folded = {0};
    for (size_t i = first; i < n; i++) {
        const char *s = m[i].text;
        size_t len = m[i].len;
        if (i == first && first == 1) {
            if (brt_buf_append(&folded, "<<SYS>>\n", 8) || brt_buf_append(&folded, m[0].text, m[0].len) ||
                brt_buf_append(&folded, "\n<</SYS>>\n\n", 11) || brt_buf_append(&folded, s, len)) {
                brt_buf_free(&folded);
                return brt_errf(err, BRT_ERR_NOMEM, "messages: out of memory");
            }
            s = folded.data;
            len = folded.len;
        }
        strip_ws(&s, &len);
        if (m[i].role == ROLE_USER) {
            emit_special(b, "<s>");
            emit_text(b, "[INST] ");
            emit_text_n(b, s, len);
            emit_text(b, " [/INST]");
        } else {
            emit_text(b, " ");
            emit_text_n(b, s, len);
            emit_text(b, " ");
            emit_special(b, "</s>");
        }
    }
    brt_buf_free(&folded);
    return BRT_OK;
}

static void render_chatml(builder *b, const msg *m, size_t n, const char *default_system)
{
    if (default_system && m[0].role != ROLE_SYSTEM) {
        emit_special(b, "<|im_start|>");
        emit_text(b, "system\n");
        emit_text(b, default_system);
        emit_special(b, "<|im_end|>");
        emit_text(b, "\n");
    }
    for (size_t i = 0; i < n; i++) {
        emit_special(b, "<|im_start|>");
        emit_text(b, role_names[m[i].role]);
        emit_text(b, "\n");
        emit_text_n(b, m[i].text, m[i].len);
        emit_special(b, "<|im_end|>");
        emit_text(b, "\n");
    }
    emit_special(b, "<|im_start|>");
    emit_text(b, "assistant\n");
}

static void llama3_turn(builder *b, const char *role, const char *s, size_t len)
{
    emit_special(b, "<|start_header_id|>");
    emit_text(b, role);
    emit_special(b, "<|end_header_id|>");
    emit_text(b, "\n\n");
    strip_ws(&s, &len);
    emit_text_n(b, s, len);
    emit_special(b, "<|eot_id|>");
}

static void render_llama3(builder *b, const msg *m, size_t n, int v31)
{
    emit_special(b, "<|begin_of_text|>");
    size_t first = 0;
    if (v31) {
        /* 3.1 always opens with a system turn; a leading system message only adds to it */
        emit_special(b, "<|start_header_id|>");
        emit_text(b, "system");
        emit_special(b, "<|end_header_id|>");
        emit_text(b, LLAMA31_SYSTEM_HEAD);
        if (m[0].role == ROLE_SYSTEM) {
            const char *s = m[0].text;
            size_t len = m[0].len;
            strip_ws(&s, &len);
            emit_text_n(b, s, len);
            first = 1;
        }
        emit_special(b, "<|eot_id|>");
    }
    for (size_t i = first; i < n; i++)
        llama3_turn(b, role_names[m[i].role], m[i].text, m[i].len);
    emit_special(b, "<|start_header_id|>");
    emit_text(b, "assistant");
    emit_special(b, "<|end_header_id|>");
    emit_text(b, "\n\n");
}

void brt_chat_prompt_free(brt_chat_prompt *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->pieces[i].text);
    free(p->pieces);
    *p = (brt_chat_prompt){0};
}

brt_status brt_chat_render(brt_chat_kind k, const json_t *messages, brt_chat_prompt *out, brt_err *err)
{
    *out = (brt_chat_prompt){0};
    const char *stop;
    switch (k) {
    case BRT_CHAT_LLAMA2: stop = "</s>"; break;
    case BRT_CHAT_CHATML:
    case BRT_CHAT_QWEN2:
    case BRT_CHAT_SMOLLM2: stop = "<|im_end|>"; break;
    case BRT_CHAT_LLAMA3:
    case BRT_CHAT_LLAMA31: stop = "<|eot_id|>"; break;
    default: return brt_errf(err, BRT_ERR_INVALID, "chat template kind %d does not exist", (int)k);
    }
    msg *m = NULL;
    size_t n = 0;
    BRT_TRY(parse_messages(messages, &m, &n, err));
    builder b = {0};
    brt_status st = BRT_OK;
    switch (k) {
    case BRT_CHAT_LLAMA2: st = render_llama2(&b, m, n, err); break;
    case BRT_CHAT_CHATML: render_chatml(&b, m, n, NULL); break;
    case BRT_CHAT_QWEN2: render_chatml(&b, m, n, QWEN2_SYSTEM); break;
    case BRT_CHAT_SMOLLM2: render_chatml(&b, m, n, SMOLLM2_SYSTEM); break;
    case BRT_CHAT_LLAMA3: render_llama3(&b, m, n, 0); break;
    case BRT_CHAT_LLAMA31: render_llama3(&b, m, n, 1); break;
    }
    flush_text(&b);
    msgs_free(m, n);
    brt_buf_free(&b.pending);
    if (st == BRT_OK && b.oom)
        st = brt_errf(err, BRT_ERR_NOMEM, "chat template %s: out of memory", brt_chat_kind_name(k));
    if (st != BRT_OK) {
        brt_chat_prompt_free(&b.p);
        return st;
    }
    b.p.stop_token = stop;
    *out = b.p;
    return BRT_OK;
}

/* ---- recognising a tokenizer_config.json's template ----------------------------------------- */

/* Markers are matched on the template with the two-character escape \n turned into a newline:
 * Qwen2's and Llama-3's files hold real newlines inside the Jinja string literals, Llama-2's and
 * Llama-3.1's hold the escape, and both render the same. */
static char *unescape_newlines(const char *t)
{
    char *u = malloc(strlen(t) + 1), *w = u;
    if (!u)
        return NULL;
    for (const char *r = t; *r; r++) {
        if (r[0] == '\\' && r[1] == 'n') {
            *w++ = '\n';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return u;
}

static int has(const char *t, const char *marker)
{
    return strstr(t, marker) != NULL;
}

/* Whether the default system texts in t are exactly want: a default is what a string literal holds
 * between head and end (as in '<|im_start|>system\nYou are ...<|im_end|>'). A head followed at once
 * by the literal's closing quote opens a turn whose content comes from the messages: no default.
 * want NULL: true when t has no default; else true when t has at least one and all equal want. */
static int defaults_are(const char *t, const char *head, const char *end, const char *want)
{
    size_t hl = strlen(head);
    int found = 0;
    for (const char *p = strstr(t, head); p; p = strstr(p + hl, head)) {
        const char *s = p + hl;
        if (*s == '\'' || *s == '"')
            continue;
        const char *e = strstr(s, end);
        if (!want || !e || (size_t)(e - s) != strlen(want) || strncmp(s, want, strlen(want)) != 0)
            return 0;
        found = 1;
    }
    return want ? found : 1;
}

static brt_chat_kind classify_chatml(const char *t)
{
    /* trimming, BOS/EOS in the turns, or Qwen3-style reasoning blocks render differently */
    if (!has(t, "<|im_start|>assistant\n") || has(t, "trim") || has(t, "strip") || has(t, "bos_token") ||
        has(t, "eos_token") || has(t, "<think>"))
        return 0;
    static const char head[] = "<|im_start|>system\n", end[] = "<|im_end|>";
    if (defaults_are(t, head, end, QWEN2_SYSTEM))
        return BRT_CHAT_QWEN2;
    if (defaults_are(t, head, end, SMOLLM2_SYSTEM))
        return BRT_CHAT_SMOLLM2;
    /* no default at all; a template that names the system turn without one of the defaults above
     * (another default, e.g. Qwen2.5's "You are Qwen, ...", or system handled specially) is unknown */
    return has(t, "<|im_start|>system") ? 0 : BRT_CHAT_CHATML;
}

static brt_chat_kind classify_llama3(const char *t)
{
    if (!has(t, "<|end_header_id|>\n\n") || !has(t, "<|eot_id|>") || !has(t, "trim") ||
        !has(t, "<|start_header_id|>assistant<|end_header_id|>\n\n") ||
        !(has(t, "bos_token") || has(t, "<|begin_of_text|>")))
        return 0;
    if (has(t, "Cutting Knowledge Date: December 2023\n") && has(t, "Today Date: ") && has(t, "26 Jul 2024") &&
        !has(t, "strftime_now"))
        return BRT_CHAT_LLAMA31;
    /* Llama-3.2's date from the clock, or other dated or injected system text */
    if (has(t, "Cutting Knowledge") || has(t, "date_string") ||
        !defaults_are(t, "<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>", NULL))
        return 0;
    return BRT_CHAT_LLAMA3;
}

static brt_chat_kind classify_llama2(const char *t)
{
    if (!has(t, "<<SYS>>\n") || !has(t, "\n<</SYS>>\n\n") || !has(t, "[INST] ") || !has(t, " [/INST]") ||
        !has(t, "bos_token") || !has(t, "eos_token") || !(has(t, "strip()") || has(t, "trim")))
        return 0;
    /* the Hugging Face default_chat_template and its copies (Vigogne, ...) inject a default system
     * prompt: system_message = '...' */
    if (has(t, "system_message = '") || has(t, "system_message = \"") || has(t, "DEFAULT_SYSTEM") ||
        has(t, "USE_DEFAULT_PROMPT"))
        return 0;
    return BRT_CHAT_LLAMA2;
}

static brt_chat_kind classify(const char *t)
{
    if (has(t, "<|im_start|>") && has(t, "<|im_end|>"))
        return has(t, "<|start_header_id|>") || has(t, "[INST]") ? 0 : classify_chatml(t);
    if (has(t, "<|start_header_id|>"))
        return has(t, "[INST]") ? 0 : classify_llama3(t);
    if (has(t, "[INST]"))
        return classify_llama2(t);
    return 0;
}

brt_status brt_chat_detect(const char *model_dir, brt_chat_kind *out, brt_err *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir) >= sizeof path)
        return brt_errf(err, BRT_ERR_INVALID, "model folder path too long: %.200s...", model_dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        FILE *f = fopen(path, "r");
        if (!f && errno == ENOENT)
            return brt_errf(err, BRT_ERR_NOT_FOUND,
                            "%s: not found, so the chat template is unknown; pass --chat-template NAME (%s)", path,
                            KNOWN_NAMES);
        if (!f)
            return brt_errf(err, BRT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        fclose(f);
        return brt_errf(err, BRT_ERR_FORMAT, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
    }
    brt_status st = BRT_OK;
    const json_t *ct = json_object_get(root, "chat_template");
    if (json_is_array(ct)) {
        const json_t *named = NULL;
        for (size_t i = 0; i < json_array_size(ct); i++) {
            const json_t *e = json_array_get(ct, i), *name = json_object_get(e, "name");
            if (json_is_string(name) && strcmp(json_string_value(name), "default") == 0)
                named = json_object_get(e, "template");
        }
        if (!named) {
            st = brt_errf(err, BRT_ERR_NOT_FOUND,
                          "%s: \"chat_template\" lists no template named \"default\"; pass --chat-template NAME (%s)",
                          path, KNOWN_NAMES);
            goto out;
        }
        ct = named;
    }
    if (!ct) {
        st = brt_errf(err, BRT_ERR_NOT_FOUND, "%s: no \"chat_template\"; pass --chat-template NAME (%s)", path,
                      KNOWN_NAMES);
        goto out;
    }
    if (!json_is_string(ct)) {
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: \"chat_template\" is not a string (nor a list of {name, template})",
                      path);
        goto out;
    }
    char *t = unescape_newlines(json_string_value(ct));
    if (!t) {
        st = brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    brt_chat_kind k = classify(t);
    free(t);
    if (!k) {
        st = brt_errf(err, BRT_ERR_UNSUPPORTED,
                      "%s: the chat_template is none of the known ones, or renders differently from them; pass "
                      "--chat-template NAME (%s) if one of them is the model's format",
                      path, KNOWN_NAMES);
        goto out;
    }
    *out = k;
out:
    json_decref(root);
    return st;
}
