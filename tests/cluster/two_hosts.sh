#!/bin/bash
# Multi-node for real: two "hosts" made by the test itself, each a network namespace with its own
# loopback and hostname, joined by a veth pair; Open MPI starts the second host's daemon through
# a launch agent that enters its namespace (where a real cluster uses ssh or Slurm) and its ranks
# talk over TCP on the veth link. A 4-rank batch (2 stages x 2 replicas, every pipeline spanning
# both hosts) gives the single-host outputs; kill -9 of a rank on the second host ends the run
# within seconds naming the rank, and the rerun completes the batch exactly once.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null && command -v unshare >/dev/null || skip "needs ip (iproute2) and unshare"
A=brt-a-$$ B=brt-b-$$
NET=10.$((100 + $$ % 100)).$(($$ / 100 % 250)).
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
ip netns add "$A" && ip netns add "$B" || skip "cannot create network namespaces here (no CAP_SYS_ADMIN?)"
ip link add "va$$" type veth peer name "vb$$"
ip link set "va$$" netns "$A" && ip link set "vb$$" netns "$B"
ip -n "$A" addr add "${NET}1/24" dev "va$$" && ip -n "$B" addr add "${NET}2/24" dev "vb$$"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "va$$" up && ip -n "$B" link set "vb$$" up
cat >"$TMP/agent" <<AGENT
#!/bin/sh
# Open MPI's launch agent (plm_rsh_agent): \$1 is the host, the rest the daemon's command line
host=\$1; shift
case \$host in ${NET}1) ns=$A ;; ${NET}2) ns=$B ;; *) echo "agent: no host \$host" >&2; exit 1 ;; esac
exec ip netns exec \$ns unshare --uts sh -c "hostname \$ns; \$*"
AGENT
chmod +x "$TMP/agent"
printf '%s slots=2\n%s slots=2\n' "${NET}1" "${NET}2" >"$TMP/hosts"
# mpirun runs on host A; the two hosts' traffic (daemons and MPI) goes over the veth link only
on_a() { ip netns exec "$A" unshare --uts sh -c "hostname $A; exec \"\$@\"" sh "$@"; }
two_hosts() {
    on_a timeout -k 10 300 mpirun --hostfile "$TMP/hosts" --map-by node --mca plm_rsh_agent "$TMP/agent" \
        --mca oob_tcp_if_include "${NET}0/24" --mca btl_tcp_if_include "${NET}0/24" --mca btl tcp,self \
        -np 4 "$BRT_BIN" "$@"
}

M=$TMP/model
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_model.py" "$M" --hidden 256 --layers 4 --inter 688 \
    --set beacon_window=128 --set 'beacon_stride=[128]' --set 'beacon_ratio=[8]'
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 16 700
N=$(wc -l <"$TMP/in.jsonl")
"$BRT_BIN" run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --quiet
$NORM "$TMP/ref.jsonl" "$N" >"$TMP/ref.norm"

two_hosts run --model "$M" --pp 2 --dp 2 --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" 2>"$TMP/err.txt" ||
    { cat "$TMP/err.txt"; fail "the two-host run failed"; }
grep -E "rank [0-9] \(pipeline" "$TMP/err.txt" >&2
$NORM "$TMP/out.jsonl" "$N" >"$TMP/out.norm"
cmp -s "$TMP/ref.norm" "$TMP/out.norm" || { diff "$TMP/ref.norm" "$TMP/out.norm" | head; fail "two hosts give other results than one"; }
# every rank of host B ran in B's namespace (its hostname), so the pipelines crossed the link
[ "$(ip netns pids "$B" | wc -l)" = 0 ] || fail "processes left in host B's namespace"
note "2 hosts x 2 ranks (pp 2, dp 2): $N results equal to one rank's"

# kill -9 a rank on host B mid-batch
rm -f "$TMP/out2.jsonl"
( if two_hosts run --model "$M" --pp 2 --dp 2 --max-jobs 2 --input "$TMP/in.jsonl" --output "$TMP/out2.jsonl" \
    --quiet 2>"$TMP/kill.err"; then echo 0 >"$TMP/kill.rc"; else echo $? >"$TMP/kill.rc"; fi ) &
bg=$!
for _ in $(seq 1 600); do
    [ -s "$TMP/out2.jsonl" ] && [ "$(wc -l <"$TMP/out2.jsonl")" -ge 2 ] && break
    sleep 0.1
done
victim=""
for p in $(ip netns pids "$B"); do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = beaconrt ] || continue
    r=$(tr '\0' '\n' <"/proc/$p/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    [ "$r" = 3 ] && victim=$p
done
[ -n "$victim" ] || fail "rank 3 is not running on host B"
[ "$(wc -l <"$TMP/out2.jsonl")" -lt "$N" ] || fail "the batch finished before the kill"
t0=$(date +%s)
kill -9 "$victim"
wait "$bg" || true
dt=$(($(date +%s) - t0))
[ -s "$TMP/kill.rc" ] && [ "$(cat "$TMP/kill.rc")" != 0 ] || fail "the run exited 0 after rank 3 was killed"
[ "$dt" -lt 30 ] || fail "the run took ${dt}s to end after the kill"
grep -q "rank 3" "$TMP/kill.err" || { cat "$TMP/kill.err"; fail "no message naming rank 3"; }
note "killed rank 3 on host B: the run ended in ${dt}s: $(grep -m1 "rank 3" "$TMP/kill.err" | head -c 200)"
two_hosts run --model "$M" --pp 2 --dp 2 --input "$TMP/in.jsonl" --output "$TMP/out2.jsonl" --quiet 2>"$TMP/err3.txt" ||
    { cat "$TMP/err3.txt"; fail "the rerun on two hosts failed"; }
$NORM "$TMP/out2.jsonl" "$N" >"$TMP/out2.norm"
cmp -s "$TMP/ref.norm" "$TMP/out2.norm" || fail "the resumed batch differs from one uninterrupted run"
note "the rerun completed it: every request once, the same results"
echo "PASS"
