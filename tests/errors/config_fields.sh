#!/bin/bash
# config.json fields beaconrt cannot honour: an unknown field (refused, not ignored) and an unsupported
# value (hidden_act gelu). The message names config.json and the field.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/errors.sh"

d=$(llama_copy unknown)
mangle config "$LLAMA/config.json" "$d/config.json" 'rope_interleaved=true'
asan_fail "unknown config field" 'unknown/config.json: unknown field "rope_interleaved"' \
    logits --model "$d" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet
asan_fail "unknown config field (inspect)" 'config.json: unknown field "rope_interleaved"' inspect --model "$d"

d=$(llama_copy gelu)
mangle config "$LLAMA/config.json" "$d/config.json" 'hidden_act="gelu"'
asan_fail "hidden_act gelu" 'gelu/config.json: "hidden_act": "gelu" is not supported' \
    generate --model "$d" --input-ids "$IDS" -n 2 --quiet

d=$(llama_copy notjson)
printf '{"model_type": "llama", "vocab_size": 512,' >"$d/config.json"
asan_fail "config.json is not JSON" "notjson/config.json: line [0-9]*" \
    logits --model "$d" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet

d=$(llama_copy nohidden)
mangle config "$LLAMA/config.json" "$d/config.json" -hidden_size
asan_fail "required field missing" 'nohidden/config.json: required field "hidden_size" is missing' \
    logits --model "$d" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet
