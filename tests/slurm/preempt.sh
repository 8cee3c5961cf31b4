#!/bin/bash
# Preemption under a real Slurm: a job reading a long document with a state-cache folder is
# requeued while it runs (scontrol requeue: Slurm sends SIGTERM to every task, then requeues); the
# ranks keep the document's state on disk at the step they reached and exit, and the requeued job
# resumes there (cached_tokens > 0, both runs in the job's log) with the results of an
# uninterrupted run.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
[ "$(id -u)" = 0 ] || skip "the local Slurm cluster needs root"
for b in slurmctld slurmd sbatch munged; do
    command -v $b >/dev/null || fail "$b is not installed (scripts/install-deps.sh --slurm installs it)"
done
NORM2="$PYTHON $BRT_SOURCE_DIR/tests/cache/normalize_uncached.py"
SD=$(mktemp -d /tmp/brt-sl.XXXXXX)
trap 'bash "$BRT_SOURCE_DIR/tests/lib/slurm-local.sh" stop "$SD" >/dev/null 2>&1 || true; rm -rf "$SD" "$TMP"' EXIT
eval "$(bash "$BRT_SOURCE_DIR/tests/lib/slurm-local.sh" start "$SD")"

. "$BRT_SOURCE_DIR/tests/lib/preempt_setup.sh"
brt_mpirun 2 run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --quiet || fail "reference run"
$NORM2 "$TMP/ref.jsonl" 1 >"$TMP/ref.norm"
# a 2-rank preset for this model
$PYTHON - "$BRT_SOURCE_DIR/configs/stories260k-beacon-laptop.json" "$TMP/preset.json" "$M" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["model"] = sys.argv[3]
p.pop("model_config", None)
p["policy"] = {}
json.dump(p, open(sys.argv[2], "w"))
PY
cd "$BRT_SOURCE_DIR"
jid=$(timeout -k 5 60 launch/beaconrt-submit "$TMP/preset.json" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" \
    --beaconrt "$BRT_BIN" -- --state-cache-dir "$TMP/sc")
log=$TMP/out.jsonl.slurm-$jid.log
for _ in $(seq 1 300); do grep -q "tokens [1-9][0-9]*/" "$log" 2>/dev/null && break; sleep 0.1; done
grep -q "tokens [1-9][0-9]*/" "$log" || { cat "$log"; fail "job $jid did not start reading"; }
sleep 1
scontrol requeue "$jid" || fail "scontrol requeue $jid"
for _ in $(seq 1 200); do grep -q "kept at the step they reached\|stopped by signal" "$log" && break; sleep 0.1; done
sleep 1
scontrol update jobid="$jid" starttime=now >/dev/null 2>&1 || true # a requeued job waits ~2 min otherwise
for _ in $(seq 1 600); do
    state=$(scontrol show job "$jid" | grep -oE 'JobState=\S+' | cut -d= -f2)
    [ "$state" = COMPLETED ] && grep -q "(restart 1)" "$log" && break
    sleep 0.2
done
[ "$state" = COMPLETED ] || { cat "$log"; fail "the requeued job ended $state"; }
grep -q "kept at the step they reached" "$log" || { cat "$log"; fail "the first run did not checkpoint"; }
$NORM2 "$TMP/out.jsonl" 1 >"$TMP/out.norm"
cmp -s "$TMP/ref.norm" "$TMP/out.norm" || fail "the resumed job's results differ"
cached=$($PYTHON -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"])' "$TMP/out.jsonl")
[ "$cached" -gt 0 ] || fail "the requeued job read the document from its start"
note "job $jid requeued mid-document: resumed with $cached tokens from the checkpoint, results identical"
echo "PASS"
