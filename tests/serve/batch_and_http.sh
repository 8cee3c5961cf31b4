#!/bin/bash
# One `beaconrt serve` run fed by a batch file and by HTTP clients at once, on 4 ranks (2 pipeline
# stages x 2 data-parallel replicas): the batch's results are those of `beaconrt run`, the HTTP
# answers are those of the same requests in the batch, and both replicas did work (/metrics).
# Then a run stopped by SIGTERM mid-batch loses nothing: what finished is in the output, what was
# cancelled is not, and `beaconrt run` on the same files completes it to the same results.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
NORM="$PYTHON $BRT_SOURCE_DIR/tests/tools/normalize_results.py"
M=$MODELS/stories260K
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 24 60
"$BRT_BIN" run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --quiet
$NORM "$TMP/ref.jsonl" 24 >"$TMP/ref.json"

serve_start 4 --model "$M" --pp 2 --dp 2 --input "$TMP/in.jsonl" --output "$TMP/out.jsonl"
# HTTP clients while the batch runs: the batch's own requests, by 6 threads
$PYTHON - "$URL" "$TMP/in.jsonl" "$TMP/ref.jsonl" <<'PY' || fail "HTTP answers differ from the batch's"
import concurrent.futures, json, sys, urllib.request
url, inp, ref = sys.argv[1], sys.argv[2], sys.argv[3]
reqs = [json.loads(l) for l in open(inp)]
want = {json.loads(l)["custom_id"]: json.loads(l)["response"]["body"] for l in open(ref)}
def ask(r):
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(r["body"]).encode(),
                                 headers={"Content-Type": "application/json"})
    body = json.loads(urllib.request.urlopen(req, timeout=120).read())
    w = want[r["custom_id"]]
    assert body["choices"][0]["text"] == w["choices"][0]["text"], (r["custom_id"], body, w)
    assert body["usage"] == w["usage"], (body["usage"], w["usage"])
    return r["custom_id"]
with concurrent.futures.ThreadPoolExecutor(6) as ex:
    done = list(ex.map(ask, reqs))
print("HTTP: %d answers equal to the batch's" % len(done))
PY
for _ in $(seq 1 300); do [ "$(wc -l <"$TMP/out.jsonl")" -ge 24 ] && break; sleep 0.1; done
$NORM "$TMP/out.jsonl" 24 >"$TMP/out.json" || fail "the batch did not finish while serving"
cmp -s "$TMP/ref.json" "$TMP/out.json" || { diff "$TMP/ref.json" "$TMP/out.json" | head -20; fail "batch results differ from beaconrt run's"; }
note "batch: 24 results equal to beaconrt run's"
b0=$(metric beaconrt_stage_busy_fraction 'pipeline="0"')
b1=$(metric beaconrt_stage_busy_fraction 'pipeline="1"')
acurl -s "$URL/metrics" | grep "^beaconrt_stage_busy_fraction" >&2
$PYTHON -c "import sys; sys.exit(not (float('$b0') > 0 and float('$b1') > 0))" || fail "a replica did no work ($b0, $b1)"
[ "$(metric beaconrt_requests_total 'result="ok"')" = 24 ] || fail "HTTP requests in /metrics"
serve_stop
grep -q "batch .*24 ok, 0 failed, 0 left" "$SERVER_LOG" || { cat "$SERVER_LOG"; fail "the batch summary"; }

# SIGTERM mid-batch with no time to drain: finished results stay, the rest is left for a rerun
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in2.jsonl" text 60 200
"$BRT_BIN" run --model "$M" --input "$TMP/in2.jsonl" --output "$TMP/ref2.jsonl" --quiet
$NORM "$TMP/ref2.jsonl" 60 >"$TMP/ref2.json"
serve_start 2 --model "$M" --max-jobs 2 --input "$TMP/in2.jsonl" --output "$TMP/out2.jsonl" --drain-seconds 0
for _ in $(seq 1 300); do [ "$(wc -l <"$TMP/out2.jsonl" 2>/dev/null || echo 0)" -ge 3 ] && break; sleep 0.05; done
serve_stop
n=$(wc -l <"$TMP/out2.jsonl")
[ "$n" -ge 3 ] && [ "$n" -lt 60 ] || fail "stopped mid-batch with $n of 60 results (want some, not all)"
grep -q "batch .* left for a rerun" "$SERVER_LOG" || { cat "$SERVER_LOG"; fail "no batch summary after SIGTERM"; }
$PYTHON - "$TMP/out2.jsonl" <<'PY' || fail "a cancelled job was written as a result"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert r["error"] is None and r["response"]["status_code"] == 200, r
PY
note "SIGTERM: $n of 60 results written, none of them a cancellation; $(grep 'batch ' "$SERVER_LOG" | tail -1)"
"$BRT_BIN" run --model "$M" --input "$TMP/in2.jsonl" --output "$TMP/out2.jsonl" --quiet
$NORM "$TMP/out2.jsonl" 60 >"$TMP/out2.json"
cmp -s "$TMP/ref2.json" "$TMP/out2.json" || { diff "$TMP/ref2.json" "$TMP/out2.json" | head; fail "the resumed batch differs"; }
note "the rerun completed it: 60 results equal to one uninterrupted run's"
echo "PASS"
