#!/usr/bin/python3
"""Write a random Llama model folder (HF layout, float32) for tests that need a model heavier
than the tiny golden ones: config.json, model.safetensors and the 512-piece TinyStories
tokenizer (so text prompts work). Deterministic for a given --seed.

usage: make_model.py OUT_DIR [--hidden 256] [--layers 4] [--heads 8] [--kv-heads 4] [--inter 688]
                     [--max-pos 4096] [--seed 0] [--set KEY=JSON ...]
"""
import argparse, json, os, shutil, struct, sys
import numpy as np

def write_safetensors(path, tensors):
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--inter", type=int, default=688)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--max-pos", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    d, hd = a.hidden, a.hidden // a.heads
    kvd = a.kv_heads * hd
    w = lambda *s: rng.normal(0, 0.02, size=s).astype(np.float32)
    t = {"model.embed_tokens.weight": w(a.vocab, d), "model.norm.weight": np.ones(d, np.float32),
         "lm_head.weight": w(a.vocab, d)}
    for l in range(a.layers):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + w(d)
        t[p + "post_attention_layernorm.weight"] = 1 + w(d)
        t[p + "self_attn.q_proj.weight"] = w(d, d)
        t[p + "self_attn.k_proj.weight"] = w(kvd, d)
        t[p + "self_attn.v_proj.weight"] = w(kvd, d)
        t[p + "self_attn.o_proj.weight"] = w(d, d)
        t[p + "mlp.gate_proj.weight"] = w(a.inter, d)
        t[p + "mlp.up_proj.weight"] = w(a.inter, d)
        t[p + "mlp.down_proj.weight"] = w(d, a.inter)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
           "intermediate_size": a.inter, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "vocab_size": a.vocab, "max_position_embeddings": a.max_pos,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2,
           "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "float32"}
    for kv in a.set:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v)
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"), t)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copyfile(os.path.join(here, "..", "..", "models", "stories260K", "tokenizer.model"),
                    os.path.join(a.out, "tokenizer.model"))

if __name__ == "__main__":
    main()
