#!/usr/bin/python3
"""A batch output in canonical form without what a state cache changes by design (cached_tokens),
so that runs with and without it compare byte for byte. usage: normalize_uncached.py OUT.jsonl [N]"""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1])]
if len(sys.argv) > 2 and len(rows) != int(sys.argv[2]):
    sys.exit("%s: %d results, expected %s" % (sys.argv[1], len(rows), sys.argv[2]))
for r in rows:
    if r.get("response"):
        body = r["response"]["body"]
        body.pop("created", None)
        body["usage"].pop("prompt_tokens_details", None)
print(json.dumps(sorted(rows, key=lambda r: r["custom_id"]), sort_keys=True, indent=1))
