#!/bin/bash
# An independent numpy forward pass (tests/tools/ref_llama.py, HF Llama/Qwen2 semantics, float64) on
# random tiny float32 models, one per config feature; all-position logits of a 100-token input must
# agree within 1e-4, for each instruction set the machine has. Each case also runs negative controls:
# the reference recomputed with the feature ignored, defaulted or implemented the common wrong way must
# differ by far more than 1e-4, so a runtime that did not read the field could not pass. `beaconrt
# inspect` must show the configured values.
. "$(dirname "$0")/../lib/common.sh"
ref() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/ref_llama.py" "$@"; }
TOL=1e-4

isas=""
for isa in generic avx2 avx512; do
    if "$BRT_BIN" logits --model "$GOLDEN/llama-tiny" --input-ids "$GOLDEN/llama-tiny/golden.safetensors:short_input_ids" \
        --out "$TMP/probe.st" --quiet --isa "$isa" 2>"$TMP/err.txt"; then
        isas="$isas $isa"
    else
        grep -q "not available here" "$TMP/err.txt" || { cat "$TMP/err.txt"; fail "--isa $isa failed"; }
    fi
done
[ -n "$isas" ] || fail "no instruction set available"
note "instruction sets:$isas"

# The reference itself first: it must reproduce the official transformers outputs on llama-tiny (MHA,
# separate lm_head; golden short input) and on stories260K (GQA 8/4, tied embeddings; reference.json's
# 300-token prompt, last position)
ref forward "$GOLDEN/llama-tiny" "$GOLDEN/llama-tiny/golden.safetensors:short_input_ids" "$TMP/ref_llama_tiny.st" ||
    fail "ref_llama forward failed"
"$CHECK" tensors "$TMP/ref_llama_tiny.st:logits" "$GOLDEN/llama-tiny/golden.safetensors:short_logits" "$TOL" ||
    fail "the numpy reference does not reproduce transformers on llama-tiny"
"$PYTHON" "$BRT_SOURCE_DIR/tests/tools/st_util.py" ids-json "$TMP/s_ids.st" "$MODELS/stories260K/reference.json" long_prompt.input_ids
"$PYTHON" "$BRT_SOURCE_DIR/tests/tools/st_util.py" vec-json "$TMP/s_last.st:last" "$MODELS/stories260K/reference.json" long_prompt.logits_last
ref forward "$MODELS/stories260K" "$TMP/s_ids.st:input_ids" "$TMP/ref_stories.st" || fail "ref_llama forward failed"
"$CHECK" lastrows "$TMP/ref_stories.st:logits" "$TMP/s_last.st:last" 1 "$TOL" ||
    fail "the numpy reference does not reproduce transformers on stories260K"

# control NAME KEY=JSON: the reference with that change must move the logits by more than 100 x TOL
control() {
    local c
    c=$(ref control "$TMP/$1" "$2") || fail "$1: control $2 failed"
    "$PYTHON" -c "import sys; sys.exit(0 if float(sys.argv[1]) > 100 * $TOL else 1)" "$c" ||
        fail "$1: negative control $2 moves the logits by only $c: the case cannot tell"
    note "$1: control $2 differs by $c"
}

# case_ NAME "inspect pattern" -- make options...
case_() {
    local name=$1 want=$2 isa
    shift 3
    local d="$TMP/$name"
    ref make "$d" "$@" || fail "$name: ref_llama make failed"
    "$BRT_BIN" inspect --model "$d" >"$TMP/inspect.txt" 2>&1 || { cat "$TMP/inspect.txt"; fail "$name: inspect refused the config"; }
    grep -q -- "$want" "$TMP/inspect.txt" || { cat "$TMP/inspect.txt"; fail "$name: inspect does not show '$want'"; }
    for isa in $isas; do
        "$BRT_BIN" logits --model "$d" --input-ids "$d/ids.safetensors" --out "$d/out.$isa.st" --quiet --isa "$isa" ||
            fail "$name: beaconrt logits --isa $isa failed"
        "$CHECK" tensors "$d/out.$isa.st:logits" "$d/ref.safetensors:logits" "$TOL" ||
            fail "$name ($isa): logits differ from the numpy reference"
    done
    note "$name: matches the reference"
}

# GQA: 4 query heads share 2 kv heads. Controls: query head h reading kv head h % 2 instead of h // 2;
# llama2.c-style adjacent-pair RoPE instead of HF's rotate_half
case_ gqa "4 heads (2 kv, head dim 16)" -- --kv-heads 2 --seed 11
control gqa '_kv_map="mod"'
control gqa '_rope="adjacent"'
# tied embeddings: no lm_head.weight in the file, the classifier is the embedding matrix (a runtime
# ignoring the flag misses lm_head.weight). Embeddings at std 0.5 keep |logits| near 10.
case_ tied "tied embeddings yes" -- --tie --kv-heads 2 --embed-std 0.5 --seed 12
# rope_theta 500000 (Llama 3); control: the default 10000
case_ rope_theta "rope theta 500000" -- --theta 500000 --seed 13
control rope_theta rope_theta=10000
# rms_norm_eps 1e-6; small embeddings (mean x^2 ~ 1e-5) so that eps matters; control: llama2's 1e-5
case_ rms_eps_1e-6 "rms eps 1e-06" -- --eps 1e-6 --embed-std 0.003 --seed 14
control rms_eps_1e-6 rms_norm_eps=1e-5
# rms_norm_eps 1e-3: not the parser's default (1e-6) either; control: 1e-6
case_ rms_eps_1e-3 "rms eps 0.001" -- --eps 1e-3 --embed-std 0.03 --seed 15
control rms_eps_1e-3 rms_norm_eps=1e-6
# Llama attention_bias: q, k, v and o biases; controls: o bias dropped, q/k/v biases dropped
case_ llama_bias "q/k/v bias yes" -- --attention-bias --seed 16
control llama_bias '_no_bias=["o"]'
control llama_bias '_no_bias=["q","k","v"]'
# Qwen2: q, k, v biases, no o bias (the file has none), GQA; control: biases dropped
case_ qwen2 "qwen2: 2 layers" -- --model-type qwen2 --kv-heads 2 --seed 17
control qwen2 '_no_bias=["q","k","v"]'
# head dim 100 (hidden 200, 2 heads): a head size no SIMD width divides; control: all 50 RoPE
# frequencies matter (theta changed)
case_ head_dim_100 "2 heads (2 kv, head dim 100)" -- --hidden 200 --heads 2 --seed 18
control head_dim_100 rope_theta=20000
# explicit head_dim 48 != hidden/heads (64/4 = 16): q_proj [192, 64], o_proj [64, 192]
case_ head_dim_48 "4 heads (2 kv, head dim 48)" -- --head-dim 48 --kv-heads 2 --seed 19
control head_dim_48 '_kv_map="mod"'
# Llama-3.1 RoPE scaling (rope_type llama3): an original context of 32 so that the 100 positions
# reach the rescaled and blended frequencies; control: no scaling
case_ rope_llama3 "llama3 scaling" -- --seed 20 --theta 500000 \
    --rope-scaling '{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}'
control rope_llama3 rope_scaling=null
# linear RoPE scaling: positions divided by the factor; control: no scaling
case_ rope_linear "linear scaling" -- --seed 21 --rope-scaling '{"type": "linear", "factor": 4.0}'
control rope_linear rope_scaling=null
echo "PASS"
