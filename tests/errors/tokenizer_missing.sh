#!/bin/bash
# A model folder without tokenizer.model: a text prompt must fail naming the missing file; token ids
# (--input-ids) need no tokenizer and must work, and so must logits.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/errors.sh"

d="$TMP/notok"
mkdir -p "$d"
cp "$MODELS/stories260K/config.json" "$MODELS/stories260K/model.safetensors" "$d/"
asan_fail "text prompt without tokenizer.model" "notok/tokenizer.model: missing" \
    generate --model "$d" --prompt "Once upon a time" -n 4 --quiet
printf 'Once upon a time' >"$TMP/prompt.txt"
asan_fail "prompt file without tokenizer.model" "notok/tokenizer.model: missing" \
    generate --model "$d" --prompt-file "$TMP/prompt.txt" -n 4 --quiet

# [BOS] + "Once upon a time" (models/stories260K/README: 1 403 407 261 378); greedy goes on with
# ", there was ..." = 432 383 286 261
st_util ids "$TMP/ids.safetensors" 1 403 407 261 378
asan_ok "token ids without tokenizer.model" generate --model "$d" --input-ids "$TMP/ids.safetensors" -n 4 --greedy \
    --json --quiet
grep -q '"generated_ids":\[432,383,286,261\]' "$TMP/out.txt" || { cat "$TMP/out.txt"; fail "unexpected ids"; }
if grep -q '"text"' "$TMP/out.txt"; then cat "$TMP/out.txt"; fail "printed text without a tokenizer"; fi
asan_ok "logits without tokenizer.model" logits --model "$d" --input-ids "$TMP/ids.safetensors" \
    --out "$TMP/o.safetensors" --quiet
[ -s "$TMP/o.safetensors" ] || fail "no logits written"
