#!/usr/bin/env python3
"""Independent numpy reference for Hugging Face Llama-family semantics, on random tiny models.

    ref_llama.py make DIR [--seed S] [--hidden H] [--heads N] [--kv-heads K] [--layers L]
                          [--inter I] [--vocab V] [--head-dim D] [--tie] [--theta T] [--eps E]
                          [--attention-bias] [--model-type llama|qwen2] [--tokens T] [--embed-std X]
                          [--rope-scaling JSON]
        writes DIR/config.json, DIR/model.safetensors (float32, HF tensor names), DIR/ids.safetensors
        (I64 [1, T] 'input_ids', BOS first) and DIR/ref.safetensors (F32 [1, T, V] 'logits', computed in
        float64 by forward() below)
    ref_llama.py forward MODEL_DIR IDS.safetensors:NAME OUT.safetensors
        the reference's float64 logits (stored F32 [1, L, V] 'logits') for an existing float32 model
        folder: used to check this reference itself against the official golden outputs
    ref_llama.py control DIR KEY=JSON ...
        recompute the reference with config fields changed (or with one of the pseudo-fields below)
        and print the max |logits - ref| it causes: a negative control showing that a runtime which
        ignored or defaulted that field would fail the 1e-4 comparison
          _no_bias: [..]   ignore these biases (e.g. ["o"] or ["q","k","v"])
          _kv_map: "mod"   query head h reads kv head h % K instead of HF's h // (N/K)
          _rope: "adjacent"  llama2.c/Meta-style RoPE rotating pairs (2i, 2i+1) instead of rotate_half

forward() is written from the Hugging Face LlamaForCausalLM / Qwen2ForCausalLM definitions:
  RMSNorm:  w * x / sqrt(mean(x^2) + eps)
  RoPE:     inv_freq_i = 1 / theta^(2i/d), i < d/2 (rope_scaling: linear divides by the factor;
            llama3 rescales as transformers' _compute_llama3_parameters); angle = pos * inv_freq;
            cos/sin over cat(angle, angle); x*cos + rotate_half(x)*sin, rotate_half = cat(-x2, x1)
  attention: q/k/v projections (+ biases: llama attention_bias -> q,k,v,o; qwen2 -> q,k,v), GQA by
            repeating kv heads (query head h uses kv head h // (N/K)), scores q.k / sqrt(d),
            causal mask, softmax, o_proj
  MLP:      down(silu(gate(x)) * up(x)); residual adds around both blocks; final norm; lm_head (or the
            embedding matrix when tie_word_embeddings)
  head_dim: config head_dim if given, else hidden / heads
"""
import argparse
import json
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_util  # noqa: E402


def rms_norm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def inv_freqs(d, theta, scaling):
    """transformers' RoPE frequencies, with rope_scaling linear (positions / factor) or llama3
    (_compute_llama3_parameters: long wavelengths / factor, a blended band between)."""
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = scaling["factor"]
    if kind == "linear":
        return inv / factor
    if kind == "llama3":
        lo, hi, old = scaling["low_freq_factor"], scaling["high_freq_factor"], scaling["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv
        out = np.where(wavelen > old / lo, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        mid = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        return np.where(mid, (1 - smooth) * out / factor + smooth * out, out)
    raise ValueError("rope_scaling %r" % scaling)


def rope(x, theta, adjacent=False, scaling=None):
    """x: [L, heads, d]; positions 0..L-1."""
    L, _, d = x.shape
    inv_freq = inv_freqs(d, theta, scaling)
    ang = np.arange(L, dtype=np.float64)[:, None] * inv_freq[None, :]
    if adjacent:  # negative control only: pairs (2i, 2i+1) rotated by angle i
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = np.empty_like(x)
        out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
        out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
        return out
    emb = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    half = d // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def forward(cfg, W, ids):
    """float64 logits [L, V] for token ids."""
    W = {k: v.astype(np.float64) for k, v in W.items()}
    H, N = cfg["hidden_size"], cfg["num_attention_heads"]
    K = cfg.get("num_key_value_heads") or N
    d = cfg.get("head_dim") or H // N
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    qwen2 = cfg["model_type"] == "qwen2"
    no_bias = set(cfg.get("_no_bias", []))
    has_bias = {p: (qwen2 and p in "qkv") or (not qwen2 and cfg.get("attention_bias", False)) for p in "qkvo"}
    for p in no_bias:
        has_bias[p] = False
    rep = N // K
    kv_of = [(h % K) if cfg.get("_kv_map") == "mod" else h // rep for h in range(N)]
    L = len(ids)
    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((L, L), -np.inf), k=1)
    for layer in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % layer

        def proj(name, h):
            y = h @ W[p + "self_attn.%s_proj.weight" % name].T
            if has_bias[name]:
                y = y + W[p + "self_attn.%s_proj.bias" % name]
            return y

        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        adj = cfg.get("_rope") == "adjacent"
        q = rope(proj("q", h).reshape(L, N, d), theta, adj, cfg.get("rope_scaling"))
        k = rope(proj("k", h).reshape(L, K, d), theta, adj, cfg.get("rope_scaling"))
        v = proj("v", h).reshape(L, K, d)
        out = np.empty((L, N, d))
        for hd in range(N):
            s = q[:, hd, :] @ k[:, kv_of[hd], :].T / np.sqrt(d) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            out[:, hd, :] = s @ v[:, kv_of[hd], :]
        x = x + proj("o", out.reshape(L, N * d))
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1.0 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


def make(a):
    rng = np.random.default_rng(a.seed)
    H, N = a.hidden, a.heads
    K = a.kv_heads or N
    d = a.head_dim or H // N
    I, V = a.inter, a.vocab
    cfg = {
        "architectures": ["Qwen2ForCausalLM" if a.model_type == "qwen2" else "LlamaForCausalLM"],
        "model_type": a.model_type,
        "vocab_size": V,
        "hidden_size": H,
        "intermediate_size": I,
        "num_hidden_layers": a.layers,
        "num_attention_heads": N,
        "num_key_value_heads": K,
        "max_position_embeddings": 1024,
        "rms_norm_eps": a.eps,
        "rope_theta": a.theta,
        "rope_scaling": json.loads(a.rope_scaling) if a.rope_scaling else None,
        "tie_word_embeddings": bool(a.tie),
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    if a.model_type == "qwen2":
        cfg.update({"use_sliding_window": False, "sliding_window": 4096, "max_window_layers": a.layers})
    else:
        cfg.update({"attention_bias": bool(a.attention_bias), "mlp_bias": False, "pretraining_tp": 1})
    if a.head_dim:
        cfg["head_dim"] = a.head_dim

    def mat(rows, cols):  # outputs of order 1 for inputs of order 1
        return rng.standard_normal((rows, cols)) / np.sqrt(cols)

    W = {"model.embed_tokens.weight": rng.standard_normal((V, H)) * a.embed_std,
         "model.norm.weight": 1.0 + 0.1 * rng.standard_normal(H)}
    if not a.tie:
        W["lm_head.weight"] = mat(V, H) * 2.0
    bias = {p: (a.model_type == "qwen2" and p in "qkv") or (a.model_type != "qwen2" and a.attention_bias)
            for p in "qkvo"}
    for layer in range(a.layers):
        p = "model.layers.%d." % layer
        W[p + "input_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(H)
        W[p + "post_attention_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(H)
        # q and k a bit larger than 1/sqrt(fan_in) so attention is far from uniform (RoPE matters)
        W[p + "self_attn.q_proj.weight"] = mat(N * d, H) * 2.0
        W[p + "self_attn.k_proj.weight"] = mat(K * d, H) * 2.0
        W[p + "self_attn.v_proj.weight"] = mat(K * d, H)
        W[p + "self_attn.o_proj.weight"] = mat(H, N * d)
        for name, rows in (("q", N * d), ("k", K * d), ("v", K * d), ("o", H)):
            if bias[name]:
                W[p + "self_attn.%s_proj.bias" % name] = 0.5 * rng.standard_normal(rows)
        W[p + "mlp.gate_proj.weight"] = mat(I, H)
        W[p + "mlp.up_proj.weight"] = mat(I, H)
        W[p + "mlp.down_proj.weight"] = mat(H, I)
    W = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in W.items()}

    ids = [1] + [int(t) for t in rng.integers(3, V, a.tokens - 1)]
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    st_util.write_tensors(os.path.join(a.dir, "model.safetensors"),
                          [(k, "F32", list(v.shape), v.tobytes()) for k, v in W.items()])
    st_util.write_ids(os.path.join(a.dir, "ids.safetensors"), ids)
    logits = forward(cfg, W, np.array(ids)).astype(np.float32)
    st_util.write_tensors(os.path.join(a.dir, "ref.safetensors"),
                          [("logits", "F32", [1, len(ids), V], logits.tobytes())])
    print("%s: %s, %d tokens, logits std %.3g, max |logit| %.3g"
          % (a.dir, json.dumps({k: cfg[k] for k in ("model_type", "hidden_size", "num_attention_heads",
                                                   "num_key_value_heads", "rope_theta", "rms_norm_eps",
                                                   "tie_word_embeddings")}),
             len(ids), float(logits.std()), float(np.abs(logits).max())))


def load_dir(d, ids_spec=None):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("rms_norm_eps", 1e-6)
    cfg.setdefault("rope_theta", 10000.0)
    W = {}
    header, data, _ = st_util.read_raw(os.path.join(d, "model.safetensors"))
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        W[name] = np.frombuffer(data[b:end], dtype=np.float32).reshape(e["shape"])
    path, name = st_util.split_spec(ids_spec) if ids_spec else (os.path.join(d, "ids.safetensors"), "input_ids")
    ids = np.array(st_util.tensor(path, name)[2])
    return cfg, W, ids


def main(argv):
    if len(argv) >= 3 and argv[1] == "make":
        ap = argparse.ArgumentParser(prog="ref_llama.py make")
        ap.add_argument("dir")
        ap.add_argument("--seed", type=int, default=1)
        ap.add_argument("--hidden", type=int, default=64)
        ap.add_argument("--heads", type=int, default=4)
        ap.add_argument("--kv-heads", type=int, default=0)
        ap.add_argument("--layers", type=int, default=2)
        ap.add_argument("--inter", type=int, default=96)
        ap.add_argument("--vocab", type=int, default=256)
        ap.add_argument("--head-dim", type=int, default=0)
        ap.add_argument("--tie", action="store_true")
        ap.add_argument("--theta", type=float, default=10000.0)
        ap.add_argument("--rope-scaling", help="config.json rope_scaling, as JSON")
        ap.add_argument("--eps", type=float, default=1e-5)
        ap.add_argument("--attention-bias", action="store_true")
        ap.add_argument("--model-type", default="llama", choices=["llama", "qwen2"])
        ap.add_argument("--tokens", type=int, default=100)
        ap.add_argument("--embed-std", type=float, default=1.0)
        make(ap.parse_args(argv[2:]))
        return 0
    if len(argv) == 5 and argv[1] == "forward":
        cfg, W, ids = load_dir(argv[2], argv[3])
        logits = forward(cfg, W, ids).astype(np.float32)
        st_util.write_tensors(argv[4], [("logits", "F32", [1, len(ids), logits.shape[1]], logits.tobytes())])
        return 0
    if len(argv) >= 4 and argv[1] == "control":
        cfg, W, ids = load_dir(argv[2])
        for kv in argv[3:]:
            k, _, v = kv.partition("=")
            cfg[k] = json.loads(v)
        ref = np.array(st_util.tensor(os.path.join(argv[2], "ref.safetensors"), "logits")[2], dtype=np.float64)
        diff = np.abs(forward(cfg, W, ids).reshape(-1) - ref).max()
        print("%g" % diff)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
