#!/bin/bash
# No reading is lost when a run stops in the middle of a long document: on `mpirun -np 2` with a
# state-cache folder, SIGTERM to the ranks (what Slurm sends before preempting) keeps the job's state
# on disk at the step it reached and the run exits; the rerun of the same command resumes there and
# its output is identical to an uninterrupted run's, its trace starting at that step. Then with
# periodic checkpoints (--checkpoint-every), SIGKILL of rank 1 loses only the steps since the last
# one: the rerun starts at a checkpointed step.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
NORM2="$PYTHON $BRT_SOURCE_DIR/tests/cache/normalize_uncached.py"
. "$BRT_SOURCE_DIR/tests/lib/preempt_setup.sh" short
brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --quiet || fail "the reference run"
$NORM2 "$TMP/ref.jsonl" 2 >"$TMP/ref.norm"

rank_pid() { # pid of world rank $1 of the run writing $2
    for p in $(pgrep -f "beaconrt run .*$2" || true); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
    done
}
# first_step TRACE: the long job's first step on stage 0
first_step() {
    $PYTHON - "$1" <<'PY'
import json, sys
steps = [idx for l in open(sys.argv[1]) for t in [json.loads(l)] if t["stage"] == 0
         for ev in t["events"] for job, idx in ev["steps"] if job == 1]
print(min(steps))
PY
}
# start_run OUT TRACE [flags]: in the background; waits until the long job has done some steps
start_run() {
    out=$1 trace=$2
    shift 2
    ( if brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$out" --state-cache-dir "$TMP/sc" \
        --trace "$trace" "$@" >"$TMP/run.out" 2>"$TMP/run.err"; then echo 0; else echo $?; fi >"$TMP/run.rc" ) &
    BG=$!
    for _ in $(seq 1 600); do
        grep -q "tokens [1-9][0-9]*/" "$TMP/run.err" 2>/dev/null && break
        sleep 0.1
    done
    sleep 1
}

# ---- SIGTERM ----
rm -rf "$TMP/sc" "$TMP/out.jsonl"
start_run "$TMP/out.jsonl" "$TMP/t1.jsonl"
ranks="$(rank_pid 0 "$TMP/out.jsonl") $(rank_pid 1 "$TMP/out.jsonl")"
# shellcheck disable=SC2086
kill -TERM $ranks
wait $BG || true
[ "$(cat "$TMP/run.rc")" = 1 ] || { cat "$TMP/run.err"; fail "the stopped run exited $(cat "$TMP/run.rc"), want 1"; }
grep -q "stopped by signal 15" "$TMP/run.err" && grep -q "kept at the step they reached" "$TMP/run.err" ||
    { cat "$TMP/run.err"; fail "no checkpoint message"; }
! grep -q '"custom_id": *"long"' "$TMP/out.jsonl" || fail "the unfinished job was written as a result"
ls "$TMP/sc"/*.state >/dev/null || fail "no state files were written"
brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --state-cache-dir "$TMP/sc" \
    --trace "$TMP/t2.jsonl" --quiet 2>"$TMP/rerun.err" || { cat "$TMP/rerun.err"; fail "the rerun failed"; }
$NORM2 "$TMP/out.jsonl" 2 >"$TMP/out.norm"
cmp -s "$TMP/ref.norm" "$TMP/out.norm" || { diff "$TMP/ref.norm" "$TMP/out.norm" | head; fail "the resumed output differs"; }
s=$(first_step "$TMP/t2.jsonl")
[ "$s" -gt 0 ] || fail "the rerun read the document from its start"
cached=$($PYTHON -c 'import json,sys; print([json.loads(l)["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"] for l in open(sys.argv[1]) if json.loads(l)["custom_id"] == "long"][0])' "$TMP/out.jsonl")
note "SIGTERM: the rerun resumed at step $s ($cached tokens from the checkpoint), output identical"

# ---- SIGKILL of rank 1 after periodic checkpoints ----
rm -rf "$TMP/sc" "$TMP/out.jsonl"
start_run "$TMP/out.jsonl" "$TMP/t3.jsonl" --checkpoint-every 10
for _ in $(seq 1 600); do [ "$(ls "$TMP/sc"/*.state 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.1; done
[ "$(ls "$TMP/sc"/*.state 2>/dev/null | wc -l)" -ge 2 ] || fail "no periodic checkpoint was written"
sleep 0.5
kill -9 "$(rank_pid 1 "$TMP/out.jsonl")"
wait $BG || true
[ "$(cat "$TMP/run.rc")" != 0 ] || fail "the run exited 0 after rank 1 was killed"
brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --state-cache-dir "$TMP/sc" \
    --checkpoint-every 10 --trace "$TMP/t4.jsonl" --quiet 2>"$TMP/rerun.err" || { cat "$TMP/rerun.err"; fail "the rerun failed"; }
$NORM2 "$TMP/out.jsonl" 2 >"$TMP/out.norm"
cmp -s "$TMP/ref.norm" "$TMP/out.norm" || fail "the output after the kill and rerun differs"
s=$(first_step "$TMP/t4.jsonl")
[ "$s" -gt 0 ] && [ $((s % 10)) = 0 ] || fail "the rerun did not start at a checkpoint (step $s)"
note "SIGKILL of rank 1: the rerun resumed at checkpointed step $s, output identical"
echo "PASS"
