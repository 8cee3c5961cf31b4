#!/bin/sh
# Makes examples/long-docs.jsonl: four long TinyStories-style documents (each a dozen stories the
# embedded model wrote, sampled with fixed seeds, so the file is reproducible) and batch
# requests over them: continuation, scoring (echo + logprobs) and a stop sequence.
set -eu
cd "$(dirname "$0")/.."
B=build/beaconrt
openers="Once upon a time|One day|Tom and Sue|There was a big|Lily wanted|The little dog|Mom said|A bird"
/usr/bin/python3 - "$B" "$openers" <<'PY'
import json, subprocess, sys
b, openers = sys.argv[1], sys.argv[2].split("|")
def story(prompt, seed):
    out = subprocess.run([b, "generate", "--model", "models/stories260K", "--prompt", prompt, "-n", "400",
                          "--temperature", "0.9", "--top-p", "0.95", "--seed", str(seed), "--json", "--quiet"],
                         check=True, capture_output=True, text=True).stdout
    text = json.loads(out)["text"]
    return prompt + text.split("\n\n")[0].rstrip()
docs = []
for d in range(4):
    parts = [story(openers[(d * 3 + i) % len(openers)], 1000 * d + i) for i in range(12)]
    docs.append("\n".join(parts))
reqs = []
for d, doc in enumerate(docs):
    reqs.append({"custom_id": f"doc-{d}-continue", "method": "POST", "url": "/v1/completions",
                 "body": {"prompt": doc + "\nOnce upon a time", "max_tokens": 48, "temperature": 0}})
reqs.append({"custom_id": "doc-0-score", "method": "POST", "url": "/v1/completions",
             "body": {"prompt": docs[0], "max_tokens": 0, "echo": True, "logprobs": 0}})
reqs.append({"custom_id": "doc-1-sample", "method": "POST", "url": "/v1/completions",
             "body": {"prompt": docs[1] + "\nThe end. Then", "max_tokens": 64, "temperature": 0.8, "top_p": 0.9,
                      "seed": 42, "stop": ["\n"]}})
with open("examples/long-docs.jsonl", "w") as f:
    for r in reqs:
        f.write(json.dumps(r) + "\n")
print(f"examples/long-docs.jsonl: {len(reqs)} requests, documents of {[len(d) for d in docs]} characters")
PY
