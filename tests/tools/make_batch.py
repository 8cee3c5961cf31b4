#!/usr/bin/python3
"""Write a batch input (OpenAI Batch JSONL) for the distributed tests.

usage: make_batch.py OUT.jsonl golden GOLDEN_DIR     requests over a golden set's inputs (token ids):
                                                      generation, sampling, scoring, prefixes
       make_batch.py OUT.jsonl text N LEN             N text requests of about LEN words each
"""
import json, struct, sys

def read_ids(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        b, e = h[name]["data_offsets"]
        f.seek(8 + n + b)
        raw = f.read(e - b)
    return list(struct.unpack("<%dq" % (len(raw) // 8), raw))

def req(cid, body):
    return {"custom_id": cid, "method": "POST", "url": "/v1/completions", "body": body}

def main():
    out, kind = sys.argv[1], sys.argv[2]
    reqs = []
    if kind == "golden":
        g = sys.argv[3] + "/golden.safetensors"
        long, short = read_ids(g, "input_ids"), read_ids(g, "short_input_ids")
        reqs += [req("gen-long", {"prompt": long, "max_tokens": 16, "temperature": 0}),
                 req("gen-short", {"prompt": short, "max_tokens": 16, "temperature": 0, "logprobs": 2}),
                 req("score-long", {"prompt": long, "max_tokens": 0, "echo": True, "logprobs": 1}),
                 req("score-short", {"prompt": short, "max_tokens": 2, "echo": True, "logprobs": 0}),
                 req("sample-long", {"prompt": long[:431], "max_tokens": 12, "temperature": 0.9, "top_p": 0.9,
                                     "seed": 5}),
                 req("prefix-200", {"prompt": long[:200], "max_tokens": 5, "temperature": 0})]
    else:
        n, length = int(sys.argv[3]), int(sys.argv[4])
        words = ("once upon a time there was a little girl named Lily who loved to play in the park with her "
                 "dog Max and one day they found a big red ball under a tree").split()
        for i in range(n):
            text = " ".join(words[(i * 7 + k) % len(words)] for k in range(length))
            reqs.append(req(f"job-{i:03d}", {"prompt": text, "max_tokens": 8 + i % 5,
                                            "temperature": 0 if i % 2 else 0.7, "seed": i}))
    with open(out, "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")

if __name__ == "__main__":
    main()
