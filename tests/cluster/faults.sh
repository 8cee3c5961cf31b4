#!/bin/bash
# Faults: (1) bad lines and a prompt longer than the policy allows become error lines for those
# requests alone, the rest completes; (2) kill -9 of a rank mid-batch ends the run within seconds
# with a message naming the rank, and rerunning the same command completes the batch with every
# request exactly once and the same results as an undisturbed run; (3) the same when the killed
# rank is the coordinator; (4) a torn last line is cut and that request redone; (5) an output that
# cannot be written (a file size limit) stops the run at once instead of computing results that
# would be lost, and the rerun finishes it.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"

# ---- (1) bad requests fail alone ----
S=$MODELS/stories260K
long=$($PYTHON -c "print(' '.join(['Lily played with the big red ball in the park.'] * 60))")
{
    echo '{"custom_id": "ok-1", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}}'
    echo '{"custom_id": "broken", "method": "POST", "url": "/v1/com'
    echo '{"custom_id": "unknown-field", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", "frobnicate": 1}}'
    echo "{\"custom_id\": \"too-long\", \"method\": \"POST\", \"url\": \"/v1/completions\", \"body\": {\"prompt\": \"$long\", \"max_tokens\": 8}}"
    echo '{"custom_id": "bad-token", "method": "POST", "url": "/v1/completions", "body": {"prompt": [1, 99999, 5], "max_tokens": 4}}'
    echo '{"custom_id": "ok-2", "method": "POST", "url": "/v1/completions", "body": {"prompt": "The dog", "max_tokens": 8, "temperature": 0}}'
} > "$TMP/bad.jsonl"
brt_mpirun 2 run --model "$S" --input "$TMP/bad.jsonl" --output "$TMP/bad-out.jsonl" --quiet 2>"$TMP/err" || { cat "$TMP/err"; fail "a run with bad requests failed as a whole"; }
$PYTHON - "$TMP/bad-out.jsonl" <<'PY' || fail "bad requests were not isolated"
import json, sys
rows = {json.loads(l)["custom_id"]: json.loads(l) for l in open(sys.argv[1])}
assert len(rows) == 6, sorted(rows)
for ok in ("ok-1", "ok-2"):
    assert rows[ok]["error"] is None and rows[ok]["response"]["status_code"] == 200, rows[ok]
want = {"line-2": "invalid JSON", "unknown-field": "frobnicate", "too-long": "exceeds the model's context",
        "bad-token": "out of the vocabulary"}
for cid, text in want.items():
    e = rows[cid]["error"]
    assert e and text in e["message"] and rows[cid]["response"] is None, (cid, e)
    print(f"{cid}: {e['code']}: {e['message'][:100]}")
PY

# ---- (2)-(4) a batch long enough to kill in the middle ----
M=$TMP/model
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_model.py" "$M" --hidden 256 --layers 4 --inter 688 \
    --set beacon_window=128 --set 'beacon_stride=[128]' --set 'beacon_ratio=[8]'
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 24 900
N=$(wc -l < "$TMP/in.jsonl")
brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --pp 2 --max-jobs 2 --quiet 2>/dev/null || fail "reference run"
$NORM "$TMP/ref.jsonl" "$N" > "$TMP/ref.norm"

rank_pid() { # pid of world rank $1 of the beaconrt run writing $2
    for p in $(pgrep -f "beaconrt run .*$2" || true); do
        if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$p"; return; fi
    done
}

kill_mid_run() { # kill -9 world rank $1 after some results are out; the run must end quickly
    rank=$1; out=$TMP/out.jsonl
    rm -f "$out"
    ( if brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$out" --pp 2 --max-jobs 2 --quiet >"$TMP/kill.out" 2>"$TMP/kill.err"
      then echo 0 > "$TMP/kill.rc"; else echo $? > "$TMP/kill.rc"; fi ) &
    bg=$!
    for _ in $(seq 1 600); do
        [ -s "$out" ] && [ "$(wc -l < "$out")" -ge 3 ] && break
        sleep 0.1
    done
    [ "$(wc -l < "$out")" -lt "$N" ] || fail "the batch finished before the kill"
    pid=$(rank_pid "$rank" "$out")
    [ -n "$pid" ] || fail "cannot find rank $rank"
    t0=$(date +%s.%N)
    kill -9 "$pid"
    wait "$bg" || true
    dt=$($PYTHON -c "import sys; print(round($(date +%s.%N) - $t0, 1))")
    rc=$(cat "$TMP/kill.rc")
    [ "$rc" -ne 0 ] || fail "the run exited 0 after rank $rank was killed"
    $PYTHON -c "import sys; sys.exit(0 if $dt < 30 else 1)" || fail "the run took ${dt}s to end after the kill"
    grep -q "process rank $rank .*signal 9" "$TMP/kill.err" || { cat "$TMP/kill.err"; fail "no message naming rank $rank"; }
    note "kill -9 of rank $rank after $(wc -l < "$out") of $N results: the run ended in ${dt}s (exit $rc): $(grep -m1 "process rank $rank" "$TMP/kill.err")"
    # rerun the same command: it resumes from the journal
    brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$out" --pp 2 --max-jobs 2 2>"$TMP/resume.err" || { cat "$TMP/resume.err"; fail "the rerun failed"; }
    grep -q "already answered" "$TMP/resume.err" || fail "the rerun did not resume from the output"
    $NORM "$out" "$N" > "$TMP/out.norm" || fail "after the rerun: missing or duplicated requests"
    cmp -s "$TMP/ref.norm" "$TMP/out.norm" || fail "the resumed batch differs from the undisturbed run"
    note "rerun: all $N requests exactly once, equal to the undisturbed run"
}
kill_mid_run 1
kill_mid_run 0

# ---- (4) a torn last line ----
head -n $((N - 1)) "$TMP/ref.jsonl" > "$TMP/torn.jsonl"
tail -n 1 "$TMP/ref.jsonl" | head -c 120 >> "$TMP/torn.jsonl"
brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/torn.jsonl" --pp 2 --max-jobs 2 2>"$TMP/torn.err" || { cat "$TMP/torn.err"; fail "rerun over a torn line"; }
grep -q "torn last line" "$TMP/torn.err" || fail "the torn line was not reported"
$NORM "$TMP/torn.jsonl" "$N" > "$TMP/torn.norm" || fail "torn line: missing or duplicated requests"
cmp -s "$TMP/ref.norm" "$TMP/torn.norm" || fail "the redone request differs"
note "a torn last line was cut and its request redone"

# ---- (5) the output cannot be written ----
# A 3 KiB file size limit (SIGXFSZ ignored, so write() fails with EFBIG) lets a few results in.
# With --max-jobs 2 at most the two jobs running may finish unwritten; a run that carried on
# would lose all the rest.
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/w.jsonl" text 24 300
NW=$(wc -l < "$TMP/w.jsonl")
"$BRT_BIN" run --model "$S" --input "$TMP/w.jsonl" --output "$TMP/w-ref.jsonl" --quiet 2>/dev/null || fail "write-limit reference run"
set +e
( trap '' XFSZ; ulimit -f 3; exec "$BRT_BIN" run --model "$S" --input "$TMP/w.jsonl" --output "$TMP/w-out.jsonl" \
      --max-jobs 2 --quiet ) 2>"$TMP/w.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || { cat "$TMP/w.err"; fail "a run that cannot write its output exited $rc, expected 1"; }
grep -q "w-out.jsonl: writing the result of .*File too large" "$TMP/w.err" || { cat "$TMP/w.err"; fail "the write error does not name the output"; }
lost=$(sed -n 's/.*; \([0-9]*\) finished but could not be written.*/\1/p' "$TMP/w.err")
[ -n "$lost" ] && [ "$lost" -le 2 ] || { cat "$TMP/w.err"; fail "the run went on after the output failed ($lost results lost)"; }
kept=$(wc -l < "$TMP/w-out.jsonl")
[ "$kept" -lt "$NW" ] || fail "the size limit did not bite"
note "output write failure: exit 1 with $kept of $NW results kept, $lost lost: $(tail -n 1 "$TMP/w.err")"
"$BRT_BIN" run --model "$S" --input "$TMP/w.jsonl" --output "$TMP/w-out.jsonl" --quiet 2>"$TMP/w2.err" || { cat "$TMP/w2.err"; fail "the rerun after the write failure"; }
$NORM "$TMP/w-out.jsonl" "$NW" > "$TMP/w-out.norm" || fail "after the write failure: missing or duplicated requests"
$NORM "$TMP/w-ref.jsonl" "$NW" > "$TMP/w-ref.norm"
cmp -s "$TMP/w-ref.norm" "$TMP/w-out.norm" || fail "the batch finished after a write failure differs from an undisturbed run"
note "rerun: all $NW requests exactly once, equal to the undisturbed run"
echo "PASS"
