#!/bin/bash
# A real single-node Slurm cluster (slurmctld + slurmd + munge, started by tests/lib/slurm-local.sh)
# runs a batch job submitted with launch/beaconrt-submit from a preset: sbatch -> srun --mpi=pmix ->
# 2 ranks; the results equal those of the same batch under mpirun. Then the job is run again on the
# same output (a Slurm requeue reruns the same script): nothing is redone or duplicated.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
[ "$(id -u)" = 0 ] || skip "the local Slurm cluster needs root"
for b in slurmctld slurmd sbatch munged; do
    command -v $b >/dev/null || fail "$b is not installed (scripts/install-deps.sh --slurm installs it)"
done
# a short state dir: Slurm's unix sockets have a path limit
SD=$(mktemp -d /tmp/brt-sl.XXXXXX)
trap 'bash "$BRT_SOURCE_DIR/tests/lib/slurm-local.sh" stop "$SD" >/dev/null 2>&1 || true; rm -rf "$SD" "$TMP"' EXIT
eval "$(bash "$BRT_SOURCE_DIR/tests/lib/slurm-local.sh" start "$SD")"

$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 6 200
cfg=$BRT_SOURCE_DIR/configs/stories260k-beacon-laptop.json
wait_job() {
    for _ in $(seq 1 240); do
        [ -z "$(squeue -h -j "$1" -o %i 2>/dev/null)" ] && break
        sleep 0.5
    done
    state=$(scontrol show job "$1" | grep -oE 'JobState=\S+' | cut -d= -f2)
    [ "$state" = COMPLETED ] || { cat "$TMP"/out.jsonl.slurm-*.log >&2 || true; fail "job $1 ended $state"; }
}
cd "$BRT_SOURCE_DIR"
jid=$(timeout -k 5 60 launch/beaconrt-submit "$cfg" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --beaconrt "$BRT_BIN")
note "submitted job $jid"
wait_job "$jid"
grep -q "2 ranks (1 x 2)" "$TMP"/out.jsonl.slurm-"$jid".log || fail "the job did not run as 2 ranks"
$NORM "$TMP/out.jsonl" 6 > "$TMP/slurm.norm"
brt_mpirun 2 run --config "$cfg" --input "$TMP/in.jsonl" --output "$TMP/local.jsonl" --quiet 2>/dev/null || fail "local run"
$NORM "$TMP/local.jsonl" 6 > "$TMP/local.norm"
cmp -s "$TMP/slurm.norm" "$TMP/local.norm" || fail "results under Slurm differ from mpirun's"
note "job $jid completed under srun --mpi=pmix; results equal to mpirun's"
jid=$(timeout -k 5 60 launch/beaconrt-submit "$cfg" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --beaconrt "$BRT_BIN")
wait_job "$jid"
grep -q "6 of 6 requests already answered" "$TMP"/out.jsonl.slurm-"$jid".log || fail "the rerun did not see the journal"
$NORM "$TMP/out.jsonl" 6 >/dev/null || fail "the rerun duplicated results"
note "rerun (as after a requeue): nothing redone"
echo "PASS"
