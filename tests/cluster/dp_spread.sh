#!/bin/bash
# Jobs are spread over the data-parallel replicas: a 4-replica run of 50 documents gives every
# replica work, within 50% of the mean in tokens (admission sends each job to the replica with the
# least work left, not the first with a free slot), and the results are those of one rank.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
M=$MODELS/stories260K
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 50 40
"$BRT_BIN" run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --quiet
brt_mpirun 4 run --model "$M" --dp 4 --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" 2>"$TMP/err.txt" ||
    { cat "$TMP/err.txt"; fail "the 4-replica run failed"; }
grep "replica" "$TMP/err.txt" >&2
$PYTHON - "$TMP/err.txt" <<'PY' || fail "the replicas' work is uneven"
import re, sys
toks = [int(t) for t in re.findall(r"replica \d+: (\d+) tokens", open(sys.argv[1]).read())]
assert len(toks) == 4, toks
mean = sum(toks) / 4
assert all(t > 0.5 * mean for t in toks) and max(toks) < 1.5 * mean, toks
print("tokens per replica:", toks)
PY
cmp -s <($NORM "$TMP/ref.jsonl" 50) <($NORM "$TMP/out.jsonl" 50) || fail "4 replicas give other results than one rank"
echo "PASS"
