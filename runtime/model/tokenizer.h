/* Tokenizers of a model folder, two backends behind one API:
 *
 * - SentencePiece BPE (tokenizer.model), bit-exact to sentencepiece 0.1.97's encode and decode
 *   for BPE models with the identity normalizer (Llama-1/2, llama2.c TinyStories models).
 *   Supported: model_type BPE, an empty precompiled_charsmap (no Unicode normalization), the
 *   normalizer flags add_dummy_prefix / remove_extra_whitespaces / escape_whitespaces, byte
 *   fallback, USER_DEFINED, CONTROL and UNUSED pieces.
 * - Hugging Face `tokenizers` files (tokenizer.json, with tokenizer_config.json beside it for
 *   BOS/EOS), equal to the `tokenizers` library's encode(text, add_special_tokens=False) and
 *   decode(ids, skip_special_tokens=True): BPE models (byte-level as GPT-2, Llama-3, Qwen2,
 *   SmolLM; SentencePiece-style with byte fallback as Llama/Mistral files), the normalizers NFC,
 *   NFD, NFKC, NFKD, Lowercase, Prepend, Replace and Sequence, the pre-tokenizers ByteLevel,
 *   Split, Digits and Sequence (regexes through PCRE2 with Oniguruma's meaning), the decoders
 *   ByteLevel, ByteFallback, Fuse, Strip, Replace and Sequence, added tokens with their
 *   lstrip/rstrip/single_word/normalized flags, and a TemplateProcessing post-processor that
 *   puts BOS first. In the API below, special added tokens are CONTROL pieces, other added
 *   tokens USER_DEFINED, the model's unk_token UNKNOWN, <0xAB> tokens of a byte-fallback model
 *   BYTE, ids no token holds UNUSED.
 *
 * Anything else is refused at load time (BRT_ERR_UNSUPPORTED, naming the file and the field)
 * rather than tokenized differently from the reference library.
 *
 * A loaded tokenizer is immutable: every function below may be called from many threads. */
#ifndef BRT_TOKENIZER_H
#define BRT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct brt_tokenizer brt_tokenizer;

/* Load a tokenizer file: a path ending in ".json" is a Hugging Face tokenizer.json (with the
 * tokenizer_config.json of the same folder, if there is one), anything else a sentencepiece
 * model. Errors: BRT_ERR_IO (cannot read path), BRT_ERR_FORMAT (not a parsable model, no pieces,
 * duplicate or empty pieces, missing <unk> or byte pieces; for JSON: the field that is wrong),
 * BRT_ERR_UNSUPPORTED (sentencepiece: not BPE, non-identity normalization, whitespace-as-suffix;
 * JSON: the field naming what is not implemented). */
brt_status brt_tokenizer_load(const char *path, brt_tokenizer **out, brt_err *err);
/* Load a model folder's tokenizer the way transformers picks it: DIR/tokenizer.json when there
 * is one, else DIR/tokenizer.model; BRT_ERR_NOT_FOUND when neither exists. */
brt_status brt_tokenizer_load_dir(const char *dir, brt_tokenizer **out, brt_err *err);
void brt_tokenizer_free(brt_tokenizer *tok);

/* Number of pieces (ids are 0 .. vocab_size-1). */
int32_t brt_tokenizer_vocab_size(const brt_tokenizer *tok);
/* Special ids, looked up like sentencepiece does (by the trainer's piece names); -1 if absent. */
int32_t brt_tokenizer_bos_id(const brt_tokenizer *tok);
int32_t brt_tokenizer_eos_id(const brt_tokenizer *tok);
int32_t brt_tokenizer_unk_id(const brt_tokenizer *tok);
int32_t brt_tokenizer_pad_id(const brt_tokenizer *tok);
/* Whether the model's own tokenizer puts BOS before a text by default, i.e. what to pass as
 * add_bos for a plain prompt: sentencepiece models 1 (as Llama's); tokenizer.json models as
 * tokenizer_config.json's add_bos_token says, else as the post_processor's template does (Llama-3:
 * 1; GPT-2, Qwen2, SmolLM2: 0). For the HF backend, bos_id is tokenizer_config.json's bos_token
 * (else the template's), eos_id its eos_token, pad_id its pad_token, unk_id model.unk_token. */
int brt_tokenizer_adds_bos(const brt_tokenizer *tok);

/* Encode UTF-8 text like sentencepiece's encode (out_type=int): the model's normalizer (dummy
 * prefix, remove_extra_whitespaces, U+2581 whitespace escaping), BPE merges by score, UNUSED
 * pieces resegmented, byte fallback for characters without a piece. add_bos prepends BOS (an
 * error if the model has none). *ids is malloc'ed (never NULL on success), caller frees.
 * Invalid UTF-8 is BRT_ERR_INVALID naming the byte offset (sentencepiece would silently map
 * it to U+FFFD; a request with broken text is better rejected). A tokenizer.json model encodes
 * as `tokenizers`' encode(text, add_special_tokens=False) does, then add_bos prepends BOS. */
brt_status brt_tokenizer_encode(const brt_tokenizer *tok, const char *text, size_t len, int add_bos,
                                int32_t **ids, size_t *n_ids, brt_err *err);
/* The same, refusing (BRT_ERR_RANGE) a text of more than max_ids tokens: it stops soon after the
 * limit, so a huge text costs about its own size in memory, not the tokens of all of it. */
brt_status brt_tokenizer_encode_max(const brt_tokenizer *tok, const char *text, size_t len, int add_bos,
                                    size_t max_ids, int32_t **ids, size_t *n_ids, brt_err *err);

/* Decode like sentencepiece's decode: pieces concatenated with U+2581 -> ' ', control pieces
 * -> "", runs of byte pieces reassembled into UTF-8 (each invalid byte -> U+FFFD), unknown -> the
 * model's unk_surface (default " \xE2\x81\x87 "). When the model adds a dummy prefix, the
 * leading U+2581 of pieces is dropped while the output is still empty: once if the model keeps
 * extra whitespace (" x" is [▁, ▁x]), every time if it removes it. *text is malloc'ed and
 * NUL-terminated (it may contain NUL bytes from <0x00>; *len is authoritative). An id outside
 * [0, vocab_size) is BRT_ERR_RANGE naming the id and its position. A tokenizer.json model
 * decodes as `tokenizers`' decode(ids, skip_special_tokens=True) (its decoder chain; special
 * tokens -> "", like control pieces; invalid UTF-8 -> U+FFFD as Rust's from_utf8_lossy). */
brt_status brt_tokenizer_decode(const brt_tokenizer *tok, const int32_t *ids, size_t n, char **text,
                                size_t *len, brt_err *err);

/* The raw bytes one token contributes to a stream (U+2581 -> ' ', <0xAB> -> that single byte,
 * control -> nothing, unknown -> unk_surface), without decode's first-piece rule: for per-token
 * output such as logprobs "tokens". Writes at most cap bytes (truncating) and returns the count
 * written; an out-of-range id writes nothing. brt_tokenizer_max_token_bytes() always suffices.
 * A tokenizer.json model: the decoder's per-token steps (byte-level characters -> their bytes,
 * <0xAB> -> that byte, Replace), not the ones that join tokens (Fuse, Strip). */
size_t brt_tokenizer_token_bytes(const brt_tokenizer *tok, int32_t id, char *buf, size_t cap);
/* Longest brt_tokenizer_token_bytes output for this model. */
size_t brt_tokenizer_max_token_bytes(const brt_tokenizer *tok);

/* The piece string of an id (e.g. "\xE2\x96\x81the", "<0x0A>", "<s>"); NULL if out of range, ""
 * for an id no token has (a gap in a tokenizer.json vocabulary). Valid until brt_tokenizer_free. */
const char *brt_tokenizer_piece(const brt_tokenizer *tok, int32_t id);

/* Piece kinds, as in sentencepiece's model (values equal its enum). */
typedef enum brt_piece_type {
    BRT_PIECE_NORMAL = 1,
    BRT_PIECE_UNKNOWN = 2,
    BRT_PIECE_CONTROL = 3,
    BRT_PIECE_USER_DEFINED = 4,
    BRT_PIECE_UNUSED = 5,
    BRT_PIECE_BYTE = 6
} brt_piece_type;

/* Type of an id; 0 if out of range. */
int brt_tokenizer_piece_type(const brt_tokenizer *tok, int32_t id);
/* Piece id of an exact piece string (e.g. "</s>"), or -1. */
int32_t brt_tokenizer_piece_id(const brt_tokenizer *tok, const char *piece, size_t len);

/* The bytes the tokens add in a stream, concatenated (brt_tokenizer_token_bytes of each: no
 * first-piece rule; a continuation reads as it follows its prompt). *text is malloc'ed, NUL-
 * terminated. */
brt_status brt_tokenizer_join(const brt_tokenizer *tok, const int32_t *ids, size_t n, char **text, size_t *len,
                              brt_err *err);

#endif
