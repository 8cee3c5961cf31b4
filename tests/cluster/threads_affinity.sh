#!/bin/bash
# Kernel threads follow the CPUs a rank may run on (its affinity: what Slurm's cgroup and
# --cpus-per-task, taskset or mpirun's binding give), not the node's core count: one CPU under
# taskset gives one thread; ranks bound to their own cores keep them; ranks sharing one set
# (--bind-to none) split it.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
M=$MODELS/stories260K
N=$(nproc)
[ "$N" -ge 2 ] || skip "needs 2 CPUs or more (has $N)"
threads() { # the thread counts the ranks report, sorted, space-separated
    grep -o "[0-9]* threads" "$1" | awk '{print $1}' | sort -n | tr '\n' ' ' | sed 's/ $//'
}
export BRT_LOG=debug
"$BRT_BIN" generate --model "$M" --prompt hi -n 2 2>"$TMP/a.txt" >/dev/null
[ "$(threads "$TMP/a.txt")" = "$N" ] || fail "alone: $(threads "$TMP/a.txt") threads, want $N"
taskset -c 0 "$BRT_BIN" generate --model "$M" --prompt hi -n 2 2>"$TMP/b.txt" >/dev/null
[ "$(threads "$TMP/b.txt")" = 1 ] || fail "taskset -c 0: $(threads "$TMP/b.txt") threads, want 1"
timeout 120 mpirun -x BRT_LOG -np 2 --bind-to none "$BRT_BIN" generate --model "$M" --prompt hi -n 2 2>"$TMP/c.txt" >/dev/null
want=$((N / 2))
[ "$(threads "$TMP/c.txt")" = "$want $want" ] || fail "2 ranks sharing $N CPUs: $(threads "$TMP/c.txt"), want $want each"
timeout 120 mpirun -x BRT_LOG -np 2 --bind-to core "$BRT_BIN" generate --model "$M" --prompt hi -n 2 2>"$TMP/d.txt" >/dev/null
[ "$(threads "$TMP/d.txt")" = "1 1" ] || fail "2 ranks bound to a core each: $(threads "$TMP/d.txt"), want 1 each"
taskset -c 0 timeout 120 mpirun -x BRT_LOG -np 2 --bind-to none "$BRT_BIN" generate --model "$M" --prompt hi -n 2 2>"$TMP/e.txt" >/dev/null
[ "$(threads "$TMP/e.txt")" = "1 1" ] || fail "2 ranks on one CPU: $(threads "$TMP/e.txt"), want 1 each"
note "threads: alone $N, taskset 1, 2 ranks unbound $want each, bound 1 each, both on one CPU 1 each"
echo "PASS"
