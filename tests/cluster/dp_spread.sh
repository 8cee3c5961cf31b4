#!/bin/bash
# Jobs are spread over the data-parallel replicas: a 4-replica run of 50 documents gives every
# replica work, within 50% of the mean in tokens (admission sends each job to the replica with the
# least work left, not the first with a free slot), and the results are those of one rank. On the
# example batch with 2 stages x 2 replicas, both replicas get work within 20% in tokens and every
# rank computes (busy fractions are printed, not asserted: 4 ranks on this 2-core machine make them
# a measure of CPU contention, not of the scheduler).
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

# the example batch on 2 stages x 2 replicas: equal work per replica, the outputs of one rank
EX=$BRT_SOURCE_DIR/examples/long-docs.jsonl
CFG=$BRT_SOURCE_DIR/configs/stories260k-beacon-laptop.json
"$BRT_BIN" run --config "$CFG" --input "$EX" --output "$TMP/ex1.jsonl" --quiet
brt_mpirun 4 run --config "$CFG" --pp 2 --dp 2 --input "$EX" --output "$TMP/ex4.jsonl" 2>"$TMP/err4.txt" ||
    { cat "$TMP/err4.txt"; fail "the 2 x 2 run failed"; }
grep "busy" "$TMP/err4.txt" >&2
$PYTHON - "$TMP/err4.txt" <<'PY' || fail "the two replicas did not get equal work"
import re, sys
text = open(sys.argv[1]).read()
toks = [int(t) for t in re.findall(r"replica \d+: (\d+) tokens", text)]
assert len(toks) == 2 and min(toks) >= 0.8 * max(toks), toks
busy = re.findall(r"pipeline (\d+), stage (\d+)\): busy ([\d.]+)%", text)
assert len(busy) == 4 and all(float(b) > 0 for _, _, b in busy), busy
print("tokens per replica:", toks, "; busy % (pipeline, stage, %):", busy)
PY
cmp -s <($NORM "$TMP/ex1.jsonl" 6) <($NORM "$TMP/ex4.jsonl" 6) || fail "2 x 2 gives other results than one rank on the example batch"
echo "PASS"
