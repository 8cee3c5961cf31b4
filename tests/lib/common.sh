# Shared by the script tests (sourced). ctest sets BRT_SOURCE_DIR, BRT_BIN, BRT_ASAN_BIN,
# BRT_TOOLS_DIR; a test run by hand from the repo gets defaults for build/.
set -eu
: "${BRT_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${BRT_BIN:=$BRT_SOURCE_DIR/build/beaconrt}"
: "${BRT_ASAN_BIN:=$BRT_SOURCE_DIR/build/beaconrt-asan}"
: "${BRT_TOOLS_DIR:=$BRT_SOURCE_DIR/build/tests}"
GOLDEN="$BRT_SOURCE_DIR/tests/data/golden"
MODELS="$BRT_SOURCE_DIR/models"
CHECK="$BRT_TOOLS_DIR/brt_check"
# Debian's python3 (with python3-numpy from install-deps.sh), not whatever is first on PATH
PYTHON="${BRT_PYTHON:-/usr/bin/python3}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/brt-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# ASan reports leaks of MPI/PMIx internals we do not own; the error tests check our own code paths
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }
# skip (ctest SKIP_RETURN_CODE 77) with a reason
skip() { echo "SKIP: $*"; exit 77; }

# expect_fail "what" "grep-pattern" cmd...: the command must exit non-zero (not by a signal) and
# print the pattern on stderr
expect_fail() {
    what=$1; pattern=$2; shift 2
    set +e
    "$@" >"$TMP/out.txt" 2>"$TMP/err.txt"
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then cat "$TMP/err.txt" >&2; fail "$what: expected a failure, got exit 0"; fi
    if [ "$rc" -ge 128 ]; then cat "$TMP/err.txt" >&2; fail "$what: crashed (exit $rc)"; fi
    if grep -q "ERROR: AddressSanitizer\|runtime error:" "$TMP/err.txt"; then cat "$TMP/err.txt" >&2; fail "$what: sanitizer report"; fi
    grep -q -- "$pattern" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "$what: message lacks '$pattern'"; }
    note "$what: exit $rc: $(head -c 300 "$TMP/err.txt" | tr '\n' ' ')"
}
