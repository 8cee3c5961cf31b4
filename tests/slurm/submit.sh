#!/bin/bash
# A real single-node Slurm cluster (slurmctld + slurmd + munge, started by tests/lib/slurm-local.sh)
# runs a batch job submitted with launch/beaconrt-submit from a preset: sbatch -> srun --mpi=pmix ->
# 2 ranks; the results equal those of the same batch under mpirun. Then the job is requeued (the
# same script under the same job id): nothing is redone or duplicated and its log keeps both runs.
# The GPU presets render one rank per GPU, block placement, a memory request and an early SIGTERM.
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
# a requeue (preemption, node failure) reruns the same script under the same job id: nothing is
# redone or duplicated, and the log keeps the first run's lines (--open-mode=append)
scontrol requeue "$jid" || fail "scontrol requeue $jid"
scontrol update jobid="$jid" starttime=now >/dev/null 2>&1 || true # a requeued job waits ~2 min otherwise
sleep 1
wait_job "$jid"
log=$TMP/out.jsonl.slurm-$jid.log
grep -q "(restart 0)" "$log" && grep -q "(restart 1)" "$log" || { cat "$log" >&2; fail "the log lost the first run"; }
grep -q "6 of 6 requests already answered" "$log" || fail "the requeued run did not see the journal"
$NORM "$TMP/out.jsonl" 6 >/dev/null || fail "the requeued run duplicated results"
note "requeued job $jid: nothing redone, both runs in its log"
scontrol show job "$jid" | grep -q "Requeue=1" || fail "the job is not requeue-able"

# the GPU presets render one rank per GPU, block placement, memory, and the early SIGTERM
for gcfg in "$BRT_SOURCE_DIR"/configs/*.json; do
    grep -q '"gpus_per_node"' "$gcfg" || continue
    launch/beaconrt-submit "$gcfg" --input in.jsonl --output out.jsonl --dry-run >"$TMP/gpu.sh"
    for d in "--gpus-per-task=1" "--gpu-bind=per_task:1" "--distribution=block" "--mem=" "--signal=TERM@" \
             "--open-mode=append" "--requeue"; do
        grep -q -- "^#SBATCH $d" "$TMP/gpu.sh" || fail "$(basename "$gcfg"): no #SBATCH $d"
    done
    grep -q "^srun .*--gpus-per-task=1" "$TMP/gpu.sh" || fail "$(basename "$gcfg"): srun does not bind a GPU per task"
    bash -n "$TMP/gpu.sh" || fail "$(basename "$gcfg"): the rendered script is not valid bash"
done
note "GPU presets render --gpus-per-task=1 --gpu-bind=per_task:1, block placement, --mem, --signal"
echo "PASS"
