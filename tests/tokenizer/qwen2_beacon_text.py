"""Builds a Qwen2-configured Activation Beacon v2 model folder that carries a byte-level BPE
tokenizer.json, for tests/tokenizer/qwen2_beacon_text.sh, and checks beaconrt's text against the
`tokenizers` library.

    qwen2_beacon_text.py make GOLDEN_BEACON2_DIR OUT_DIR
        The tokenizer is trained here by the real `tokenizers` library (BPE, Qwen2's pre-tokenizer:
        its Split regex then ByteLevel without the regex, ByteLevel decoder, the special tokens
        <|endoftext|>, <|im_start|>, <|im_end|>) on English text, as far as that text goes; the
        model's vocabulary is cut to the tokenizer's.
        The weights are the golden beacon2-tiny model's, plus the q/k/v biases (and beacon q/k/v
        biases) a Qwen2 checkpoint has; config.json says qwen2 with Qwen2's BOS/EOS conventions
        and tokenizer_config.json carries Qwen2's ChatML template.
    qwen2_beacon_text.py encode DIR TEXT           -> the library's ids (JSON)
    qwen2_beacon_text.py decode DIR IDS_JSON       -> the library's text (skip special tokens)
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CORPUS = """Once upon a time there was a little girl named Lily. She loved to play in the park with her
dog Max. One day, Lily saw a big red ball under a tree. "Can I play with it?" she asked her mom.
Her mom smiled and said, "Yes, but share it with your friends." Lily was happy. They played all day
until the sun went down, 3 friends and 1 dog, and then they went home to eat soup and bread.
The end. Tom had 12 apples and 7 pears; he gave 5 to Sue. Numbers like 2024 and 3.14 are fun!"""


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], np.float32).reshape(v["shape"])
    return out


def write_st(path, t):
    head, blobs, off = {}, [], 0
    for k in sorted(t):
        b = np.ascontiguousarray(t[k], np.float32).tobytes()
        head[k] = {"dtype": "F32", "shape": list(t[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make(golden, out):
    cfg = json.load(open(os.path.join(golden, "config.json")))
    vocab = cfg["vocab_size"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS] * 4, trainer)
    # the model's vocabulary is the tokenizer's: embedding and lm_head rows cut to it
    vocab = tok.get_vocab_size()
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    json.dump({"add_bos_token": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "chat_template": CHATML, "model_max_length": 32768},
              open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)
    cfg.update({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": vocab,
                "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"]})
    cfg.pop("attention_bias", None)
    cfg.pop("pretraining_tp", None)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    t = read_st(os.path.join(golden, "model.safetensors"))
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        t[k] = t[k][:vocab]
    rng = np.random.default_rng(5)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d.self_attn." % l
        for proj in ("q_proj", "k_proj", "v_proj", "beacon_q_proj", "beacon_k_proj", "beacon_v_proj"):
            rows = t[p + proj + ".weight"].shape[0]
            t[p + proj + ".bias"] = rng.normal(0, 0.02, rows).astype(np.float32)
    write_st(os.path.join(out, "model.safetensors"), t)
    print(json.dumps({"vocab": tok.get_vocab_size(), "specials": ids}))


def main():
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2], sys.argv[3])
        return
    tok = Tokenizer.from_file(os.path.join(sys.argv[2], "tokenizer.json"))
    if cmd == "encode":
        print(json.dumps(tok.encode(sys.argv[3], add_special_tokens=False).ids))
    elif cmd == "decode":
        sys.stdout.write(tok.decode(json.loads(sys.argv[3]), skip_special_tokens=True))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
