#!/bin/bash
# A bounded load test of `mpirun -np 2 beaconrt serve` from a second process (bench/serve_load.py):
# four rounds of 60 streamed requests with long prompts from 16 concurrent clients, on loopback,
# each within a time limit; clients retry after a 429 as the openai SDK does. No request may fail
# other than by the 429s the server declares (--max-waiting 12 keeps them coming), the server
# answers afterwards, and its resident memory (all ranks) does not grow from round 2 to round 4 by
# more than 4 MiB (34 KiB a request). Between single rounds it moves by up to ~2 MiB either way
# with no trend (ten rounds: 52.5, 52.5, 53.5, 53.0, 53.0, 52.9, 53.8, 53.8, 53.2, 53.6 MiB; the
# HTTP threads' malloc arenas), which a 2 MiB bound on one round mistook for a leak.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
M=$MODELS/stories260K
serve_start 2 --model "$M" --policy beacon_v1 --beacon-window 64 --beacon-ratio 4 --max-waiting 12

rss_kb() { # resident memory of every rank, KiB
    t=0
    for p in $(serve_ranks); do t=$((t + $(awk '/^VmRSS/ {print $2}' /proc/"$p"/status))); done
    echo $t
}
for round in 1 2 3 4; do
    $PYTHON "$BRT_SOURCE_DIR/bench/serve_load.py" --url "$URL" --requests 60 --concurrency 16 --prompt-words 500 \
        --max-tokens 24 --retries 30 --time-limit 240 --seed "$round" --json "$TMP/r$round.json" || fail "round $round: the load generator failed"
    rss[$round]=$(rss_kb)
    note "round $round: resident memory of the ranks: ${rss[$round]} KiB"
    $PYTHON - "$TMP/r$round.json" <<'PY' || fail "round $round: failures"
import json, sys
f = json.load(open(sys.argv[1]))
assert f["failed"] == 0, f["errors"]
assert f["ok"] + f["refused_429"] == f["requests"] and f["ok"] >= 30 and f["answers_429"] > 0, f
assert f["prompt_tokens_mean"] > 500, f
PY
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] || fail "not healthy after the load"
got=$(post /v1/completions '{"prompt": "Once upon a time", "max_tokens": 4}')
[ "$got" = 200 ] || fail "a request after the load: $got"
[ "${rss[4]}" -le $((rss[2] + 4096)) ] ||
    fail "resident memory grew over rounds 2-4: ${rss[2]}, ${rss[3]}, ${rss[4]} KiB"
wait_metric beaconrt_stage_kv_used_bytes "" 0 || fail "state left after the load"
refused=$(metric beaconrt_requests_refused_total 'reason="queue_full"')
note "429s declared over the rounds: $refused"
serve_stop
echo "PASS"
