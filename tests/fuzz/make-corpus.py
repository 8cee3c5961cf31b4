#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<harness>/ from files in the repository.

Run from anywhere: python3 tests/fuzz/make-corpus.py. Seeds are small (libFuzzer mutates small
inputs faster, and the repository stays small): long prompts are cut, safetensors files keep
their header and only the tensors whose data is small. The inputs that found a bug are written here
too (named regress-*), so that a rebuilt corpus keeps them; files this script does not write are
left alone.
"""
import json
import os
import re
import struct

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
MAX_SEED = 64 * 1024


def src(*p):
    return os.path.join(ROOT, *p)


def read(*p):
    with open(src(*p), "rb") as f:
        return f.read()


def put(harness, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) <= MAX_SEED, (harness, name, len(data))
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def dumps(o):
    return json.dumps(o, ensure_ascii=False)


# ---- batch lines, batch files, HTTP bodies ------------------------------------------------------

def example_lines(cut=300):
    """examples/long-docs.jsonl, every prompt cut to its first `cut` characters."""
    lines = []
    for raw in read("examples", "long-docs.jsonl").decode().splitlines():
        o = json.loads(raw)
        o["body"]["prompt"] = o["body"]["prompt"][:cut]
        lines.append(o)
    return lines


def chat_line():
    """The chat request tests/serve/openai_client.sh sends through `beaconrt run`."""
    return {"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "system", "content": "You tell short stories."},
                                  {"role": "user", "content": "Tell me a story."}],
                     "max_tokens": 10, "temperature": 0}}


def more_bodies():
    """Completions bodies with the fields api/request.h documents, at their edges."""
    return [
        {"prompt": "Once upon a time", "max_tokens": 8, "logprobs": 5, "echo": True, "seed": -1},
        {"prompt": [1, 403, 407, 261], "max_tokens": 0, "echo": True, "logprobs": 0,
         "return_tokens_as_token_ids": True},
        {"prompt": "x", "stop": ["\n", "The", "  ", "\u00e9"], "top_p": 0.5, "temperature": 2,
         "ignore_eos": True, "user": "u", "frequency_penalty": 0, "presence_penalty": 0},
        {"prompt": "x", "n": 1, "best_of": 1, "stream": False, "suffix": None, "logit_bias": {},
         "stream_options": None, "model": "stories260K", "stop": None},
    ]


def batch_corpora():
    lines = example_lines()
    for o in lines:
        put("batch_line", o["custom_id"] + ".json", dumps(o))
    put("batch_line", "chat.json", dumps(chat_line()))
    for i, body in enumerate(more_bodies()):
        put("batch_line", "fields-%d.json" % i,
            dumps({"custom_id": "f%d" % i, "method": "POST", "url": "/v1/completions", "body": body}))

    text = [dumps(o) for o in lines[:3]] + [dumps(chat_line())]
    put("batch_file", "example.jsonl", "\n".join(text) + "\n")
    # what the reader tolerates and what it sets aside: BOM, CRLF, blank lines, a repeated id, a
    # bad line, a line using a synthetic id, no newline at the end
    mixed = ["\ufeff" + text[0], "", "   ", text[1], text[1], "{\"custom_id\": \"line-6\"", text[2],
             dumps({"custom_id": "line-5", "method": "POST", "url": "/v1/completions",
                    "body": {"prompt": "x", "max_tokens": -1}})]
    put("batch_file", "mixed-crlf.jsonl", "\r\n".join(mixed))

    # HTTP bodies: those tests/serve/http_errors.sh sends, then the clients' usual requests
    shell = read("tests", "serve", "http_errors.sh").decode()
    bodies = re.findall(r"(?:expect_status .*? /v1/\S+ |-d )'(\{.*?\})'", shell)
    for i, b in enumerate(sorted(set(bodies))):
        put("request_body", "http_errors-%d.json" % i, b)
    put("request_body", "chat.json", dumps(chat_line()["body"]))
    put("request_body", "chat-stream.json", dumps({
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Tell me"},
                                                  {"type": "text", "text": " a story."}]},
                     {"role": "assistant", "content": "  Once upon a time. "},
                     {"role": "user", "content": "More <|im_end|> [INST]"}],
        "stream": True, "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2,
        "max_completion_tokens": 4}))
    for i, body in enumerate(more_bodies()):
        put("request_body", "fields-%d.json" % i, dumps(body))


# ---- model files ----------------------------------------------------------------------------

def st_parts(path):
    blob = read(*path)
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def st_file(header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def st_small(path, keep):
    """The tensors of a real file that `keep` selects, laid out again back to back: a valid file."""
    header, data = st_parts(path)
    out, blob = {}, b""
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    for name, t in header.items():
        if name == "__metadata__" or not keep(name, t):
            continue
        b, e = t["data_offsets"]
        out[name] = dict(t, data_offsets=[len(blob), len(blob) + e - b])
        blob += data[b:e]
    return st_file(out, blob)


def model_corpora():
    for name, path in [("stories260K-truncated", ("models", "stories260K", "model.safetensors")),
                       ("golden-llama-tiny-truncated", ("tests", "data", "golden", "llama-tiny", "golden.safetensors"))]:
        blob = read(*path)
        (n,) = struct.unpack("<Q", blob[:8])
        put("safetensors", name, blob[:8 + n + 64])  # the real header, 64 bytes of data: a cut file
    small = lambda name, t: t["data_offsets"][1] - t["data_offsets"][0] <= 256
    put("safetensors", "stories260K-norms", st_small(("models", "stories260K", "model.safetensors"), small))
    put("safetensors", "beacon-tiny-norms", st_small(("tests", "data", "golden", "beacon-tiny", "model.safetensors"),
                                                     small))
    ids = lambda name, t: name in ("short_input_ids", "generated_ids")
    put("safetensors", "golden-llama-tiny-ids",
        st_small(("tests", "data", "golden", "llama-tiny", "golden.safetensors"), ids))

    put("tokenizer", "stories260K.model", read("models", "stories260K", "tokenizer.model"))
    # regression: a normalization rule of the model emitting a byte that is not UTF-8 made a
    # symbol of length 0, and encoding never advanced (allocating until out of memory)
    put("tokenizer", "regress-normalized-non-utf8", __import__("base64").b64decode(
        "Cg4KBTx1bms+FQAAAAAYAgoMCgPwn6YVAD5zABgECgkKAnYAFQAAAMMSSwoNZGF0YS90aW5vLnR4dBILZGF0YS90b2s2MDgYAiCABDAA"
        "OgRcZXh0VQAAgD+AAQTIAQHQ+v5n/QHiAg4gXDM0MlwyMDFcMml0eQ=="))

    put("config", "stories260K.json", read("models", "stories260K", "config.json"))
    put("config", "tinystories-d64-l5.json", read("tests", "data", "tinystories-d64-l5-hf", "config.json"))
    for d in sorted(os.listdir(src("tests", "data", "golden"))):
        p = ("tests", "data", "golden", d, "config.json")
        if os.path.exists(src(*p)):
            put("config", "golden-%s.json" % d, read(*p))
    for f in sorted(os.listdir(src("configs", "models"))):
        put("config", "released-" + f, read("configs", "models", f))
    # regression: bos_token_id 2^32 + 1 was narrowed to id 1 before its range check
    c = json.loads(read("tests", "data", "golden", "llama-tiny", "config.json"))
    c["bos_token_id"] = 4294967297
    put("config", "regress-bos-token-id-truncated", dumps(c))

    # tokenizer_config.json: the repository's two, and the official templates the unit tests
    # quote (C string literals in tests/unit/test_chat_template.c)
    put("chat_detect", "stories260K.json", read("models", "stories260K", "tokenizer_config.json"))
    put("chat_detect", "tinystories-d64-l5.json",
        read("tests", "data", "tinystories-d64-l5-hf", "tokenizer_config.json"))
    c = read("tests", "unit", "test_chat_template.c").decode()
    for name, body in re.findall(r"static const char (\w+)_TMPL\[\] =\s*((?:\"(?:[^\"\\]|\\.)*\"\s*)+);", c):
        lit = "".join(re.findall(r"\"((?:[^\"\\]|\\.)*)\"", body))
        text = lit.encode().decode("unicode_escape")
        put("chat_detect", "template-%s.json" % name.lower(), dumps({"chat_template": text}))
        if name == "CHATML":
            put("chat_detect", "template-list.json",
                dumps({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": text}]}))


# ---- the wire (proto/brt.proto), encoded by hand --------------------------------------------

def varint(v):
    v &= (1 << 64) - 1  # negative int32: ten bytes, as protobuf writes them
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def f_varint(field, v):
    return varint(field << 3) + varint(v)


def f_len(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def f_f32(field, v):
    return varint(field << 3 | 5) + struct.pack("<f", v)


def f_f64(field, v):
    return varint(field << 3 | 1) + struct.pack("<d", v)


def packed(field, vals):
    return f_len(field, b"".join(varint(v) for v in vals))


def packed_f32(field, vals):
    return f_len(field, b"".join(struct.pack("<f", v) for v in vals))


def stage_stat(rank, stage):
    return (f_varint(1, rank) + f_varint(3, stage) + f_f64(4, 0.25) + f_f64(5, 1.5) + f_varint(6, 4096)
            + f_varint(7, 1 << 20))


def wire_corpora():
    version = f_varint(1, 2)
    # a prefill step of 3 raw rows that samples, and a beacon step of 1 raw + 1 beacon row
    s1 = (f_varint(1, 11) + f_varint(3, 3) + f_varint(4, 3) + f_varint(14, 1) + f_varint(15, 2)
          + f_f32(16, 0.8) + f_f32(17, 0.9) + f_varint(18, 42) + packed(19, [1, 403, 407]) + packed(20, [0, 1, 2])
          + f_len(21, bytes([0, 0, 0])) + packed(22, [-1, -1, -1]) + f_varint(24, 5))
    s2 = (f_varint(1, 12) + f_varint(2, 4) + f_varint(3, 2) + f_varint(4, 1) + f_varint(5, 4) + f_varint(6, 1)
          + f_varint(7, 0) + f_varint(8, 4) + f_varint(10, 1) + f_varint(12, 8) + f_varint(13, 3)
          + packed(19, [261, -1]) + packed(20, [7, 7]) + f_len(21, bytes([0, 1])) + packed(22, [262, -1]))
    failed = (f_varint(1, 13) + f_varint(3, 1) + f_varint(4, 1) + f_varint(10, 16) + packed(19, [5])
              + packed(20, [0]) + f_len(21, b"\0") + packed(22, [-1]) + f_len(23, b"rank 1: out of KV memory"))
    mb = (version + f_varint(2, 7) + f_varint(4, 6) + f_len(5, s1) + f_len(5, s2) + f_len(5, failed)
          + packed(6, [9, 10]) + f_varint(7, 64) + f_len(9, stage_stat(0, 0)) + f_len(9, stage_stat(1, 1)))
    put("wire", "mb-three-steps", b"\x00" + mb)
    put("wire", "mb-empty", b"\x00" + version + f_varint(2, 1))
    put("wire", "mb-device-payload", b"\x00" + version + f_varint(4, 3) + f_len(5, s1) + f_varint(8, 1))

    sampled = (f_varint(1, 11) + f_varint(5, 42) + f_f32(6, -0.5) + packed(7, [42, 7])
               + packed_f32(8, [-0.5, -1.25]) + f_varint(13, 2))
    scored = (f_varint(1, 12) + f_varint(2, 3) + f_varint(9, 2) + packed_f32(10, [-1.0, float("nan")])
              + packed(11, [1, 2, 3, 4]) + packed_f32(12, [-0.1, -0.2, -0.3, -0.4]) + f_varint(13, 2))
    full = f_varint(1, 13) + f_varint(14, 1) + f_varint(15, 4)
    failed = f_varint(1, 14) + f_varint(3, 1) + f_len(4, b"rank 2: NaN in the logits")
    res = (version + f_varint(2, 7) + f_varint(3, 1) + f_len(4, sampled) + f_len(4, scored) + f_len(4, full)
           + f_len(4, failed) + f_len(5, stage_stat(1, 1)))
    logits = struct.pack("<4f", 0.5, -1.0, 2.0, 0.0)
    put("wire", "results-four", bytes([1 | (4 << 1)]) + res + logits)  # byte 0: results, 4 floats of payload
    put("wire", "results-empty", b"\x01" + version + f_varint(2, 1))
    # issue 10: results of another wire version were read after being freed
    put("wire", "regress-results-version-0", b"\x01\x08\x00")
    # a step of no rows: its arrays were copied from NULL (memcpy's arguments must not be NULL)
    put("wire", "regress-mb-step-without-rows", b"\x00" + version + f_len(5, b""))
    # full-logits rows of a zero vocabulary: the empty payload was indexed from NULL on both sides
    put("wire", "regress-results-rows-of-no-vocab", b"\x01" + version + f_len(4, f_varint(14, 1)))


# ---- the journal (an existing output file) and text to encode ---------------------------------

def result_line(cid, text):
    """A success line in the layout tests/unit/test_batchio.c expects of brt_batch_format_success."""
    body = {"id": "cmpl-" + cid, "object": "text_completion", "created": 1700000000, "model": "stories260K",
            "choices": [{"index": 0, "text": text, "finish_reason": "length", "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21,
                      "prompt_tokens_details": {"cached_tokens": 0}}}
    return json.dumps({"id": "batch_req_" + cid, "custom_id": cid,
                       "response": {"status_code": 200, "request_id": "req_" + cid, "body": body},
                       "error": None}, separators=(",", ":")) + "\n"


def error_line(cid, msg):
    return json.dumps({"id": "batch_req_" + cid, "custom_id": cid, "response": None,
                       "error": {"code": "invalid_request", "message": msg}}, separators=(",", ":")) + "\n"


def journal_and_text_corpora():
    prompts = [o["body"]["prompt"] for o in example_lines(120)]
    good = result_line("doc-0-continue", prompts[0][:60]) + error_line("line-3", "line 3: body.max_tokens = -1 is "
                                                                      "out of range")
    put("journal", "two-lines.jsonl", good)
    put("journal", "torn-tail.jsonl", good + result_line("doc-1", "x")[:57])
    put("journal", "blank-lines.jsonl", "\n" + good + "   \n")
    put("journal", "nul-text.jsonl", result_line("doc-2", "a\u0000b"))
    put("journal", "input-as-output.jsonl", dumps(chat_line()) + "\n")

    # tests/data/README.md's reference encodings, and the example documents
    readme = read("tests", "data", "README.md").decode()
    for i, t in enumerate(re.findall(r"^  \* \"(.+?)\" →", readme, re.M)):
        put("encode", "reference-%d.txt" % i, t)
    for i, p in enumerate(prompts[:3]):
        put("encode", "long-docs-%d.txt" % i, p)
    put("encode", "specials.txt", "<s>[INST] <<SYS>>\nhi\n<</SYS>>\n\n<|im_start|>user\u2581x</s>\t\r\n")


# ---- tokenizer.json, the state cache's files ----------------------------------------------------

def byte_level_alphabet():
    """GPT-2's bytes-to-unicode map: the 256 characters byte-level vocabularies start from."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def hf_tokenizer_corpora():
    """Small tokenizer.json files of the kinds runtime/model/hf_tokenizer.c reads."""
    alpha = byte_level_alphabet()
    vocab = {c: i for i, c in enumerate(alpha)}
    merges = ["\u0120 t", "\u0120 a", "h e", "i n", "\u0120t he", "o n", "e r", "\u0120 s"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    specials = [{"id": len(vocab) + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True} for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])]
    qwen_split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    byte_level = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": specials, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": qwen_split}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges}}
    put("hf_tokenizer", "byte-level-qwen2-split.json", dumps(byte_level))
    gpt2 = json.loads(dumps(byte_level))
    gpt2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    gpt2["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}
    gpt2["model"]["merges"] = [m.split(" ") for m in merges]  # the newer list-of-pairs form
    put("hf_tokenizer", "byte-level-gpt2-nfc.json", dumps(gpt2))

    spm_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        spm_vocab["<0x%02X>" % b] = len(spm_vocab)
    for piece in ["\u2581"] + list("abcdefghijklmnopqrstuvwxyz") + ["\u2581t", "he", "\u2581the", "in", "\u2581a", "on", "er"]:
        spm_vocab[piece] = len(spm_vocab)
    spm = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(["<unk>", "<s>", "</s>"])],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "},
                                                            "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                     {"type": "ByteFallback"}, {"type": "Fuse"},
                                                     {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": spm_vocab, "merges": ["\u2581 t", "h e", "\u2581t he", "i n", "\u2581 a", "o n", "e r"]}}
    put("hf_tokenizer", "spm-bpe-byte-fallback.json", dumps(spm))


def state_cache_corpora():
    """Byte 0 even: a state file for fuzz_state_cache.c's key (0x4b...), settings (0x5e...) and
    layers [0, 2); odd: a manifest.jsonl listing it."""
    import hashlib
    image = bytes(range(64)) * 4
    header = (b"BRTSTATE" + struct.pack("<II", 1, 80) + b"\x5e" * 16 + b"\x4b" * 16 + struct.pack("<iiQ", 0, 2, len(image))
              + hashlib.blake2b(image, digest_size=16).digest())
    assert len(header) == 80
    put("state_cache", "state-file.bin", b"\x00" + header + image)
    put("state_cache", "state-file-empty.bin", b"\x00" + header[:56] + struct.pack("<Q", 0) + hashlib.blake2b(b"", digest_size=16).digest())
    line = {"key": "4b" * 16, "settings": "5e" * 16, "layers": "0,1,2", "next_index": 3, "fed": 2048,
            "bytes": [len(image), len(image)]}
    other = dict(line, key="4c" * 16, next_index=5, fed=4096, bytes=[1 << 31, 7])
    put("state_cache", "manifest.bin", b"\x01" + (dumps(line) + "\n" + dumps(other) + "\n{\"key\": 1}\n").encode())


if __name__ == "__main__":
    batch_corpora()
    model_corpora()
    wire_corpora()
    journal_and_text_corpora()
    hf_tokenizer_corpora()
    state_cache_corpora()
    for h in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, h))
        print("%-14s %3d seeds, %6d bytes" % (h, len(files), sum(os.path.getsize(os.path.join(OUT, h, f))
                                                                 for f in files)))
