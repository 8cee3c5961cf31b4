# Shared by the benchmarks that talk to `beaconrt serve` (sourced): start it under mpirun on a free
# loopback port and wait until every rank is up; stop it with SIGTERM to its ranks.

# bench_serve_start DIR NP BIN [serve args...]: sets pid (mpirun's) and url; exits 1 with the
# server's log (DIR/serve.log) if it dies first.
bench_serve_start() {
    local dir=$1 n=$2 bin=$3
    shift 3
    rm -f "$dir/port"
    mpirun -np "$n" "$bin" serve --port 0 --port-file "$dir/port" "$@" >"$dir/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 1200); do
        [ -s "$dir/port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$dir/port")/health")" = 200 ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
        sleep 0.1
    done
    url=http://127.0.0.1:$(cat "$dir/port")
}

# bench_serve_stop: SIGTERM to the ranks (as Slurm does), then wait for mpirun
bench_serve_stop() {
    # shellcheck disable=SC2046
    kill -TERM $(pgrep -P "$pid" -x beaconrt) 2>/dev/null || true
    wait "$pid" || true
    pid=""
}
