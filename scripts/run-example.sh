#!/bin/sh
# The main job: installs what beaconrt needs (Debian packages), builds it, and runs a batch of
# long documents through the embedded TinyStories model with Activation Beacon on, as a
# 2-rank pipeline under mpirun. Results: out/example-results.jsonl (one JSON line per request).
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh
mkdir -p out
rm -f out/example-results.jsonl
launch/beaconrt-mpirun -np 2 beaconrt run --config configs/stories260k-beacon-laptop.json \
    --input examples/long-docs.jsonl --output out/example-results.jsonl
/usr/bin/python3 - <<'PY'
import json
for line in open("out/example-results.jsonl"):
    r = json.loads(line)
    if r["error"]:
        print(f'{r["custom_id"]}: error: {r["error"]["message"]}')
        continue
    b = r["response"]["body"]; c = b["choices"][0]; u = b["usage"]
    if c["logprobs"]:
        lp = [x for x in c["logprobs"]["token_logprobs"] if x is not None]
        import math
        print(f'{r["custom_id"]}: {u["prompt_tokens"]} tokens scored, perplexity {math.exp(-sum(lp)/len(lp)):.2f}')
    else:
        print(f'{r["custom_id"]}: {u["prompt_tokens"]} prompt tokens -> "{c["text"].strip()[:100]}"')
PY
