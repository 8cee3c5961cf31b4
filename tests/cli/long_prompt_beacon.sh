#!/bin/bash
# A long text through the embedded model with Activation Beacon turned on by flags (its missing
# beacon weights get the official initialisation): generate --prompt-file runs, prints the
# continuation, and reports progress of the long prefill on stderr; memory stays bounded (inspect
# reports the same bounded state for a 10x longer document).
. "$(dirname "$0")/../lib/common.sh"
S=$MODELS/stories260K
$PYTHON - "$BRT_SOURCE_DIR/examples/long-docs.jsonl" > "$TMP/doc.txt" <<'PY'
import json, sys
print(json.loads(open(sys.argv[1]).readline())["body"]["prompt"])
PY
flags="--policy beacon_v1 --beacon-window 64 --beacon-ratio 4"
# shellcheck disable=SC2086
"$BRT_BIN" generate --model "$S" --prompt-file "$TMP/doc.txt" -n 24 --greedy $flags >"$TMP/out.txt" 2>"$TMP/err.txt" \
    || { cat "$TMP/err.txt"; fail "generate failed"; }
grep -q "policy beacon_v1, [0-9]* prompt tokens" "$TMP/err.txt" || fail "no start line"
grep -q "progress: jobs 1/1 done, tokens" "$TMP/err.txt" || fail "no progress report"
[ "$(wc -c < "$TMP/out.txt")" -gt 20 ] || fail "no continuation printed"
n=$(grep -o "policy beacon_v1, [0-9]*" "$TMP/err.txt" | grep -o "[0-9]*$")
[ "$n" -gt 3000 ] || fail "the document is only $n tokens"
note "generate --prompt-file: $n prompt tokens through beacon_v1: $(head -c 80 "$TMP/out.txt" | tr '\n' ' ')"
# the same through the full policy would exceed the model's 512-token context: beacon reads it, and
# its state for 10x the document is the same bounded window plus linearly growing memory
# shellcheck disable=SC2086
"$BRT_BIN" inspect --model "$S" $flags --doc-tokens "$n" --json > "$TMP/a.json" || [ $? -eq 1 ]
# shellcheck disable=SC2086
"$BRT_BIN" inspect --model "$S" $flags --doc-tokens $((n * 10)) --json > "$TMP/b.json" || [ $? -eq 1 ]
$PYTHON - "$TMP/a.json" "$TMP/b.json" <<'PY' || fail "beacon state is not bounded as the document grows"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["state_slots_window"] == b["state_slots_window"] <= 64 + 16 + 1, (a, b)
# ratio 4: memory grows by a quarter of the tokens, a tenth of full attention's
assert b["state_slots_memory"] <= b["doc_tokens"] // 4 + 1, b
assert b["state_bytes"] < b["full_kv_bytes_per_token"] * b["doc_tokens"] / 3, b
print(f"state for {a['doc_tokens']} tokens: {a['state_bytes']} B; for {b['doc_tokens']}: {b['state_bytes']} B "
      f"(full attention: {b['full_kv_bytes_per_token'] * b['doc_tokens']} B)")
PY
echo "PASS"
