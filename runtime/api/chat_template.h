/* Chat templates for POST /v1/chat/completions: an OpenAI "messages" array rendered the way a
 * model family's official Hugging Face Jinja template renders it with add_generation_prompt=true,
 * as a sequence of text pieces and special tokens.
 *
 * No Jinja engine: each family is written out in C from its official template text (quoted in
 * chat_template.c), and a model folder's tokenizer_config.json is only recognised, never
 * executed. A template that matches no family is an error, not a best guess: a prompt in the wrong
 * format still generates, just badly, and nothing downstream would notice. */
#ifndef BRT_CHAT_TEMPLATE_H
#define BRT_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#include "base/status.h"

typedef enum brt_chat_kind {
    BRT_CHAT_LLAMA2 = 1, /* "llama-2": meta-llama/Llama-2-*-chat-hf */
    BRT_CHAT_CHATML,     /* "chatml": ChatML without a default system message */
    BRT_CHAT_QWEN2,      /* "qwen2": ChatML, default system "You are a helpful assistant." */
    BRT_CHAT_SMOLLM2,    /* "smollm2": ChatML, default system "You are a helpful AI assistant named SmolLM, ..." */
    BRT_CHAT_LLAMA3,     /* "llama-3": Meta-Llama-3-*-Instruct (no injected system text) */
    BRT_CHAT_LLAMA31     /* "llama-3.1": Llama-3.1-*-Instruct (system turn always, with the knowledge dates) */
} brt_chat_kind;

/* One piece of a rendered conversation. special = 0: UTF-8 text to encode (maybe holding
 * "<|im_end|>" or "[INST]" typed by a user: it stays text). special = 1: a special token named by its
 * token text ("<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
 * "<|end_header_id|>", "<|eot_id|>"), which the caller maps to its id through its tokenizer; a special
 * must never come from encoding text. text is malloc'ed and NUL-terminated; len is authoritative (a
 * message may hold U+0000). */
typedef struct brt_chat_piece {
    int special;
    char *text;
    size_t len;
} brt_chat_piece;

/* pieces[0 .. n-1] in order. Text pieces are never empty and never adjacent: each is a whole run
 * between two specials, the segmentation a Hugging Face tokenizer gets when it splits a rendered
 * prompt on its special tokens (encode each text piece on its own, without BOS).
 * stop_token: the special that ends the assistant turn ("</s>", "<|im_end|>" or "<|eot_id|>"), a
 * static string; stop on the tokenizer's EOS as well. */
typedef struct brt_chat_prompt {
    brt_chat_piece *pieces;
    size_t n;
    const char *stop_token;
} brt_chat_prompt;

/* The family's name as --chat-template takes it ("llama-2", "chatml", "qwen2", "smollm2", "llama-3",
 * "llama-3.1"); "unknown" for a value outside the enum. Static. */
const char *brt_chat_kind_name(brt_chat_kind k);

/* The family a name denotes (exact, case-sensitive). Unknown: BRT_ERR_INVALID, the message listing
 * the known names. */
brt_status brt_chat_kind_from_name(const char *name, brt_chat_kind *out, brt_err *err);

/* The family of model_dir/tokenizer_config.json's "chat_template" (a string, or a list of
 * {"name", "template"} from which the one named "default" is taken), recognised by markers that
 * decide how it renders: the turn tokens, trimming, the default system text, the Llama-3.1 date
 * lines. Errors, each naming the file and telling the user to pass --chat-template NAME with the
 * known names: BRT_ERR_NOT_FOUND (no file, no "chat_template", no "default" in a list),
 * BRT_ERR_FORMAT (not JSON, "chat_template" of the wrong type), BRT_ERR_IO (the file exists but
 * cannot be read), BRT_ERR_UNSUPPORTED (a template of no known family, or one that renders unlike
 * its family: another default system text, a date taken from the clock, reasoning blocks). */
brt_status brt_chat_detect(const char *model_dir, brt_chat_kind *out, brt_err *err);

/* Render messages (a JSON array of objects with "role" "system" | "user" | "assistant" and
 * "content" a string or an array of {"type": "text", "text": ...} parts, concatenated without a
 * separator; other keys are ignored) followed by the opened assistant turn, into *out (caller frees
 * with brt_chat_prompt_free; on failure *out is left empty). Contents are stripped of leading and
 * trailing whitespace (Python's str.strip) where the family's template does so: llama-2, llama-3,
 * llama-3.1; ChatML keeps them as sent.
 * Errors (message naming the index and field, e.g. "messages[2].content[1].type: ..."):
 * BRT_ERR_INVALID for a non-array or empty messages, a non-object message, a missing or unknown
 * role, a missing content or one of another type, a part that is not {"type": "text", "text": string};
 * for llama-2 also roles that do not alternate user/assistant after one optional leading system
 * message (the official template raises the same) and a conversation that does not end with a
 * user message (that template cannot open an assistant turn after one). BRT_ERR_NOMEM. */
brt_status brt_chat_render(brt_chat_kind k, const json_t *messages, brt_chat_prompt *out, brt_err *err);

/* Free the pieces and reset *p to empty; p may be NULL or already empty. */
void brt_chat_prompt_free(brt_chat_prompt *p);

#endif
