#!/bin/bash
# The wavefront: with two pipeline stages and ONE long document, stage 0 starts window k+1 as soon
# as window k has left it, so stage 1 works on window k while stage 0 works on window k+1. Checked
# from the ranks' own timestamps (--trace: every rank records when it ran each micro-batch, on the
# node's monotonic clock), not from wall time.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"

M=$TMP/model
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_model.py" "$M" --hidden 512 --layers 8 --inter 1376 \
    --set beacon_window=128 --set 'beacon_stride=[128]' --set 'beacon_ratio=[8]'
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 1 3000
brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --pp 2 --threads 1 --trace "$TMP/trace.jsonl" \
    --quiet 2>"$TMP/err" || { cat "$TMP/err"; fail "the run failed"; }
$PYTHON - "$TMP/trace.jsonl" <<'PY' || fail "no wavefront"
import json, sys
ranks = {t["stage"]: t for t in map(json.loads, open(sys.argv[1]))}
def steps(stage):  # step index -> (t0, t1) for the one job
    out = {}
    for e in ranks[stage]["events"]:
        for job, step in e["steps"]:
            out[step] = (e["t0"], e["t1"])
    return out
s0, s1 = steps(0), steps(1)
assert set(s0) == set(s1) and len(s0) > 10, (len(s0), len(s1))
# stage 0 starts window k+1 before stage 1 has finished window k (it may run further ahead when
# it is the faster stage: that is the wavefront too)
overlap = [k for k in s1 if k + 1 in s0 and s0[k + 1][0] < s1[k][1]]
# windows must also leave stage 0 in order and reach stage 1 only after leaving stage 0
assert all(s0[k][1] <= s1[k][0] + 1e-6 for k in s0), "a window ran on stage 1 before stage 0 finished it"
print(f"{len(s0)} steps of one document; stage 0 started window k+1 before stage 1 finished window k for {len(overlap)} of them")
assert len(overlap) >= len(s0) // 2, "stage 0 waited for stage 1 instead of starting the next window"
for t in ranks.values():
    print(f"stage {t['stage']}: busy {t['busy_s']:.2f}s of {t['wall_s']:.2f}s")
PY
echo "PASS"
