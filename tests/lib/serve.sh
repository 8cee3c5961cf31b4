# Helpers for the `beaconrt serve` tests (sourced after common.sh): start a server on a free
# loopback port, wait until every rank is up, talk to it with curl, stop it with SIGTERM as Slurm
# does (to every rank) and check it exits 0. Python clients run in a virtual environment with the
# official `openai` package from PyPI.
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
command -v curl >/dev/null || fail "curl is not installed (scripts/install-deps.sh --slurm installs it)"

OPENAI_VERSION=3.63.0
SERVER_PID=""

# serve_start NP [beaconrt serve args...]: start the server ($SERVE_BIN, default $BRT_BIN; under
# mpirun when NP > 1); sets
# URL, PORT, SERVER_PID (mpirun's or beaconrt's) and SERVER_LOG; waits for /health (every rank up).
serve_start() {
    np=$1; shift
    SERVER_LOG=$TMP/serve.log
    rm -f "$TMP/port"
    if [ "$np" -gt 1 ]; then
        timeout -k 10 900 mpirun -np "$np" "${SERVE_BIN:-$BRT_BIN}" serve --port 0 --port-file "$TMP/port" "$@" >"$SERVER_LOG" 2>&1 &
    else
        timeout -k 10 900 "${SERVE_BIN:-$BRT_BIN}" serve --port 0 --port-file "$TMP/port" "$@" >"$SERVER_LOG" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        if [ -s "$TMP/port" ]; then
            PORT=$(cat "$TMP/port")
            URL=http://127.0.0.1:$PORT
            if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ]; then
                note "server up on $URL ($np ranks)"
                trap 'serve_kill; rm -rf "$TMP"' EXIT
                return 0
            fi
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; fail "the server exited at start"; }
        sleep 0.1
    done
    cat "$SERVER_LOG" >&2
    fail "the server did not come up in 60s"
}

# The ranks of this test's server: the beaconrt processes below SERVER_PID (timeout, mpirun).
serve_ranks() {
    todo=$SERVER_PID
    while [ -n "$todo" ]; do
        next=""
        for p in $todo; do
            case "$(cat /proc/"$p"/comm 2>/dev/null)" in beaconrt*) echo "$p" ;; esac
            next="$next $(pgrep -P "$p" || true)"
        done
        todo=$(echo $next)
    done
}

# serve_stop [SECONDS]: SIGTERM to every rank (as Slurm does at the end of a job); the server must
# exit 0 within SECONDS (default 60).
serve_stop() {
    ranks=$(serve_ranks)
    [ -n "$ranks" ] || fail "no server ranks to stop"
    # shellcheck disable=SC2086
    kill -TERM $ranks
    serve_wait "${1:-60}"
}

# serve_wait [SECONDS]: the server (signalled already) must exit 0 within SECONDS.
serve_wait() {
    limit=${1:-60}
    end=$(( $(date +%s) + limit ))
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        [ "$(date +%s)" -lt "$end" ] || { cat "$SERVER_LOG" >&2; fail "the server did not stop within ${limit}s"; }
        sleep 0.1
    done
    set +e
    wait "$SERVER_PID"
    rc=$?
    set -e
    SERVER_PID=""
    trap 'rm -rf "$TMP"' EXIT
    [ "$rc" -eq 0 ] || { cat "$SERVER_LOG" >&2; fail "the server exited $rc after SIGTERM (want 0)"; }
    if grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$SERVER_LOG"; then cat "$SERVER_LOG" >&2; fail "sanitizer report"; fi
    note "server stopped (exit 0)"
}

serve_kill() {
    [ -n "$SERVER_PID" ] || return 0
    ranks=$(serve_ranks)
    # shellcheck disable=SC2086
    [ -z "$ranks" ] || kill -KILL $ranks 2>/dev/null || true
    kill -KILL "$SERVER_PID" 2>/dev/null || true
}

# curl with the API key when the test set API_KEY
acurl() {
    if [ -n "${API_KEY:-}" ]; then curl -H "Authorization: Bearer $API_KEY" "$@"; else curl "$@"; fi
}

# metric NAME [LABEL-SUBSTRING]: the value of one Prometheus sample from /metrics (sums matches).
metric() {
    acurl -s "$URL/metrics" |
        awk -v n="$1" -v l="${2:-}" '$1 ~ "^"n"({|$)" && index($1, l) { s += $2 } END { print s + 0 }'
}

# wait_metric NAME LABEL-SUBSTRING VALUE [SECONDS]: until the sample reads VALUE (stage figures come
# back with the next micro-batch through the stage, so they lag the answers a little); 1 if never.
wait_metric() {
    end=$(( $(date +%s) + ${4:-10} ))
    while [ "$(metric "$1" "$2")" != "$3" ]; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.05
    done
}

# post PATH JSON: POST a body; prints the HTTP status, the body goes to $TMP/body.json
post() {
    acurl -s -o "$TMP/body.json" -w '%{http_code}' -H 'Content-Type: application/json' "$URL$1" --data-binary "$2"
}

# expect_status WHAT WANT PATH JSON [PATTERN]: the status and an OpenAI error body naming PATTERN
expect_status() {
    what=$1; want=$2; path=$3; body=$4; pattern=${5:-}
    got=$(post "$path" "$body")
    [ "$got" = "$want" ] || { cat "$TMP/body.json" >&2; fail "$what: HTTP $got, want $want"; }
    if [ "$want" -ge 400 ]; then
        $PYTHON -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert set(e) == {"message","type","param","code"}, e; assert sys.argv[2] in e["message"], (sys.argv[2], e)' \
            "$TMP/body.json" "$pattern" || { cat "$TMP/body.json" >&2; fail "$what: not an OpenAI error body naming '$pattern'"; }
    fi
    note "$what: $got $(head -c 160 "$TMP/body.json")"
}

# openai_python: a python with the official openai package (a venv beside the build, made once)
openai_python() {
    venv=$BRT_TOOLS_DIR/pyenv
    if ! "$venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION')" 2>/dev/null; then
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv" >&2 || fail "python3 -m venv failed (python3-venv is installed by scripts/install-deps.sh --slurm)"
        "$venv/bin/pip" install -q --disable-pip-version-check "openai==$OPENAI_VERSION" >&2 ||
            fail "cannot install openai==$OPENAI_VERSION from PyPI into $venv (the serving tests need the official client)"
    fi
    echo "$venv/bin/python"
}
