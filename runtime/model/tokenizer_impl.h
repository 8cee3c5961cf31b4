/* The second tokenizer backend behind model/tokenizer.h: Hugging Face `tokenizers` files
 * (tokenizer.json + tokenizer_config.json), implemented in hf_tokenizer.c. tokenizer.c owns the
 * public brt_tokenizer and forwards every call to this backend when the tokenizer was loaded
 * from a tokenizer.json; nothing outside runtime/model includes this header.
 *
 * The semantics of each function are those of the public function of the same name in
 * model/tokenizer.h; the notes here say only where the Hugging Face backend differs. */
#ifndef BRT_TOKENIZER_IMPL_H
#define BRT_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct brt_hf_tokenizer brt_hf_tokenizer;

/* json_path: the tokenizer.json; config_path: its tokenizer_config.json, or NULL when there is
 * none (BOS/EOS then come from the post-processor alone). */
brt_status brt_hf_load(const char *json_path, const char *config_path, brt_hf_tokenizer **out, brt_err *err);
void brt_hf_free(brt_hf_tokenizer *t);

int32_t brt_hf_vocab_size(const brt_hf_tokenizer *t);
int32_t brt_hf_bos_id(const brt_hf_tokenizer *t);
int32_t brt_hf_eos_id(const brt_hf_tokenizer *t);
int32_t brt_hf_unk_id(const brt_hf_tokenizer *t);
int32_t brt_hf_pad_id(const brt_hf_tokenizer *t);
int brt_hf_adds_bos(const brt_hf_tokenizer *t);

/* Like `tokenizers` encode(text, add_special_tokens=False), then BOS in front when add_bos. */
brt_status brt_hf_encode_max(const brt_hf_tokenizer *t, const char *text, size_t len, int add_bos, size_t max_ids,
                             int32_t **ids, size_t *n_ids, brt_err *err);
/* Like `tokenizers` decode(ids, skip_special_tokens=True): special added tokens read as nothing,
 * as sentencepiece's control pieces do in the other backend. */
brt_status brt_hf_decode(const brt_hf_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
                         brt_err *err);
size_t brt_hf_token_bytes(const brt_hf_tokenizer *t, int32_t id, char *buf, size_t cap);
size_t brt_hf_max_token_bytes(const brt_hf_tokenizer *t);
const char *brt_hf_piece(const brt_hf_tokenizer *t, int32_t id);
int brt_hf_piece_type(const brt_hf_tokenizer *t, int32_t id);
int32_t brt_hf_piece_id(const brt_hf_tokenizer *t, const char *piece, size_t len);

#endif
