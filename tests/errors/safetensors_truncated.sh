#!/bin/bash
# A model.safetensors cut short (interrupted download/copy): in the middle of the tensor data, and in
# the middle of the JSON header. Both commands must refuse it naming the file (and the first tensor
# whose data is missing), never read past the mapping.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/errors.sh"

d=$(llama_copy cut_data)
mangle truncate-data "$LLAMA/model.safetensors" "$d/model.safetensors"
asan_fail "logits, file cut in the middle of the data" \
    "cut_data/model.safetensors: tensor '[^']*': data_offsets end [0-9]* is past the end" \
    logits --model "$d" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet
asan_fail "generate, file cut in the middle of the data" "cut_data/model.safetensors: tensor '.*truncated" \
    generate --model "$d" --input-ids "$IDS" -n 2 --quiet
[ ! -e "$TMP/o.safetensors" ] || fail "logits wrote an output file for a truncated model"

d=$(llama_copy cut_header)
mangle truncate-header "$LLAMA/model.safetensors" "$d/model.safetensors"
asan_fail "logits, file cut in the middle of the header" \
    "cut_header/model.safetensors: header length [0-9]* does not fit in the file" \
    logits --model "$d" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet
asan_fail "inspect, file cut in the middle of the header" "cut_header/model.safetensors: header length" \
    inspect --model "$d"
