#!/usr/bin/python3
"""Print a batch output in a canonical form (sorted by custom_id, without the `created` time),
so that outputs of runs in different layouts can be compared byte for byte. Also checks that
every custom_id appears exactly once.

usage: normalize_results.py RESULTS.jsonl [EXPECTED_COUNT]
"""
import collections, json, sys

rows = [json.loads(l) for l in open(sys.argv[1])]
counts = collections.Counter(r["custom_id"] for r in rows)
dups = [k for k, v in counts.items() if v > 1]
if dups:
    sys.exit(f"{sys.argv[1]}: custom_ids appear more than once: {dups}")
if len(sys.argv) > 2 and len(rows) != int(sys.argv[2]):
    sys.exit(f"{sys.argv[1]}: {len(rows)} results, expected {sys.argv[2]}")
for r in rows:
    if r.get("response"):
        r["response"]["body"].pop("created", None)
print(json.dumps(sorted(rows, key=lambda r: r["custom_id"]), sort_keys=True, indent=1))
