#!/bin/bash
# A client that disconnects mid-stream cancels its job and frees its state on every stage: against
# `mpirun -np 2 beaconrt serve` (two pipeline stages, Activation Beacon state growing as it
# generates), /metrics shows both stages holding state while the stream runs, then the request
# cancelled, nothing running and both stages' state pools empty; the server answers afterwards.
# The same holds for a client that goes away while its request waits for a job slot.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
M=$MODELS/stories260K
serve_start 2 --model "$M" --policy beacon_v1 --beacon-window 64 --beacon-ratio 4 --max-jobs 1

LONG='{"prompt": "Once upon a time", "max_tokens": 10000000, "ignore_eos": true, "stream": true}'
curl -sN "$URL/v1/completions" -d "$LONG" >"$TMP/stream.txt" &
CLIENT=$!
# wait until it has streamed a few hundred tokens and both stages report state
for _ in $(seq 1 300); do
    chunks=$(grep -c '^data: {' "$TMP/stream.txt" || true)
    s0=$(metric beaconrt_stage_kv_used_bytes 'stage="0"')
    s1=$(metric beaconrt_stage_kv_used_bytes 'stage="1"')
    [ "$chunks" -ge 300 ] && [ "$s0" -gt 0 ] && [ "$s1" -gt 0 ] && break
    sleep 0.1
done
[ "$chunks" -ge 300 ] || fail "the stream did not get going ($chunks chunks)"
[ "$s0" -gt 0 ] && [ "$s1" -gt 0 ] || fail "the stages hold no state while the job runs ($s0, $s1 bytes)"
[ "$(metric beaconrt_requests_running)" = 1 ] || fail "requests_running is not 1 while the stream runs"
note "streaming: $chunks chunks, state on stage 0: $s0 bytes, stage 1: $s1 bytes"

# a second client waits for the only job slot, and goes away too
curl -s "$URL/v1/completions" -d '{"prompt": "Hi", "max_tokens": 4}' >/dev/null &
WAITER=$!
for _ in $(seq 1 50); do [ "$(metric beaconrt_requests_waiting)" = 1 ] && break; sleep 0.1; done
[ "$(metric beaconrt_requests_waiting)" = 1 ] || fail "the second request is not waiting"
kill $WAITER
wait $WAITER 2>/dev/null || true
for _ in $(seq 1 50); do [ "$(metric beaconrt_requests_total 'result="cancelled"')" = 1 ] && break; sleep 0.1; done
[ "$(metric beaconrt_requests_total 'result="cancelled"')" = 1 ] || fail "the waiting request was not cancelled"
kill $CLIENT
wait $CLIENT 2>/dev/null || true

for _ in $(seq 1 100); do
    [ "$(metric beaconrt_requests_total 'result="cancelled"')" = 2 ] && [ "$(metric beaconrt_requests_running)" = 0 ] &&
        [ "$(metric beaconrt_stage_kv_used_bytes)" = 0 ] && break
    sleep 0.1
done
acurl -s "$URL/metrics" | grep -E "^beaconrt_(requests_(running|waiting|total)|stage_kv_used_bytes)" >&2
[ "$(metric beaconrt_requests_total 'result="cancelled"')" = 2 ] || fail "the two jobs were not cancelled"
[ "$(metric beaconrt_requests_running)" = 0 ] && [ "$(metric beaconrt_requests_waiting)" = 0 ] || fail "requests still open"
[ "$(metric beaconrt_stage_kv_used_bytes 'stage="0"')" = 0 ] || fail "stage 0 kept the cancelled job's state"
[ "$(metric beaconrt_stage_kv_used_bytes 'stage="1"')" = 0 ] || fail "stage 1 kept the cancelled job's state"
note "after the disconnects: both cancelled, nothing running, no state on either stage"

# the server goes on: a request runs, and frees its state when done
got=$(post /v1/completions '{"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}')
[ "$got" = 200 ] || fail "a request after the disconnects: $got"
wait_metric beaconrt_stage_kv_used_bytes "" 0 || fail "state left after a finished request"
serve_stop
echo "PASS"
