#!/bin/bash
# plan --ranks N lays N ranks out itself: pp x dp = N with the fewest pipeline stages whose weights
# (and, given a document length, one job) fit, the other ranks replicas, and says which --pp/--dp
# to run with. --ranks overrides the preset's parallel section (a 4 x 4 preset planned for 8 ranks
# is not an error about --pp/--dp flags nobody typed); --pp/--dp typed on the command line still
# win and are checked against the ranks.
. "$(dirname "$0")/../lib/common.sh"
P=$BRT_SOURCE_DIR/configs/llama2-7b-beacon-2x8-a800.json # 16 ranks = 4 stages x 4 replicas, 80 GiB GPUs

grid() { # grid OUT.json args...: plan --json, prints "pp dp ranks"
    local out=$1
    shift
    "$BRT_BIN" plan --config "$P" "$@" --json >"$out" 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "plan $*: failed"; }
    grep -q -- "--pp\|--dp" "$TMP/err.txt" && { cat "$TMP/err.txt"; fail "plan $*: complains about flags"; }
    "$PYTHON" -c 'import json,sys; o=json.load(open(sys.argv[1])); print(o["pp"], o["dp"], o["ranks"])' "$out"
}
# the preset as it is: its own grid
[ "$(grid "$TMP/a.json")" = "4 4 16" ] || fail "the preset's grid is not 4 x 4"
# 8 ranks of 80 GiB GPUs: the 7B model's weights fit one GPU: 1 stage x 8 replicas
[ "$(grid "$TMP/b.json" --ranks 8)" = "1 8 8" ] || { cat "$TMP/b.json"; fail "--ranks 8 (80 GiB): not 1 x 8"; }
# 16 GiB GPUs: 12.6 GiB of weights need 2 stages; then 4 replicas
[ "$(grid "$TMP/c.json" --ranks 8 --gpu-mem-gb 16)" = "2 4 8" ] || { cat "$TMP/c.json"; fail "--ranks 8 (16 GiB): not 2 x 4"; }
grep -q '"grid": ".*--pp 2 --dp 4' "$TMP/c.json" || fail "plan does not say which --pp/--dp to run with"
# with a document, a stage must also hold one job: on 13 GiB GPUs 2 stages hold the weights, but the
# ~0.45 GiB they leave holds no 390K-token job (1.1 GiB of state per stage): 4 stages
[ "$(grid "$TMP/d0.json" --ranks 8 --gpu-mem-gb 13)" = "2 4 8" ] || { cat "$TMP/d0.json"; fail "--ranks 8 (13 GiB): not 2 x 4"; }
[ "$(grid "$TMP/d.json" --ranks 8 --gpu-mem-gb 13 --doc-tokens 390K)" = "4 2 8" ] ||
    { cat "$TMP/d.json"; fail "--ranks 8 (13 GiB, 390K tokens): not 4 x 2"; }
"$PYTHON" - "$TMP/d.json" <<'PY' || fail "the chosen grid does not hold a job on every stage"
import json, sys
o = json.load(open(sys.argv[1]))
assert all(s["jobs_fit"] >= 1 for s in o["stages"]), o["stages"]
PY
note "--ranks 8: 1 x 8 on 80 GiB, 2 x 4 on 16 GiB, 2 x 4 on 13 GiB but 4 x 2 with a 390K-token job"
# typed flags win, and are checked
[ "$(grid "$TMP/e.json" --ranks 8 --pp 4)" = "4 2 8" ] || fail "--ranks 8 --pp 4 is not 4 x 2"
[ "$(grid "$TMP/f.json" --ranks 8 --dp 8)" = "1 8 8" ] || fail "--ranks 8 --dp 8 is not 1 x 8"
expect_fail "--ranks 8 --pp 3" "--pp 3 does not divide the 8 ranks" "$BRT_BIN" plan --config "$P" --ranks 8 --pp 3
[ "$rc" -eq 2 ] || fail "--ranks 8 --pp 3: exit $rc, expected 2"
expect_fail "--ranks 8 --pp 2 --dp 2" "--pp 2 x --dp 2 does not match the 8 ranks" \
    "$BRT_BIN" plan --config "$P" --ranks 8 --pp 2 --dp 2
# no split fits (4 GiB GPUs): the most stages, with a warning, exit 1
expect_fail "--ranks 8 on 4 GiB GPUs" "warning: stage 0 .* leave less than 256 MiB" \
    "$BRT_BIN" plan --config "$P" --ranks 8 --gpu-mem-gb 4
[ "$rc" -eq 1 ] || fail "no fitting grid: exit $rc, expected 1"
grep -q "no split of 8 ranks fits" "$TMP/out.txt" || { cat "$TMP/out.txt"; fail "plan does not say no split fits"; }
echo "PASS"
