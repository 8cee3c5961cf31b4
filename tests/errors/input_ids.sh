#!/bin/bash
# Bad --input-ids and --model arguments: a token id outside the vocabulary (generate and logits), a
# tensor name that is not in the file, a non-integer ids tensor, a missing ids file, a missing model
# folder.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/errors.sh"

st_util ids "$TMP/oor.safetensors" 1 5 99999 7
asan_fail "generate: id 99999 with vocab 512" "oor.safetensors: token id 99999 at position 2 is out of the model.s vocabulary \[0, 512)" \
    generate --model "$LLAMA" --input-ids "$TMP/oor.safetensors" -n 4 --quiet
asan_fail "logits: id 99999 with vocab 512" "oor.safetensors: token id 99999 at position 2 is out of the model.s vocabulary \[0, 512)" \
    logits --model "$LLAMA" --input-ids "$TMP/oor.safetensors" --out "$TMP/o.safetensors" --quiet
[ ! -e "$TMP/o.safetensors" ] || fail "logits wrote an output for out-of-range ids"
st_util ids "$TMP/edge.safetensors" 1 5 512
asan_fail "logits: id == vocab_size" "edge.safetensors: token id 512 at position 2 is out of the model.s vocabulary" \
    logits --model "$LLAMA" --input-ids "$TMP/edge.safetensors" --out "$TMP/o.safetensors" --quiet
st_util ids "$TMP/neg.safetensors" 1 -3 5
asan_fail "logits: negative id" "neg.safetensors: tensor 'input_ids': id -3 at position 1 is out of range" \
    logits --model "$LLAMA" --input-ids "$TMP/neg.safetensors" --out "$TMP/o.safetensors" --quiet

asan_fail "--input-ids names a tensor that is not there" "golden.safetensors: no tensor 'no_such_ids'" \
    logits --model "$LLAMA" --input-ids "$LLAMA/golden.safetensors:no_such_ids" --out "$TMP/o.safetensors" --quiet
asan_fail "--input-ids names a tensor that is not there (generate)" "golden.safetensors: no tensor 'no_such_ids'" \
    generate --model "$LLAMA" --input-ids "$LLAMA/golden.safetensors:no_such_ids" -n 2 --quiet

mangle ids-f32 "$TMP/f32ids.safetensors" 1 5 6 7
asan_fail "float ids tensor" "f32ids.safetensors: tensor 'input_ids' is F32; token ids must be I64 or I32" \
    logits --model "$LLAMA" --input-ids "$TMP/f32ids.safetensors" --out "$TMP/o.safetensors" --quiet
asan_fail "logits tensor given as ids" "golden.safetensors: tensor 'short_logits' is F32" \
    generate --model "$LLAMA" --input-ids "$LLAMA/golden.safetensors:short_logits" -n 2 --quiet

mangle ids-shape "$TMP/batch2.safetensors" 2,3 1 5 6 1 7 8
asan_fail "ids tensor with a batch of 2" "batch2.safetensors: tensor 'input_ids' must be shaped \[1, L\]" \
    logits --model "$LLAMA" --input-ids "$TMP/batch2.safetensors" --out "$TMP/o.safetensors" --quiet
mangle ids-shape "$TMP/empty.safetensors" 1,0
asan_fail "empty ids tensor" "empty.safetensors: tensor 'input_ids' must be shaped .* with L > 0" \
    generate --model "$LLAMA" --input-ids "$TMP/empty.safetensors" -n 2 --quiet

# not an error: I32 ids are accepted and mean the same as I64
"$PYTHON" -c "
import sys; sys.dont_write_bytecode = True; sys.path.insert(0, '$BRT_SOURCE_DIR/tests/tools'); import st_util
print(' '.join(map(str, st_util.tensor('$LLAMA/golden.safetensors', 'short_input_ids')[2])))" >"$TMP/ids.txt"
# shellcheck disable=SC2046
mangle ids-i32 "$TMP/i32.safetensors" $(cat "$TMP/ids.txt")
asan_ok "I32 ids" logits --model "$LLAMA" --input-ids "$TMP/i32.safetensors" --out "$TMP/i32_logits.st" --quiet
"$CHECK" tensors "$TMP/i32_logits.st:logits" "$LLAMA/golden.safetensors:short_logits" 1e-4 || fail "I32 ids give wrong logits"

# text prompts: a prompt file that does not exist, a prompt that is not UTF-8
asan_fail "prompt file does not exist" "cannot read .*no_prompt.txt" \
    generate --model "$MODELS/stories260K" --prompt-file "$TMP/no_prompt.txt" -n 2 --quiet
printf 'Once \377 upon' >"$TMP/bad_utf8.txt"
asan_fail "prompt is not UTF-8" "invalid UTF-8 at byte offset 5" \
    generate --model "$MODELS/stories260K" --prompt-file "$TMP/bad_utf8.txt" -n 2 --quiet

asan_fail "ids file does not exist" "nonexistent.safetensors" \
    logits --model "$LLAMA" --input-ids "$TMP/nonexistent.safetensors" --out "$TMP/o.safetensors" --quiet

asan_fail "model folder does not exist (generate)" "no_such_model/config.json: cannot open" \
    generate --model "$TMP/no_such_model" --input-ids "$IDS" -n 2 --quiet
asan_fail "model folder does not exist (logits)" "no_such_model/config.json: cannot open" \
    logits --model "$TMP/no_such_model" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet
asan_fail "model folder does not exist (inspect)" "no_such_model/config.json: cannot open" \
    inspect --model "$TMP/no_such_model"
mkdir -p "$TMP/empty_model"
asan_fail "model folder without config.json" "empty_model/config.json: cannot open" \
    logits --model "$TMP/empty_model" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet
d=$(llama_copy noweights)
rm "$d/model.safetensors"
asan_fail "model folder without weights" "noweights: no model.safetensors" \
    logits --model "$d" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet

# bad numbers on the command line name the flag and exit 2 (usage), before any model is read
usage_fail() {
    what=$1 pattern=$2
    shift 2
    asan_fail "$what" "$pattern" "$@"
    [ "$rc" -eq 2 ] || fail "$what: exit $rc, expected 2 (bad usage)"
}
usage_fail "plan --ranks abc" "bad value 'abc' for --ranks" plan --model "$LLAMA" --ranks abc
usage_fail "plan --doc-tokens -5" "bad value '-5' for --doc-tokens" plan --model "$LLAMA" --doc-tokens -5
usage_fail "inspect --max-tokens 12x" "bad value '12x' for --max-tokens" inspect --model "$LLAMA" --max-tokens 12x
usage_fail "generate --seed -3" "seed wants a non-negative integer, not '-3'" \
    generate --model "$LLAMA" --input-ids "$IDS" --seed -3 -n 2 --quiet
usage_fail "generate -n lots" "n wants a token count, not 'lots'" \
    generate --model "$LLAMA" --input-ids "$IDS" -n lots --quiet
usage_fail "generate --top-p 2" "top-p wants a number in (0, 1\]" \
    generate --model "$LLAMA" --input-ids "$IDS" --top-p 2 -n 2 --quiet
usage_fail "--threads 0" "bad value '0' for --threads" \
    logits --model "$LLAMA" --input-ids "$IDS" --out "$TMP/o.safetensors" --threads 0 --quiet
