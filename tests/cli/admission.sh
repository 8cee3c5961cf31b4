#!/bin/bash
# Memory that cannot fit is refused before the job starts, with how much it needs, not an
# out-of-memory crash: LongLLaMA memory grows with the document; with a small KV budget the long
# document's job fails with a capacity error naming its bytes while a short job of the same batch
# runs; generate exits non-zero with the same message.
. "$(dirname "$0")/../lib/common.sh"
G=$TMP/fot
mkdir -p "$G"
for f in "$GOLDEN/longllama-tiny"/*; do ln -s "$f" "$G/"; done
ln -s "$MODELS/stories260K/tokenizer.model" "$G/tokenizer.model"
$PYTHON - > "$TMP/in.jsonl" <<'PY'
import json
req = lambda cid, ids: {"custom_id": cid, "method": "POST", "url": "/v1/completions",
                        "body": {"prompt": ids, "max_tokens": 4, "temperature": 0}}
print(json.dumps(req("long", [1] + [5 + i % 400 for i in range(20000)])))
print(json.dumps(req("short", [1, 5, 6, 7, 8])))
PY
"$BRT_BIN" inspect --model "$G" --doc-tokens 20001 --max-tokens 4 | grep "one job" || fail "inspect"
"$BRT_BIN" run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --kv-budget-mb 1 --quiet 2>"$TMP/err" \
    || { cat "$TMP/err"; fail "the run failed as a whole"; }
$PYTHON - "$TMP/out.jsonl" <<'PY' || fail "capacity was not refused per job"
import json, sys
rows = {json.loads(l)["custom_id"]: json.loads(l) for l in open(sys.argv[1])}
e = rows["long"]["error"]
assert e and e["code"] == "capacity_exceeded" and "MiB" in e["message"] and "budget" in e["message"], e
assert rows["short"]["error"] is None, rows["short"]
print("long:", e["message"])
PY
$PYTHON - "$TMP/ids.safetensors" <<'PY'
import json, struct, sys
ids = [1] + [5 + i % 400 for i in range(20000)]
data = struct.pack("<%dq" % len(ids), *ids)
h = json.dumps({"input_ids": {"dtype": "I64", "shape": [1, len(ids)], "data_offsets": [0, len(data)]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
expect_fail "generate beyond the budget" "needs .* MiB of fot state" \
    "$BRT_BIN" generate --model "$G" --input-ids "$TMP/ids.safetensors" -n 4 --kv-budget-mb 1 --quiet
echo "PASS"
