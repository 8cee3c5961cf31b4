#!/usr/bin/env python3
"""Turn a GGUF file (llama.cpp's format) into a Hugging Face model folder, with the `gguf` package
(llama.cpp's own reader, from PyPI).

usage: gguf_to_hf.py IN.gguf OUT_DIR [--tokenizer-only] [--dtype f32|bf16]

Writes:
  tokenizer.json         the vocabulary as a Hugging Face `tokenizers` file: byte-level BPE
                         (tokenizer.ggml.model "gpt2": GPT-2, Llama-3, Qwen2, SmolLM) with the
                         pre-tokenizer of its `tokenizer.ggml.pre` family, or the SentencePiece-
                         style BPE of Llama/Mistral ("llama": merges derived from the scores as
                         transformers' converter does); CONTROL tokens become special added tokens
  tokenizer_config.json  BOS/EOS tokens, add_bos_token, the chat template
  config.json, model.safetensors (not with --tokenizer-only)
                         a LlamaForCausalLM folder: tensors dequantized (Q4_0/Q4_1/Q8_0/F16/...)
                         with the gguf package, renamed to Hugging Face's names, and the Q/K rows
                         put back in Hugging Face's order (llama.cpp's converter interleaves them
                         for its RoPE)

Families whose pre-tokenizer this script does not know are refused by name.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import gguf

# Pre-tokenizer regular expressions of the byte-level families, as their tokenizer.json files
# give them (Split with "Isolated" behaviour, then ByteLevel without its own regex).
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_level(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def split(pattern):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


PRE_TOKENIZERS = {
    "gpt-2": byte_level(True),
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                      byte_level(True)]},
    "llama-bpe": {"type": "Sequence", "pretokenizers": [split(LLAMA3_RE), byte_level(False)]},
    "qwen2": {"type": "Sequence", "pretokenizers": [split(QWEN2_RE), byte_level(False)]},
}
NORMALIZERS = {"qwen2": {"type": "NFC"}}
IGNORE_MERGES = {"llama-bpe"}  # Llama-3's file: a word that is a whole token is not merged again


def field(r, key, default=None):
    f = r.fields.get(key)
    if f is None:
        return default
    return f.contents()


def tokenizer_files(r, out):
    model = field(r, "tokenizer.ggml.model")
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type", [1] * len(tokens))
    bos, eos = field(r, "tokenizer.ggml.bos_token_id"), field(r, "tokenizer.ggml.eos_token_id")
    unk = field(r, "tokenizer.ggml.unknown_token_id")
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": types[i] == 3} for i, t in enumerate(tokens) if types[i] in (3, 4)]
    if model == "gpt2":
        pre = field(r, "tokenizer.ggml.pre", "gpt-2")
        if pre not in PRE_TOKENIZERS:
            sys.exit("gguf_to_hf: tokenizer.ggml.pre %r is not a family this script knows (%s)"
                     % (pre, ", ".join(sorted(PRE_TOKENIZERS))))
        merges = field(r, "tokenizer.ggml.merges")
        tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
              "normalizer": NORMALIZERS.get(pre), "pre_tokenizer": PRE_TOKENIZERS[pre],
              "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                 "use_regex": True},
              "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
              "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                        "ignore_merges": pre in IGNORE_MERGES,
                        "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}
    elif model == "llama":
        scores = field(r, "tokenizer.ggml.scores")
        vocab = {t: i for i, t in enumerate(tokens)}
        # merges as transformers' SentencePiece converter derives them: every split of a piece into
        # two pieces, ordered by the merged piece's score (then by the parts' ids)
        merges = []
        for piece, pid in vocab.items():
            if types[pid] != 1:
                continue
            for k in range(1, len(piece)):
                a, b = piece[:k], piece[k:]
                if a in vocab and b in vocab and types[vocab[a]] == 1 and types[vocab[b]] == 1:
                    merges.append((-scores[pid], vocab[a], vocab[b], a, b))
        merges.sort()
        tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
              "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                                 {"type": "Replace", "pattern": {"String": " "},
                                                                  "content": "\u2581"}]},
              "pre_tokenizer": None, "post_processor": None,
              "decoder": {"type": "Sequence", "decoders": [
                  {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                  {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1,
                                                                "stop": 0}]},
              "model": {"type": "BPE", "dropout": None, "unk_token": tokens[unk] if unk is not None else None,
                        "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                        "byte_fallback": True, "ignore_merges": False, "vocab": vocab,
                        "merges": ["%s %s" % (m[3], m[4]) for m in merges]}}
    else:
        sys.exit("gguf_to_hf: tokenizer.ggml.model %r is not supported (gpt2, llama)" % model)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast",
           "add_bos_token": bool(field(r, "tokenizer.ggml.add_bos_token", model == "llama")),
           "add_eos_token": bool(field(r, "tokenizer.ggml.add_eos_token", False)),
           "bos_token": tokens[bos] if bos is not None else None, "eos_token": tokens[eos] if eos is not None else None,
           "unk_token": tokens[unk] if unk is not None else None, "model_max_length": 131072}
    tmpl = field(r, "tokenizer.chat_template")
    if tmpl:
        cfg["chat_template"] = tmpl
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
    return bos, eos


def unpermute(w, n_head):
    """Undo llama.cpp's Q/K row interleaving (its converter's `permute`), back to HF's halves."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def to_bf16_bytes(a):
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def model_files(r, out, dtype, bos, eos):
    arch = field(r, "general.architecture")
    if arch != "llama":
        sys.exit("gguf_to_hf: general.architecture %r is not supported (llama)" % arch)
    p = "llama."
    n_head, n_kv = field(r, p + "attention.head_count"), field(r, p + "attention.head_count_kv")
    hidden = field(r, p + "embedding_length")
    tensors = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape)])  # GGUF lists dims fastest first
        name = t.name
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        elif name.startswith("blk."):
            _, layer, kind, _ = name.split(".")
            if kind not in NAMES:
                sys.exit("gguf_to_hf: tensor %s has no Hugging Face name here" % name)
            if kind == "attn_q":
                w = unpermute(w, n_head)
            elif kind == "attn_k":
                w = unpermute(w, n_kv)
            hf = "model.layers.%s.%s.weight" % (layer, NAMES[kind])
        else:
            continue  # rope_freqs and the like: derived from the config
        tensors[hf] = w
    vocab = tensors["model.embed_tokens.weight"].shape[0]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
           "intermediate_size": field(r, p + "feed_forward_length"), "num_hidden_layers": field(r, p + "block_count"),
           "num_attention_heads": n_head, "num_key_value_heads": n_kv,
           "max_position_embeddings": field(r, p + "context_length"),
           "rms_norm_eps": float(field(r, p + "attention.layer_norm_rms_epsilon")),
           "rope_theta": float(field(r, p + "rope.freq_base", 10000.0)), "vocab_size": vocab,
           "tie_word_embeddings": "lm_head.weight" not in tensors, "hidden_act": "silu",
           "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "float32" if dtype == "f32" else "bfloat16"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        w = tensors[name]
        b = w.astype(np.float32).tobytes() if dtype == "f32" else to_bf16_bytes(w)
        header[name] = {"dtype": "F32" if dtype == "f32" else "BF16", "shape": list(w.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--tokenizer-only", action="store_true")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    r = gguf.GGUFReader(a.gguf)
    bos, eos = tokenizer_files(r, a.out)
    if not a.tokenizer_only:
        model_files(r, a.out, a.dtype, bos, eos)


if __name__ == "__main__":
    main()
