#!/bin/bash
# Sharded checkpoints: llama-tiny's f32 weights split over 2 files + model.safetensors.index.json give
# logits identical to the single file. An index naming a shard file that does not exist, or listing a
# tensor for the wrong shard, or a tensor that is in no shard, is refused with a message naming the
# file and tensor.
. "$(dirname "$0")/../lib/common.sh"
LLAMA="$GOLDEN/llama-tiny"
IDS="$LLAMA/golden.safetensors:input_ids"
conv() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/convert_weights.py" "$@" || fail "convert_weights $* failed"; }
BIN="$BRT_BIN"
# error paths under AddressSanitizer when this build has it
if [ -x "$BRT_ASAN_BIN" ] && [ "$(dirname "$BRT_ASAN_BIN")" = "$(dirname "$BRT_BIN")" ]; then BIN="$BRT_ASAN_BIN"; fi

conv shard "$LLAMA" "$TMP/sharded" 2
for f in model-00001-of-00002.safetensors model-00002-of-00002.safetensors model.safetensors.index.json; do
    [ -f "$TMP/sharded/$f" ] || fail "convert_weights shard did not write $f"
done
[ ! -e "$TMP/sharded/model.safetensors" ] || fail "the sharded folder still has model.safetensors"
"$BRT_BIN" logits --model "$TMP/sharded" --input-ids "$IDS" --out "$TMP/sharded.st" --quiet || fail "sharded logits failed"
"$BRT_BIN" logits --model "$LLAMA" --input-ids "$IDS" --out "$TMP/single.st" --quiet || fail "single-file logits failed"
"$CHECK" tensors "$TMP/sharded.st:logits" "$TMP/single.st:logits" 0 || fail "sharded and single-file logits differ"
"$BRT_BIN" inspect --model "$TMP/sharded" >"$TMP/inspect.txt"
grep -q "parameters *214208" "$TMP/inspect.txt" || { cat "$TMP/inspect.txt"; fail "sharded: wrong parameter count"; }
"$BRT_BIN" generate --model "$TMP/sharded" --input-ids "$IDS" -n 16 --greedy --ignore-eos --json --quiet >"$TMP/g.json"
"$CHECK" ids "$TMP/g.json" "$LLAMA/golden.safetensors:generated_ids" || fail "sharded: generated ids differ"

cp -r "$TMP/sharded" "$TMP/missing_shard"
conv index-missing-shard "$TMP/missing_shard"
expect_fail "index names a shard file that does not exist" "missing_shard/model-00009-of-00009.safetensors: No such file" \
    "$BIN" logits --model "$TMP/missing_shard" --input-ids "$IDS" --out "$TMP/o.st" --quiet

cp -r "$TMP/sharded" "$TMP/deleted_shard"
rm "$TMP/deleted_shard/model-00002-of-00002.safetensors"
expect_fail "a shard file was deleted" "deleted_shard/model-00002-of-00002.safetensors: No such file" \
    "$BIN" logits --model "$TMP/deleted_shard" --input-ids "$IDS" --out "$TMP/o.st" --quiet

cp -r "$TMP/sharded" "$TMP/wrong_shard"
conv index-wrong-shard "$TMP/wrong_shard" model.layers.1.mlp.up_proj.weight
expect_fail "index lists a tensor for the wrong shard" \
    "tensor 'model.layers.1.mlp.up_proj.weight' is listed for .*wrong_shard/model-0000[12]-of-00002.safetensors but found in" \
    "$BIN" logits --model "$TMP/wrong_shard" --input-ids "$IDS" --out "$TMP/o.st" --quiet

cp -r "$TMP/sharded" "$TMP/extra_entry"
"$PYTHON" - "$TMP/extra_entry/model.safetensors.index.json" <<'PY'
import json, sys
p = sys.argv[1]
idx = json.load(open(p))
idx["weight_map"]["model.layers.1.mlp.extra_proj.weight"] = "model-00001-of-00002.safetensors"
json.dump(idx, open(p, "w"), indent=2)
PY
expect_fail "index lists a tensor that is in no shard" \
    "tensor 'model.layers.1.mlp.extra_proj.weight' is listed for .*model-00001-of-00002.safetensors but not in it" \
    "$BIN" logits --model "$TMP/extra_entry" --input-ids "$IDS" --out "$TMP/o.st" --quiet

cp -r "$TMP/sharded" "$TMP/bad_index"
printf '{"weight_map": ' >"$TMP/bad_index/model.safetensors.index.json"
expect_fail "index is not JSON" "bad_index/model.safetensors.index.json" \
    "$BIN" logits --model "$TMP/bad_index" --input-ids "$IDS" --out "$TMP/o.st" --quiet
