#!/bin/bash
# Every end-of-generation id the model names stops generation: config.json's eos_token_id as a
# list (Llama-3.1 names three) and generation_config.json's (Llama-3-Instruct adds <|eot_id|>
# there). On a copy of stories260K, an id the greedy continuation reaches at its 6th token is
# made an extra end-of-sequence id: the run stops there with finish_reason "stop". A bad id is
# refused naming the file.
. "$(dirname "$0")/../lib/common.sh"
M=$TMP/m
mkdir -p "$M"
for f in "$MODELS/stories260K"/*; do ln -s "$f" "$M/"; done
"$BRT_BIN" generate --model "$M" --prompt "Once upon a time" -n 12 --greedy --json --quiet >"$TMP/a.json"
stop=$($PYTHON -c 'import json,sys; g=json.load(open(sys.argv[1]))["generated_ids"]; print(g[5])' "$TMP/a.json")
first=$($PYTHON -c 'import json,sys; g=json.load(open(sys.argv[1]))["generated_ids"]; print(g.index(int(sys.argv[2])))' "$TMP/a.json" "$stop")
echo '{"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}}' >"$TMP/in.jsonl"
check() { # what: the run must stop at the first occurrence of $stop
    rm -f "$TMP/out.jsonl"
    "$BRT_BIN" run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --quiet || fail "$1: run failed"
    $PYTHON - "$TMP/out.jsonl" "$TMP/a.json" "$first" <<'PY' || fail "$1: generation did not stop at the extra eos id"
import json, sys
r = json.loads(open(sys.argv[1]).read())["response"]["body"]
full = json.load(open(sys.argv[2]))
assert r["choices"][0]["finish_reason"] == "stop", r
assert r["usage"]["completion_tokens"] == int(sys.argv[3]) + 1, (r["usage"], sys.argv[3])
print("stopped after", r["usage"]["completion_tokens"], "tokens:", repr(r["choices"][0]["text"]))
PY
    note "$1: stops at id $stop"
}
rm "$M/config.json"
$PYTHON -c 'import json,sys; c=json.load(open(sys.argv[1])); c["eos_token_id"]=[c["eos_token_id"], int(sys.argv[2])]; json.dump(c, open(sys.argv[3], "w"))' \
    "$MODELS/stories260K/config.json" "$stop" "$M/config.json"
check "config.json eos_token_id list"
cp "$MODELS/stories260K/config.json" "$M/config.json"
rm -f "$M/generation_config.json" # a link into the repository: never write through it
echo "{\"eos_token_id\": [2, $stop]}" >"$M/generation_config.json"
check "generation_config.json eos_token_id"
echo '{"eos_token_id": [2, 99999]}' >"$M/generation_config.json"
expect_fail "an eos id outside the vocabulary" "generation_config.json: eos_token_id" \
    "$BRT_BIN" generate --model "$M" --prompt hi -n 2 --quiet
echo "PASS"
