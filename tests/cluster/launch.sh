#!/bin/bash
# Broken launches fail loudly instead of running N copies of rank 0 or a wrong grid: a world size
# that is not what the launcher promised, a PP x DP that does not match the ranks, more stages than
# layers, and ranks started with different options (the start-up handshake compares them).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
S=$MODELS/stories260K
echo '{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", "max_tokens": 2}}' > "$TMP/in.jsonl"

# srun without PMIx wire-up starts N singletons with no MPI at all
expect_fail "srun tasks without MPI" "srun started 3 tasks but none has MPI" \
    env SLURM_STEP_NUM_TASKS=3 SLURM_PROCID=0 "$BRT_BIN" run --model "$S" --input "$TMP/in.jsonl" --output "$TMP/o.jsonl"
# a launcher whose promised size is not the MPI world (a PMI that wired up the wrong job)
expect_fail "world size against the launcher" "launcher started 3 tasks" \
    env PMI_SIZE=3 timeout 60 mpirun -np 1 "$BRT_BIN" run --model "$S" --input "$TMP/in.jsonl" --output "$TMP/o.jsonl"
expect_fail "grid that does not match the ranks" "--pp 3 does not divide the 2 ranks" \
    brt_mpirun 2 run --model "$S" --input "$TMP/in.jsonl" --output "$TMP/o.jsonl" --pp 3
expect_fail "more stages than layers" "more pipeline stages than the model's 5 layers" \
    brt_mpirun 6 run --model "$S" --input "$TMP/in.jsonl" --output "$TMP/o.jsonl"
expect_fail "ranks with different options" "different model config" \
    timeout 120 mpirun -np 1 "$BRT_BIN" run --model "$S" --input "$TMP/in.jsonl" --output "$TMP/o.jsonl" \
    : -np 1 "$BRT_BIN" run --model "$S" --input "$TMP/in.jsonl" --output "$TMP/o.jsonl" --policy beacon_v1 --beacon-window 64
[ ! -s "$TMP/o.jsonl" ] || fail "a failed launch wrote results"
echo "PASS"
