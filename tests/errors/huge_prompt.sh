#!/bin/bash
# A hostile 100 MB prompt line costs bounded memory: tokenizing stops past the policy's limit
# (the model's context under plain attention, 16M tokens per job otherwise), so rank 0 stays
# within a few times the line's size (it reached 23x, 2.4 GB, when the whole text was tokenized
# first) and the request fails alone with a clear error while the next one runs.
. "$(dirname "$0")/../lib/common.sh"
M=$MODELS/stories260K
$PYTHON - "$TMP/huge.jsonl" <<'PY'
import json, sys
w = "once upon a time there was a little girl "
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"custom_id": "huge", "method": "POST", "url": "/v1/completions",
                        "body": {"prompt": w * (100 * 2**20 // len(w)), "max_tokens": 4}}) + "\n")
    f.write(json.dumps({"custom_id": "ok", "method": "POST", "url": "/v1/completions",
                        "body": {"prompt": "Once upon a time", "max_tokens": 4}}) + "\n")
PY
size=$(stat -c %s "$TMP/huge.jsonl")
for pol in "" "--policy beacon_v1 --beacon-window 64 --beacon-ratio 4"; do
    rm -f "$TMP/out.jsonl"
    # shellcheck disable=SC2086
    $PYTHON - "$TMP/rss" "$BRT_BIN" run --model "$M" $pol --input "$TMP/huge.jsonl" --output "$TMP/out.jsonl" --quiet <<'PY' ||
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
PY
        fail "the run failed as a whole (${pol:-full})"
    rss=$(( $(cat "$TMP/rss") * 1024 ))
    $PYTHON - "$TMP/out.jsonl" <<'PY' || fail "the huge prompt was not refused alone (${pol:-full})"
import json, sys
rows = {json.loads(l)["custom_id"]: json.loads(l) for l in open(sys.argv[1])}
e = rows["huge"]["error"]
assert e and e["code"] == "out_of_range" and "more than" in e["message"], rows["huge"]
assert rows["ok"]["error"] is None, rows["ok"]
print(e["message"][:160])
PY
    [ "$rss" -lt $((5 * size)) ] || fail "rank 0 peaked at $((rss >> 20)) MiB for a $((size >> 20)) MiB line (${pol:-full})"
    note "${pol:-full}: peak RSS $((rss >> 20)) MiB for a $((size >> 20)) MiB line"
done
echo "PASS"
