#!/bin/bash
# Progress lines tell the truth: the first comes at once (before any result), then every 2 s;
# tokens count only results back from the last stage, never go down, never pass the total, and the
# ETA is never "0s" while work remains; the last line has everything done.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
M=$TMP/model
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_model.py" "$M" --hidden 256 --layers 4 --inter 688 \
    --set beacon_window=128 --set 'beacon_stride=[128]' --set 'beacon_ratio=[8]'
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 60 900
# each stderr line with the seconds since the launch
$PYTHON - "$TMP/lines.txt" timeout -k 10 300 mpirun -np 2 "$BRT_BIN" run --model "$M" --pp 2 --max-jobs 4 \
    --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" <<'PY' || fail "the run failed"
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[2:], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
with open(sys.argv[1], "w") as f:
    for line in p.stderr:
        f.write("%.2f %s" % (time.monotonic() - t0, line))
sys.exit(p.wait())
PY
grep "progress:" "$TMP/lines.txt" >&2
$PYTHON - "$TMP/lines.txt" <<'PY' || fail "progress lines"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
start = next(float(l.split()[0]) for l in lines if "requests (" in l)
prog = [(float(l.split()[0]), l) for l in lines if "progress:" in l]
assert len(prog) >= 3, "want at least 3 progress lines (a run of several seconds), got %d" % len(prog)
first_t, first = prog[0]
assert "jobs 0/60 done, tokens 0/" in first and first_t - start < 2.0, (first_t - start, first)
last_td = 0
for t, l in prog:
    jd, jt, td, tt = map(int, re.search(r"jobs (\d+)/(\d+) done, tokens (\d+)/(\d+)", l).groups())
    assert jt == 60 and td <= tt and td >= last_td and jd <= jt, l
    assert not (td < tt and "ETA 0s" in l), l
    last_td = td
assert jd == 60 and td == tt, prog[-1]
gaps = [b[0] - a[0] for a, b in zip(prog, prog[1:-1])]
print("first line %.2fs after start; %d lines; gaps %s" % (first_t - start, len(prog), ["%.1f" % g for g in gaps]))
PY
echo "PASS"
