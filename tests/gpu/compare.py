#!/usr/bin/env python3
"""Comparisons for tests/gpu/check.sh (numpy; the GPU machine's python3 has it).

    compare.py logits OUT.st:NAME GOLD.st:NAME      max |diff|, and how many rows keep the golden argmax
    compare.py batches A.jsonl B.jsonl             two batch outputs of the same input: the largest
                                                   logprob difference and how many texts differ
Prints one line; exit 0 (these report, check.sh decides).
"""
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "I64": np.int64, "F64": np.float64}


def tensor(spec):
    path, name = spec.rsplit(":", 1)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        b, e = h[name]["data_offsets"]
        f.seek(8 + n + b)
        raw = f.read(e - b)
    return np.frombuffer(raw, dtype=DT[h[name]["dtype"]]).reshape(h[name]["shape"])


def logits(a, b):
    x, y = tensor(a).astype(np.float64), tensor(b).astype(np.float64)
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    if x.shape != y.shape:
        print(f"shape {x.shape} vs {y.shape}")
        return
    d = np.abs(x - y).max()
    agree = int((x.argmax(1) == y.argmax(1)).sum())
    print(f"max |logit diff| {d:.3e}, argmax agrees on {agree}/{x.shape[0]} rows")


def batches(a, b):
    ra = {json.loads(l)["custom_id"]: json.loads(l) for l in open(a)}
    rb = {json.loads(l)["custom_id"]: json.loads(l) for l in open(b)}
    worst, texts, n = 0.0, 0, 0
    for cid, x in ra.items():
        y = rb.get(cid)
        if not y or not x.get("response") or not y.get("response"):
            texts += 1
            continue
        cx, cy = x["response"]["body"]["choices"][0], y["response"]["body"]["choices"][0]
        n += 1
        texts += cx.get("text") != cy.get("text")
        lx = (cx.get("logprobs") or {}).get("token_logprobs") or []
        ly = (cy.get("logprobs") or {}).get("token_logprobs") or []
        for p, q in zip(lx, ly):
            if p is not None and q is not None:
                worst = max(worst, abs(p - q))
    print(f"{n} requests: largest logprob difference {worst:.3e}, texts differing {texts}")


if __name__ == "__main__":
    {"logits": logits, "batches": batches}[sys.argv[1]](*sys.argv[2:])
