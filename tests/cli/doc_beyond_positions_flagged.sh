#!/bin/bash
# A document longer than the policy can position is flagged by plan and inspect before it runs: a
# warning line naming the positions it needs and the model's limit, exit 1. The need is the
# planner's own (the highest position id any step gives, + 1, the last generated token included):
#  - Activation Beacon Llama-2 (4096 positions, window 1024, adaptive ratios up to 128): 400K tokens
#    need 4137 positions (3112 beacons of 389 windows + the last full window's 1024 tokens and its
#    last beacon at +1024); 390K fit;
#  - full attention: prompt + max_tokens must fit max_position_embeddings (512 for stories260K);
#  - LongLLaMA: the local context (last_context_length) must fit max_position_embeddings.
. "$(dirname "$0")/../lib/common.sh"
CFG=$BRT_SOURCE_DIR/configs
M="$MODELS/stories260K"

# expect_warn "what" need limit cmd...: exit 1, a warning naming both numbers
expect_warn() {
    what=$1 need=$2 limit=$3
    shift 3
    expect_fail "$what" "warning: .*needs $need positions .*the model's $limit (max_position_embeddings)" "$@"
    [ "$rc" -eq 1 ] || fail "$what: exit $rc, expected 1"
    [ "$(grep -c "warning:" "$TMP/err.txt")" -eq 1 ] || { cat "$TMP/err.txt"; fail "$what: not one warning line"; }
}
expect_ok() {
    what=$1
    shift
    "$@" >"$TMP/ok.txt" 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "$what: failed"; }
    grep -q "warning" "$TMP/err.txt" && { cat "$TMP/err.txt"; fail "$what: warned"; }
    note "$what: exit 0"
}

for cmd in plan inspect; do
    expect_warn "$cmd: 400K on beacon Llama-2" 4137 4096 "$BRT_BIN" $cmd --config "$CFG/llama2-7b-beacon-2x8-a800.json" --doc-tokens 400K
    expect_ok "$cmd: 390K on beacon Llama-2" "$BRT_BIN" $cmd --config "$CFG/llama2-7b-beacon-2x8-a800.json" --doc-tokens 390K
    # the JSON carries the need and the limit, and the warning
    set +e
    "$BRT_BIN" $cmd --config "$CFG/llama2-7b-beacon-2x8-a800.json" --doc-tokens 400K --json >"$TMP/o.json" 2>/dev/null
    set -e
    "$PYTHON" - "$TMP/o.json" <<'PY' || fail "$cmd --json: no positions figures"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["positions_needed"] == 4137 and o["positions_limit"] == 4096, o
assert len(o["warnings"]) == 1 and "4137 positions" in o["warnings"][0], o["warnings"]
PY
    # full attention: 500 + 12 = 512 fits, 500 + 13 does not
    expect_ok "$cmd: full, 500 + 12 tokens" "$BRT_BIN" $cmd --model "$M" --doc-tokens 500 --max-tokens 12
    expect_warn "$cmd: full, 500 + 13 tokens" 513 512 "$BRT_BIN" $cmd --model "$M" --doc-tokens 500 --max-tokens 13
    # LongLLaMA 3B (2048 positions): any length with its 1024-token local context; 4096 does not fit
    expect_ok "$cmd: fot, 100K" "$BRT_BIN" $cmd --config "$CFG/long-llama-3b-fot-1x8.json" --doc-tokens 100K
    expect_warn "$cmd: fot, last_context_length 4096" 4096 2048 \
        "$BRT_BIN" $cmd --config "$CFG/long-llama-3b-fot-1x8.json" --doc-tokens 100K --last-context-length 4096
done
echo "PASS"
