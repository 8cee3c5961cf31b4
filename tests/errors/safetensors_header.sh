#!/bin/bash
# Corrupt or lying safetensors headers: not JSON, a length field larger than the file, data_offsets past
# the end of the data, a byte count that disagrees with dtype x shape, overlapping tensors, an unknown
# dtype. Each must be refused naming the file and (where there is one) the tensor.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/errors.sh"
run_logits() { asan_fail "$1" "$2" logits --model "$3" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet; }

d=$(llama_copy not_json)
mangle header-not-json "$LLAMA/model.safetensors" "$d/model.safetensors"
run_logits "header is not JSON" "not_json/model.safetensors: safetensors header is not valid JSON" "$d"

d=$(llama_copy len_big)
mangle header-len-big "$LLAMA/model.safetensors" "$d/model.safetensors"
run_logits "header length field larger than the file" "len_big/model.safetensors: header length [0-9]* does not fit" "$d"

d=$(llama_copy past_end)
mangle offsets-past-end "$LLAMA/model.safetensors" "$d/model.safetensors" model.norm.weight
run_logits "data_offsets past the end of the data" \
    "past_end/model.safetensors: tensor 'model.norm.weight': data_offsets end [0-9]* is past the end" "$d"

d=$(llama_copy bytecount)
mangle bytecount "$LLAMA/model.safetensors" "$d/model.safetensors" model.layers.2.self_attn.v_proj.weight
run_logits "byte count disagrees with dtype x shape" \
    "bytecount/model.safetensors: tensor 'model.layers.2.self_attn.v_proj.weight': .*16380 bytes.*16384" "$d"

d=$(llama_copy overlap)
mangle overlap "$LLAMA/model.safetensors" "$d/model.safetensors" \
    model.layers.0.self_attn.q_proj.weight model.layers.0.self_attn.k_proj.weight
run_logits "overlapping tensors" \
    "overlap/model.safetensors: tensors 'model.layers.0.self_attn.q_proj.weight' and 'model.layers.0.self_attn.k_proj.weight' overlap" "$d"

d=$(llama_copy dtype)
mangle dtype "$LLAMA/model.safetensors" "$d/model.safetensors" model.layers.1.self_attn.o_proj.weight F8_E4M3
run_logits "unknown dtype" \
    "dtype/model.safetensors: tensor 'model.layers.1.self_attn.o_proj.weight': unknown dtype 'F8_E4M3'" "$d"

# a known dtype that is no weight dtype (I32 has the same byte count as F32)
d=$(llama_copy int_weight)
mangle dtype "$LLAMA/model.safetensors" "$d/model.safetensors" model.layers.1.self_attn.o_proj.weight I32
run_logits "integer weight tensor" \
    "int_weight/model.safetensors: tensor 'model.layers.1.self_attn.o_proj.weight' is I32; weights must be F32, F16 or BF16" "$d"

# not an error: a valid file whose tensors are not 4-byte aligned in the mapping (the header length
# is not a multiple of 8; safetensors does not require padding). Must load and compute the same
# logits, with no sanitizer report about misaligned loads.
d=$(llama_copy unaligned)
mangle header-unaligned "$LLAMA/model.safetensors" "$d/model.safetensors"
asan_ok "tensor data not 4-byte aligned" logits --model "$d" --input-ids "$IDS" --out "$TMP/unaligned.st" --quiet
"$CHECK" tensors "$TMP/unaligned.st:logits" "$LLAMA/golden.safetensors:short_logits" 1e-4 ||
    fail "unaligned tensor data gives wrong logits"
