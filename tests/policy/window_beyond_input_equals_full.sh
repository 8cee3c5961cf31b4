#!/usr/bin/env bash
# A long-context policy whose window covers the whole input is plain causal attention, so
# through the command line (beaconrt logits with the policy flags):
#   beacon-tiny --beacon-window 1024 (700-token input)                 == --policy full
#   longllama-tiny --set max_position_embeddings=1024 --last-context-length 1024 == --policy full
#                                                                      == llama-tiny golden logits
# --policy full is run twice: on the folder as it is (what a user types; refused today, see
# the report) and with the folder's own beacon_*/mem_* fields nulled (so the numbers are checked
# either way). All checks run; the test fails if any failed.
. "$(dirname "$0")/../lib/common.sh"

G="$GOLDEN"
RUN=("$BRT_BIN" logits --quiet --threads 2)
failures=()

run_logits() { # out model args...
    local out=$1 model=$2; shift 2
    if ! "${RUN[@]}" --model "$G/$model" --input-ids "$G/$model/golden.safetensors" --out "$out" "$@" \
        2>"$TMP/err.txt"; then
        cat "$TMP/err.txt" >&2
        return 1
    fi
}

compare() { # what A B tol
    local what=$1
    if "$CHECK" tensors "$2" "$3" "$4"; then note "$what: ok"; else failures+=("$what"); fi
}

# --- beacon v1, window larger than the input ------------------------------------------------
run_logits "$TMP/beacon_w1024.st" beacon-tiny --beacon-window 1024 || failures+=("beacon-tiny --beacon-window 1024 runs")
run_logits "$TMP/beacon_full_nulls.st" beacon-tiny --policy full --set beacon_stride=null --set beacon_attn=null \
    --set beacon_param=null --set beacon_ratio_mix=null --set beacon_attend_previous=null ||
    failures+=("beacon-tiny --policy full (fields nulled) runs")
compare "beacon window 1024 == full policy (fields nulled)" "$TMP/beacon_w1024.st:logits" \
    "$TMP/beacon_full_nulls.st:logits" 1e-5
if run_logits "$TMP/beacon_full.st" beacon-tiny --policy full; then
    compare "beacon window 1024 == --policy full" "$TMP/beacon_w1024.st:logits" "$TMP/beacon_full.st:logits" 1e-5
else
    failures+=("beaconrt logits --model beacon-tiny --policy full is refused")
fi

# --- FoT, context larger than the input -------------------------------------------------------
run_logits "$TMP/fot_big.st" longllama-tiny --set max_position_embeddings=1024 --last-context-length 1024 ||
    failures+=("longllama-tiny with a 1024 context runs")
compare "FoT context 1024 == llama-tiny golden" "$TMP/fot_big.st:logits" "$G/llama-tiny/golden.safetensors:logits" 1e-4
run_logits "$TMP/fot_full_nulls.st" longllama-tiny --policy full --set mem_dtype=null --set mem_positionals=null ||
    failures+=("longllama-tiny --policy full (fields nulled) runs")
compare "FoT context 1024 == full policy (fields nulled)" "$TMP/fot_big.st:logits" "$TMP/fot_full_nulls.st:logits" 1e-5
if run_logits "$TMP/fot_full.st" longllama-tiny --policy full; then
    compare "FoT context 1024 == --policy full" "$TMP/fot_big.st:logits" "$TMP/fot_full.st:logits" 1e-5
else
    failures+=("beaconrt logits --model longllama-tiny --policy full is refused")
fi

if [ ${#failures[@]} -gt 0 ]; then
    for f in "${failures[@]}"; do echo "FAIL: $f" >&2; done
    exit 1
fi
note "all window-beyond-input checks passed"
