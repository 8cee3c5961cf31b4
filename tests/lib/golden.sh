# Shared by tests/golden/<set>.sh (sourced after common.sh). One golden set = the official code's
# float32 outputs for a long input (prefix "") and a short one (prefix "short_"); see
# tests/data/golden/README.md. Usage:
#   golden_set SET [LONG_LOGITS_TOL] [EXTENDED]
# LONG_LOGITS_TOL: tolerance for the long input's logits (default 1e-4, the README's acceptance bound).
# EXTENDED: which inputs (long, short, "long short" or none) also get the prompt+continuation check
# (see golden_extended): only where the official code's one forward over prompt+continuation equals
# its token-by-token generation.

GOLDEN_TOL=1e-4
st_util() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/st_util.py" "$@"; }

# golden_input SET PREFIX TOL: logits at every position, the first generation score row, the beacon
# forward's returned rows, and the greedy ids.
golden_input() {
    local set_=$1 p=$2 tol=$3
    local dir="$GOLDEN/$set_"
    local gold="$dir/golden.safetensors" what rows
    [ -f "$gold" ] || fail "$gold is missing"
    what="$set_ ${p:-long_}input"
    note "$what: $(st_util dim "$gold:${p}input_ids" 1) tokens"

    # 1. logits of every position from one forward (the numerical contract)
    "$BRT_BIN" logits --model "$dir" --input-ids "$gold:${p}input_ids" --out "$TMP/${p}logits.safetensors" --quiet ||
        fail "$what: beaconrt logits failed"
    "$CHECK" tensors "$TMP/${p}logits.safetensors:logits" "$gold:${p}logits" "$tol" ||
        fail "$what: logits differ from the official code's (tolerance $tol)"

    # 2. the official generate picked its first token from gen_scores[:, 0], which is the forward's
    # last logits row: the runtime's last row must match it too
    st_util row "$gold:${p}gen_scores" "$TMP/${p}score0.safetensors:score0" 0 || fail "st_util row failed"
    "$CHECK" lastrows "$TMP/${p}logits.safetensors:logits" "$TMP/${p}score0.safetensors:score0" 1 "$tol" ||
        fail "$what: last logits row differs from the official first generation score row"

    # 3. beacon kinds: what the official forward itself returns (the last window's ordinal rows)
    rows=$(st_util dim "$gold:${p}returned_logits" 1)
    if [ "$rows" -gt 0 ]; then
        "$CHECK" lastrows "$TMP/${p}logits.safetensors:logits" "$gold:${p}returned_logits" "$rows" "$tol" ||
            fail "$what: the last $rows rows differ from the official forward's returned logits"
    fi

    # 4. greedy continuation: 16 tokens, EOS ignored (as the golden run), identical ids
    "$BRT_BIN" generate --model "$dir" --input-ids "$gold:${p}input_ids" -n 16 --greedy --ignore-eos --json --quiet \
        >"$TMP/${p}gen.json" || fail "$what: beaconrt generate failed"
    "$CHECK" ids "$TMP/${p}gen.json" "$gold:${p}generated_ids" || fail "$what: generated ids differ"
}

# golden_extended SET PREFIX: one forward over prompt + the first 15 generated tokens; its last 16
# rows are the logits the official generate scored its 16 tokens with (gen_scores). Checks every
# generation step's scores, not only the argmax.
golden_extended() {
    local set_=$1 p=$2
    local gold="$GOLDEN/$set_/golden.safetensors"
    st_util concat-ids "$TMP/${p}ext_ids.safetensors" "$gold:${p}input_ids" "$gold:${p}generated_ids" 15 ||
        fail "st_util concat-ids failed"
    "$BRT_BIN" logits --model "$GOLDEN/$set_" --input-ids "$TMP/${p}ext_ids.safetensors" \
        --out "$TMP/${p}ext.safetensors" --quiet || fail "$set_ ${p}: beaconrt logits (prompt+continuation) failed"
    "$CHECK" lastrows "$TMP/${p}ext.safetensors:logits" "$gold:${p}gen_scores" 16 "$GOLDEN_TOL" ||
        fail "$set_ ${p:-long_}input: prompt+continuation logits differ from the official generation scores"
}

golden_set() {
    local set_=$1 long_tol=${2:-$GOLDEN_TOL} ext=${3:-} e
    [ -x "$BRT_BIN" ] || fail "no beaconrt binary at $BRT_BIN"
    [ -x "$CHECK" ] || fail "no brt_check at $CHECK"
    golden_input "$set_" "" "$long_tol"
    golden_input "$set_" short_ "$GOLDEN_TOL"
    for e in $ext; do
        case $e in
        long) golden_extended "$set_" "" ;;
        short) golden_extended "$set_" short_ ;;
        *) fail "golden_set: bad EXTENDED '$e'" ;;
        esac
    done
    note "$set_: all checks passed"
}
