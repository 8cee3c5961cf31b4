#!/bin/bash
# Every refusal class of `beaconrt serve`, with curl: its HTTP status and OpenAI's error body naming
# the problem. 401 without the key (but /health), 400 for malformed JSON, wrong types, unknown
# fields, a request beyond the policy's context and a model without a chat template, 404/405 for routes, 413
# for a body over --max-body-mb, 429 with Retry-After when --max-waiting requests are open and when
# a request finds no room within --queue-timeout, 503 while draining after SIGTERM (the stream in
# flight then ends with an error event, and the server exits 0). Garbage bodies never crash it.
# (tests/errors/serve_bodies.sh sends the same bodies to the AddressSanitizer build.)
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
M=$MODELS/stories260K

# one job at a time, two open requests at most, 1s of patience: a long stream blocks the rest
serve_start 2 --model "$M" --policy beacon_v1 --beacon-window 64 --beacon-ratio 4 --api-key secret-key \
    --max-body-mb 1 --max-waiting 2 --max-jobs 1 --queue-timeout 1 --drain-seconds 3

# 401: every route but /health wants the key
for route in /v1/models /metrics; do
    got=$(curl -s -o "$TMP/body.json" -w '%{http_code}' "$URL$route")
    [ "$got" = 401 ] || fail "$route without a key: $got"
done
got=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer secret-kex" "$URL/v1/models")
[ "$got" = 401 ] || fail "a wrong key: $got"
API_KEY=""
expect_status "completion without a key" 401 /v1/completions '{"prompt":"x"}' "API key"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] || fail "/health wants no key"
API_KEY=secret-key

# 400: bodies
expect_status "malformed JSON" 400 /v1/completions '{"prompt": "x",' "not valid JSON"
expect_status "empty body" 400 /v1/completions '' "not valid JSON"
expect_status "not an object" 400 /v1/completions '[1, 2]' "object"
expect_status "prompt of the wrong type" 400 /v1/completions '{"prompt": 5}' "prompt must be"
expect_status "max_tokens of the wrong type" 400 /v1/completions '{"prompt": "x", "max_tokens": "9"}' "max_tokens must be an integer"
expect_status "unknown field" 400 /v1/completions '{"prompt": "x", "frobnicate": 1}' "unknown field body.frobnicate"
expect_status "duplicate key" 400 /v1/completions '{"prompt": "x", "prompt": "y"}' "duplicate"
expect_status "messages to completions" 400 /v1/completions '{"messages": []}' "messages belongs to /v1/chat/completions"
expect_status "messages not an array" 400 /v1/chat/completions '{"messages": "hi"}' "messages must be a non-empty array"
expect_status "no chat template" 400 /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}]}' "chat_template"
expect_status "stream of the wrong type" 400 /v1/completions '{"prompt": "x", "stream": "yes"}' "stream must be a boolean"
expect_status "prompt beyond the context" 400 /v1/completions '{"prompt": [1, 2], "max_tokens": 2000000000}' "limit of"
expect_status "token id out of the vocabulary" 400 /v1/completions '{"prompt": [1, 99999]}' "99999"
# 404 / 405
got=$(acurl -s -o "$TMP/body.json" -w '%{http_code}' "$URL/v1/embeddings")
[ "$got" = 404 ] && grep -q "no such endpoint" "$TMP/body.json" || fail "unknown route: $got"
got=$(acurl -s -o "$TMP/body.json" -w '%{http_code}' "$URL/v1/completions")
[ "$got" = 405 ] || fail "GET /v1/completions: $got"
# 413
head -c 1200000 /dev/zero | tr '\0' 'a' | sed 's/^/{"prompt":"/; s/$/"}/' >"$TMP/big.json"
got=$(post /v1/completions "@$TMP/big.json")
[ "$got" = 413 ] && grep -q "max-body-mb" "$TMP/body.json" || fail "a 1.2 MB body: $got"
note "413: $(head -c 120 "$TMP/body.json")"
# garbage: random bytes as bodies and as JSON values; 4xx every time, the server lives on
$PYTHON "$BRT_SOURCE_DIR/tests/serve/garbage_bodies.py" "$URL" "$API_KEY" 300 || fail "garbage bodies"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] || fail "the server is not healthy after garbage"

# 429: a stream that never ends on its own holds the only job slot
acurl -sN "$URL/v1/completions" -d '{"prompt": "Once upon a time", "max_tokens": 10000000, "ignore_eos": true, "stream": true}' \
    >"$TMP/long_stream.txt" 2>/dev/null &
STREAM=$!
for _ in $(seq 1 100); do [ -s "$TMP/long_stream.txt" ] && break; sleep 0.1; done
grep -q "^data: {" "$TMP/long_stream.txt" || { cat "$TMP/long_stream.txt" "$SERVER_LOG"; fail "the long stream did not start"; }
# the second waits for room and is refused after --queue-timeout 1; meanwhile a third finds the
# queue full (--max-waiting 2)
acurl -s -D "$TMP/h2.txt" -o "$TMP/b2.json" -w '%{http_code}' "$URL/v1/completions" -d '{"prompt":"hi","max_tokens":2}' >"$TMP/code2" &
SECOND=$!
sleep 0.3
got=$(acurl -s -D "$TMP/h3.txt" -o "$TMP/b3.json" -w '%{http_code}' "$URL/v1/completions" -d '{"prompt":"hi","max_tokens":2}')
[ "$got" = 429 ] && grep -qi "^retry-after: " "$TMP/h3.txt" && grep -q "max-waiting" "$TMP/b3.json" || { cat "$TMP/h3.txt" "$TMP/b3.json"; fail "queue full: $got"; }
note "queue full: 429 $(grep -i retry-after "$TMP/h3.txt" | tr -d '\r') $(head -c 120 "$TMP/b3.json")"
wait $SECOND
[ "$(cat "$TMP/code2")" = 429 ] && grep -qi "^retry-after: " "$TMP/h2.txt" && grep -q "queue-timeout" "$TMP/b2.json" || { cat "$TMP/h2.txt" "$TMP/b2.json"; fail "admission: $(cat "$TMP/code2")"; }
note "no room in time: 429 $(head -c 140 "$TMP/b2.json")"
[ "$(metric beaconrt_requests_refused_total 'reason="admission"')" = 1 ] || fail "admission refusals in /metrics"
[ "$(metric beaconrt_requests_refused_total 'reason="queue_full"')" = 1 ] || fail "queue-full refusals in /metrics"
[ "$(metric beaconrt_requests_running)" = 1 ] || fail "the long stream is not running in /metrics"

# 503: SIGTERM to the ranks; new requests and /health get 503 while the stream drains for 3s,
# then the stream ends with an error event and [DONE], and the server exits 0
kill -TERM $(serve_ranks)
for _ in $(seq 1 50); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 503 ] && break; sleep 0.05; done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 503 ] || fail "/health while stopping"
expect_status "a request while stopping" 503 /v1/completions '{"prompt":"hi"}' "shutting down"
serve_wait 30
wait $STREAM || true
tail -c 300 "$TMP/long_stream.txt" | grep -q '"error"' || fail "the drained stream has no error event"
[ "$(tail -c 14 "$TMP/long_stream.txt" | tr -d '\n')" = "data: [DONE]" ] || fail "the drained stream does not end with [DONE]"
grep -q "cancelled the 1 jobs still running" "$SERVER_LOG" || { cat "$SERVER_LOG"; fail "the drain did not cancel the stream"; }
echo "PASS"
