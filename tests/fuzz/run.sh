#!/bin/sh
# The long fuzz run: tests/fuzz/run.sh [SECONDS] [HARNESS...]
#
# Configures and builds build-fuzz with clang when needed, then runs each harness (default: all of
# tests/fuzz/CMakeLists.txt's list) for SECONDS (default 600), one after another. Each keeps a
# working corpus in build-fuzz/tests/fuzz/long/<harness>/corpus, so a second run goes on from what
# the first found; the seeds in tests/fuzz/corpus/<harness> are read, never written. A crashing
# input lands in build-fuzz/tests/fuzz/long/<harness>/ (crash-*, leak-*, timeout-*, oom-*), with
# the run's log beside it. Extra libFuzzer flags: FUZZ_ARGS="-jobs=2 -workers=2" tests/fuzz/run.sh.
# Exit status 1 if any harness stopped on a finding.
set -eu
# tests/CMakeLists.txt registers every tests/*/*.sh as a test: under ctest (no arguments, the
# suite's environment) this is not one
if [ $# -eq 0 ] && [ -n "${BRT_TOOLS_DIR:-}" ]; then
    echo "tests/fuzz/run.sh is the long fuzz run; ctest runs the short ones (label fuzz in build-fuzz)"
    exit 77
fi
cd "$(dirname "$0")/../.."
SECS=${1:-600}
[ $# -gt 0 ] && shift
B=build-fuzz
LIST=$(sed -n 's/^ *"\([a-z_]*\) *\([0-9]*\) *[0-9]*")*$/\1:\2/p' tests/fuzz/CMakeLists.txt)
if [ $# -gt 0 ]; then
    want=""
    for h in "$@"; do
        spec=$(printf '%s\n' $LIST | grep "^$h:" || true)
        [ -n "$spec" ] || { echo "run.sh: no harness '$h' (known: $(printf '%s\n' $LIST | cut -d: -f1 | tr '\n' ' '))" >&2; exit 2; }
        want="$want $spec"
    done
    LIST=$want
fi

if [ ! -f $B/CMakeCache.txt ]; then
    command -v clang >/dev/null || { echo "run.sh: needs clang (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
    CC=clang cmake -S . -B $B -DBRT_FUZZ=ON -DBRT_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build $B --target fuzz_all -j"$(nproc)" >&2

failed=""
for spec in $LIST; do
    h=${spec%%:*}
    max_len=${spec#*:}
    W=$B/tests/fuzz/long/$h
    mkdir -p "$W/corpus"
    echo "== $h: ${SECS}s (log: $W/log.txt)"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    if $B/tests/fuzz/fuzz_$h -max_total_time="$SECS" -max_len="$max_len" -rss_limit_mb=2048 -timeout=30 \
        -print_final_stats=1 -artifact_prefix="$W/" ${FUZZ_ARGS:-} "$W/corpus" "tests/fuzz/corpus/$h" \
        >"$W/log.txt" 2>&1; then
        status=ok
    else
        status="FOUND SOMETHING: $(ls "$W" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | tr '\n' ' ')"
        failed="$failed $h"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$W/log.txt" | tail -1)
    echo "   $status; ${execs:-?} executions, corpus $(ls "$W/corpus" | wc -l) inputs"
done
if [ -n "$failed" ]; then
    echo "findings in:$failed (reproduce: $B/tests/fuzz/fuzz_<harness> <input>)"
    exit 1
fi
