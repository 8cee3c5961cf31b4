#!/bin/bash
# The HTTP server under AddressSanitizer (one rank; Open MPI's own allocations would drown a
# multi-rank leak report): malformed and random bodies, streams with logprobs and stop strings, a
# client that leaves mid-stream, a body over the limit, then SIGTERM. Every answer is a status
# with OpenAI's error body, and the server exits 0 with no sanitizer report (leaks included).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
[ -x "${BRT_ASAN_BIN:-}" ] || skip "no AddressSanitizer build (beaconrt-asan) to test with"
SERVE_BIN=$BRT_ASAN_BIN
serve_start 1 --model "$MODELS/stories260K" --policy beacon_v1 --beacon-window 64 --beacon-ratio 4 --max-body-mb 1
$PYTHON "$BRT_SOURCE_DIR/tests/serve/garbage_bodies.py" "$URL" "" 300 || fail "garbage bodies"
got=$(post /v1/completions '{"prompt": "Once upon a time", "max_tokens": 40, "stream": true, "logprobs": 3, "stop": ["Lily", "park"], "stream_options": {"include_usage": true}}')
[ "$got" = 200 ] && tail -c 14 "$TMP/body.json" | grep -q "data: \[DONE\]" || fail "a stream with logprobs and stop strings: $got"
got=$(post /v1/completions '{"prompt": "Once upon a time", "max_tokens": 20, "echo": true, "logprobs": 2}')
[ "$got" = 200 ] || fail "echo with logprobs: $got"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$TMP/big.txt"
[ "$(post /v1/completions "@$TMP/big.txt")" = 413 ] || fail "an oversized body"
# the client leaves once its stream has begun (a fixed second was too short on a loaded machine:
# the request had not started, so there was nothing yet to cancel)
curl -sN "$URL/v1/completions" -d '{"prompt": "Hi", "max_tokens": 10000000, "ignore_eos": true, "stream": true}' >"$TMP/left.txt" &
cpid=$!
for _ in $(seq 600); do grep -q '^data:' "$TMP/left.txt" && break; sleep 0.05; done
grep -q '^data:' "$TMP/left.txt" || fail "the endless stream sent nothing in 30 s"
kill "$cpid"; wait "$cpid" 2>/dev/null || true
wait_metric beaconrt_requests_total 'result="cancelled"' 1 || fail "the client that left was not cancelled"
serve_stop
echo "PASS"
