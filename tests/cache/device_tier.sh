#!/bin/bash
# The state cache's device tier (copies the stage keeps in the backend's own memory: GPU memory with
# --device cuda, the CPU backend's pool here) under a budget that holds two states: two documents
# read one after the other, then a question on each. The second document's states push the first
# one's out of device memory, LRU first: into host memory, onto disk, or through both when host
# memory holds only one, or away when there is no lower tier. Every way the answers are
# byte-identical to a run without a cache, the run summary counts the moves and which hits came
# from device memory, and `plan` says how many documents each tier holds. Then over HTTP: the
# question's usage reports the cached tokens and /metrics counts the device hit.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
NORM2="$PYTHON $BRT_SOURCE_DIR/tests/cache/normalize_uncached.py"

G=$TMP/m/beacon-tiny # the golden model with the 512-piece tokenizer, so prompts can be text
mkdir -p "$G"
for f in "$GOLDEN/beacon-tiny"/*; do ln -sf "$f" "$G/"; done
ln -sf "$MODELS/stories260K/tokenizer.model" "$G/tokenizer.model"

$PYTHON - "$TMP/in.jsonl" <<'PY'
import json, sys
w = "once upon a time there was a little girl named Lily who loved to play in the park with her dog Max".split()
def doc(m): return " ".join(w[(i * m) % len(w)] for i in range(600))
A, B = doc(7), doc(5)
rows = [("docA", A, 4, 0), ("docB", B, 4, 0), ("qA", A + " Who was the girl?", 10, 1), ("qB", B + " Max", 10, 2)]
with open(sys.argv[1], "w") as f:
    for cid, prompt, n, seed in rows:
        body = {"prompt": prompt, "max_tokens": n, "temperature": 0.8 if seed else 0, "seed": seed, "logprobs": 2}
        f.write(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/completions", "body": body}) + "\n")
PY
"$BRT_BIN" run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --max-jobs 1 --quiet ||
    fail "the run without a cache failed"
$NORM2 "$TMP/ref.jsonl" 4 >"$TMP/ref.norm"

# A job of these prompts sets aside 0.47 MiB per state: 1.2 MiB holds two
# case TIERS... | HITS (of 4 lookups) | FROM DEVICE | MOVED DOWN | EVICTED | CACHED (qA qB)
check() {
    want_summary="$2 hits of 4 lookups ($3 from device memory"
    tiers=$1
    rm -rf "$TMP/out.jsonl" "$TMP/dc"
    # shellcheck disable=SC2086
    "$BRT_BIN" run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --max-jobs 1 \
        --state-cache-device-mb 1.2 $tiers 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "[$tiers]: the run failed"; }
    summary=$(grep "state cache:" "$TMP/err.txt")
    $NORM2 "$TMP/out.jsonl" 4 >"$TMP/out.norm"
    cmp -s "$TMP/ref.norm" "$TMP/out.norm" || { diff "$TMP/ref.norm" "$TMP/out.norm" | head; fail "[$tiers]: answers differ"; }
    case "$summary" in *"$want_summary"*"$4 evicted, $5 moved down a tier, 0 failed to load, 0 failed to keep"*) ;;
    *) fail "[$tiers]: '$summary', want '$want_summary ... $4 evicted, $5 moved down a tier'" ;; esac
    cached=$($PYTHON -c 'import json,sys; print(" ".join(str(json.loads(l)["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"]) for l in open(sys.argv[1])))' "$TMP/out.jsonl")
    [ "$cached" = "$6" ] || fail "[$tiers]: cached tokens $cached, want $6"
    note "[device 1.2 MiB $tiers]: identical answers; $summary"
}
# device memory alone: docB's states evict docA's (nothing below); qA then reads docA again and its
# states evict docB's: no hits
check "" 0 0 6 0 "0 0 0 0"
# docA's states move to host memory; qA loads them from there, qB from device memory
check "--state-cache-host-mb 64" 2 1 0 2 "0 0 896 896"
# ... or to disk
check "--state-cache-dir $TMP/dc" 2 1 0 2 "0 0 896 896"
# host memory holds one of them: the other moves on to disk (three moves)
check "--state-cache-host-mb 0.5 --state-cache-dir $TMP/dc" 2 1 0 3 "0 0 896 896"
# a device tier larger than both documents' states: both questions load from device memory
rm -rf "$TMP/out.jsonl"
"$BRT_BIN" run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --max-jobs 1 --state-cache-device-mb 4 \
    2>"$TMP/err.txt" || fail "the run with 4 MiB failed"
grep -qF "2 hits of 4 lookups (2 from device memory" "$TMP/err.txt" || { grep "state cache" "$TMP/err.txt"; fail "4 MiB: want 2 device hits"; }
cmp -s "$TMP/ref.norm" <($NORM2 "$TMP/out.jsonl" 4) || fail "4 MiB: answers differ"

# plan: documents per tier (a 700-token document's state is 0.39 MiB on this one stage)
"$BRT_BIN" plan --model "$G" --doc-tokens 700 --state-cache-device-mb 1 --state-cache-host-mb 4 >"$TMP/plan.txt" 2>&1 ||
    { cat "$TMP/plan.txt"; fail "plan failed"; }
grep -qF "documents of this length kept per stage: 2 in device memory (1.0 MiB), 10 in host memory (4.0 MiB)" \
    "$TMP/plan.txt" || { cat "$TMP/plan.txt"; fail "plan: documents per tier"; }
note "plan: $(grep 'state cache' "$TMP/plan.txt")"

# HTTP: the document, then a question on it; the question's usage and /metrics
serve_start 1 --model "$G" --max-jobs 1 --state-cache-device-mb 4
doc=$($PYTHON -c 'import json,sys; print(json.dumps(json.loads(open(sys.argv[1]).readline())["body"]["prompt"]))' "$TMP/in.jsonl")
[ "$(post /v1/completions "{\"prompt\": $doc, \"max_tokens\": 2}")" = 200 ] || fail "the document over HTTP"
[ "$(post /v1/completions "{\"prompt\": $(echo "$doc" | sed 's/"$/ Max"/'), \"max_tokens\": 2}")" = 200 ] ||
    fail "the question over HTTP"
cached=$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))["usage"]["prompt_tokens_details"]["cached_tokens"])' "$TMP/body.json")
[ "$cached" -gt 0 ] || { cat "$TMP/body.json"; fail "the question over HTTP reports no cached tokens"; }
[ "$(metric beaconrt_state_cache_device_hits_total)" = 1 ] || { acurl -s "$URL/metrics" | grep state_cache; fail "/metrics: want 1 device hit"; }
note "HTTP: the question reports $cached cached tokens, /metrics one device hit"
serve_stop
echo "PASS"
