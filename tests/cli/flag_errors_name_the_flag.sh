#!/bin/bash
# A policy flag with a value the config parser refuses is blamed on the flag, not on the model's
# config.json the user never edited: the message starts with the flag ("--beacon-window: ...") and
# names no config.json, and a malformed value is a usage error (exit 2), for every command that
# takes the flags. A value from a preset's "policy" is blamed on the preset; a value from
# config.json itself still names config.json.
. "$(dirname "$0")/../lib/common.sh"
M="$MODELS/stories260K"
printf '%s\n' '{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", "max_tokens": 1}}' >"$TMP/in.jsonl"

# blame "what" "pattern" exit flags...: every command, the flag named first, no config.json
blame() {
    local case_=$1 pat=$2 want_rc=$3 cmd # expect_fail sets what, pattern and rc
    shift 3
    for cmd in generate run inspect plan logits; do
        case $cmd in
        generate) args=(--prompt "Once upon a time" -n 1) ;;
        run) args=(--input "$TMP/in.jsonl" --output "$TMP/out-$RANDOM.jsonl") ;;
        logits) args=(--input-ids "$GOLDEN/llama-tiny/golden.safetensors:short_input_ids" --out "$TMP/l.safetensors") ;;
        *) args=() ;;
        esac
        expect_fail "$cmd $case_" "error: $pat" "$BRT_BIN" $cmd --model "$M" "${args[@]}" --quiet "$@"
        grep -q "config.json" "$TMP/err.txt" && { cat "$TMP/err.txt"; fail "$cmd $case_: blames config.json"; }
        [ "$rc" -eq "$want_rc" ] || fail "$cmd $case_: exit $rc, expected $want_rc"
    done
}
blame "--beacon-window 0" '--beacon-window: "beacon_window" must be an integer in \[1, ' 2 --policy beacon_v1 --beacon-window 0
blame "--beacon-ratio -3" '--beacon-ratio: "beacon_ratio"\[0\] must be an integer in \[0, ' 2 --policy beacon_v1 --beacon-ratio -3
blame "--beacon-stride > window" '--beacon-stride: "beacon_stride" 128 is larger than "beacon_window" 64' 2 \
    --policy beacon_v1 --beacon-window 64 --beacon-stride 128
blame "--mem-layers 7" '--mem-layers: "mem_layers"\[0\] must be a layer index in \[0, 5)' 2 --policy fot --mem-layers 7
blame "--last-context-length 0" '--last-context-length: "last_context_length" must be an integer in \[1, ' 2 \
    --policy fot --last-context-length 0
blame "--beacon-attn" '--beacon-attn: "beacon_attn": "sideways" is not supported' 1 --policy beacon_v1 --beacon-attn sideways
blame "--policy" '--policy: "policy": "beacons" is not supported' 1 --policy beacons
blame "--mem-dtype without its policy" '--mem-dtype: "mem_dtype" without the rest of its long-context config' 2 \
    --mem-dtype float32
blame "--set" '--set beacon_window: "beacon_window" must be an integer' 2 --policy beacon_v1 --set 'beacon_window="x"'
blame "--set unknown" '--set rope_interleaved: unknown field "rope_interleaved"' 1 --set rope_interleaved=true

# a preset's policy value names the preset
printf '{"model": "%s", "policy": {"policy": "beacon_v1", "beacon_window": -1}}\n' "$M" >"$TMP/preset.json"
expect_fail "preset policy value" "$TMP/preset.json \"policy\": \"beacon_window\" must be an integer" \
    "$BRT_BIN" generate --config "$TMP/preset.json" --prompt "Hi" -n 1 --quiet
# ... unless a flag overrides it
"$BRT_BIN" generate --config "$TMP/preset.json" --beacon-window 64 --prompt "Hi" -n 1 --quiet >/dev/null ||
    fail "the flag did not override the preset's bad value"
# the file's own bad value still names the file
mkdir -p "$TMP/bad"
cp "$M/model.safetensors" "$M/tokenizer.model" "$TMP/bad/"
sed 's/"max_position_embeddings": 512/"max_position_embeddings": 0/' "$M/config.json" >"$TMP/bad/config.json"
expect_fail "config.json's own value" "bad/config.json: \"max_position_embeddings\" must be an integer" \
    "$BRT_BIN" generate --model "$TMP/bad" --prompt "Hi" -n 1 --quiet
echo "PASS"
