# Shared by tests/errors/*.sh (sourced after common.sh): every case runs the AddressSanitizer build,
# must exit non-zero without a signal or a sanitizer report (leaks included) and must print a message
# that names the broken file, tensor or field.
[ -x "$BRT_ASAN_BIN" ] || skip "no AddressSanitizer binary at $BRT_ASAN_BIN (configure with -DBRT_SANITIZE_TOOLS=ON)"
# without the beaconrt-asan target ctest does not set BRT_ASAN_BIN and common.sh falls back to build/:
# do not test a binary from another build
[ "$(dirname "$BRT_ASAN_BIN")" = "$(dirname "$BRT_BIN")" ] ||
    skip "no AddressSanitizer binary in this build ($BRT_ASAN_BIN is not next to $BRT_BIN)"
[ -x "$BRT_BIN" ] || fail "no beaconrt binary at $BRT_BIN"
ASAN="$BRT_ASAN_BIN"
LLAMA="$GOLDEN/llama-tiny"
# a valid ids file for the llama-tiny model (vocab 512)
IDS="$LLAMA/golden.safetensors:short_input_ids"

mangle() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/mangle_safetensors.py" "$@" || fail "mangle_safetensors $1 failed"; }
st_util() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/st_util.py" "$@" || fail "st_util $1 failed"; }

# asan_fail "what" "pattern" args...: expect_fail on the ASan binary, plus no LeakSanitizer report
asan_fail() {
    what=$1 pattern=$2
    shift 2
    expect_fail "$what" "$pattern" "$ASAN" "$@"
    if grep -q "Sanitizer" "$TMP/err.txt"; then cat "$TMP/err.txt" >&2; fail "$what: sanitizer report"; fi
}

# asan_ok "what" args...: the ASan binary must succeed without a sanitizer report (stdout in $TMP/out.txt)
asan_ok() {
    what=$1
    shift
    set +e
    "$ASAN" "$@" >"$TMP/out.txt" 2>"$TMP/err.txt"
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || { cat "$TMP/err.txt" >&2; fail "$what: exit $rc, expected success"; }
    if grep -q "Sanitizer\|runtime error:" "$TMP/err.txt"; then cat "$TMP/err.txt" >&2; fail "$what: sanitizer report"; fi
    note "$what: exit 0"
}

# llama_copy NAME: $TMP/NAME with llama-tiny's config.json and model.safetensors; prints the folder
llama_copy() {
    mkdir -p "$TMP/$1"
    cp "$LLAMA/config.json" "$LLAMA/model.safetensors" "$TMP/$1/"
    echo "$TMP/$1"
}
