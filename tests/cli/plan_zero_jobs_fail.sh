#!/bin/bash
# When not one job of the document's length fits a stage's KV budget, plan and inspect say so in a
# warning line (the state one job needs and the budget) and exit 1; the table is still printed.
# With room for one job they exit 0.
. "$(dirname "$0")/../lib/common.sh"
M="$MODELS/stories260K"
# full attention keeps every token's K and V: 5 layers x 2 x 4 kv heads x 8 x 4 bytes = 1280 B per
# token; 400 tokens need 0.49 MiB over the whole model (pool blocks of 32 slots)
for cmd in plan inspect; do
    expect_fail "$cmd: no job fits a 0.1 MiB budget" \
        "warning: stage 0 (layers 0-4): one job of 400 tokens needs .* MiB of state, more than the stage's KV budget of 0.10 MiB: no job fits" \
        "$BRT_BIN" $cmd --model "$M" --doc-tokens 400 --kv-budget-mb 0.1
    [ "$rc" -eq 1 ] || fail "$cmd: exit $rc, expected 1"
    grep -qE "^0 +0-4 .* 0$" "$TMP/out.txt" || { cat "$TMP/out.txt"; fail "$cmd: the table does not show 0 jobs"; }
    # two stages: each holds half the layers; the warning names every stage that holds none
    expect_fail "$cmd: 2 stages, 0.1 MiB each" "warning: stage 1 (layers 3-4)" \
        "$BRT_BIN" $cmd --model "$M" --pp 2 --doc-tokens 400 --kv-budget-mb 0.1
    [ "$(grep -c "no job fits" "$TMP/err.txt")" -eq 2 ] || { cat "$TMP/err.txt"; fail "$cmd: not one warning per stage"; }
    set +e
    "$BRT_BIN" $cmd --model "$M" --doc-tokens 400 --kv-budget-mb 0.1 --json >"$TMP/o.json" 2>/dev/null
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "$cmd --json: exit $rc, expected 1"
    "$PYTHON" - "$TMP/o.json" <<'PY' || fail "$cmd --json: the zero is not reported"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["jobs_fit_per_pipeline"] == 0 and o["stages"][0]["jobs_fit"] == 0, o
assert any("no job fits" in w for w in o["warnings"]), o["warnings"]
PY
    "$BRT_BIN" $cmd --model "$M" --doc-tokens 400 --kv-budget-mb 1 >/dev/null 2>"$TMP/err.txt" ||
        { cat "$TMP/err.txt"; fail "$cmd: a 1 MiB budget holds one job, yet it failed"; }
    note "$cmd: 0 jobs in 0.1 MiB: warning and exit 1; 1 MiB: exit 0"
done
echo "PASS"
