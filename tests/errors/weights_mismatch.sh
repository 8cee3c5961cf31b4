#!/bin/bash
# Weights that do not fit the config: a missing tensor, a tensor with the wrong shape, a config whose
# intermediate_size disagrees with the checkpoint, and a tensor that belongs to no layer of the config.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/errors.sh"
run_logits() { asan_fail "$1" "$2" logits --model "$3" --input-ids "$IDS" --out "$TMP/o.safetensors" --quiet; }

d=$(llama_copy missing)
mangle drop "$LLAMA/model.safetensors" "$d/model.safetensors" model.layers.1.mlp.up_proj.weight
run_logits "missing tensor" \
    "tensor 'model.layers.1.mlp.up_proj.weight' is missing from the checkpoint (.*missing/model.safetensors" "$d"
asan_fail "missing tensor (generate)" "tensor 'model.layers.1.mlp.up_proj.weight' is missing" \
    generate --model "$d" --input-ids "$IDS" -n 2 --quiet

d=$(llama_copy shape)
mangle shape "$LLAMA/model.safetensors" "$d/model.safetensors" model.layers.2.mlp.down_proj.weight 172,64
run_logits "tensor with a transposed shape" \
    "shape/model.safetensors: tensor 'model.layers.2.mlp.down_proj.weight' has shape \[172, 64\], the config needs \[64, 172\]" "$d"

d=$(llama_copy inter)
mangle config "$LLAMA/config.json" "$d/config.json" intermediate_size=128
run_logits "config intermediate_size disagrees with the weights" \
    "inter/model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[172, 64\], the config needs \[128, 64\]" "$d"

# the checkpoint has 3 layers; a config with 2 must not silently ignore layer 2's tensors
d=$(llama_copy layers)
mangle config "$LLAMA/config.json" "$d/config.json" num_hidden_layers=2
run_logits "checkpoint has a layer the config does not" \
    "layers/model.safetensors: tensor 'model.layers.2\..*' is not part of a 2-layer llama model" "$d"
