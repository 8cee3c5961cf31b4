#!/bin/bash
# Bad state-cache files are refused with a warning and the state recomputed, never used and never a
# crash, under AddressSanitizer: a truncated file, flipped bytes, another model's file under the
# expected name, a file of another format version, and a manifest line that does not parse. The
# answers stay those of a run without the cache.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/errors.sh"
[ -x "${BRT_ASAN_BIN:-}" ] || skip "no AddressSanitizer build (beaconrt-asan)"
NORM2="$PYTHON $BRT_SOURCE_DIR/tests/cache/normalize_uncached.py"
M=$MODELS/stories260K
P="--policy beacon_v1 --beacon-window 64 --beacon-ratio 4"
$PYTHON - "$TMP/in.jsonl" <<'PY'
import json, sys
doc = " ".join(["Lily and her dog Max went to the park to play with a big red ball."] * 40)
with open(sys.argv[1], "w") as f:
    for i, q in enumerate(["", " Who went to the park?"]):
        f.write(json.dumps({"custom_id": "r%d" % i, "method": "POST", "url": "/v1/completions",
                            "body": {"prompt": doc + q, "max_tokens": 6, "temperature": 0}}) + "\n")
PY
run() { # run OUT DIR [model flags]: the ASan binary, one rank, the cache in DIR
    out=$1 dir=$2
    shift 2
    rm -f "$out"
    # shellcheck disable=SC2086
    "$BRT_ASAN_BIN" run --model "$M" ${*:-$P} --input "$TMP/in.jsonl" --output "$out" --max-jobs 1 \
        --state-cache-dir "$dir" --quiet 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "the run failed"; }
    if grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$TMP/err.txt"; then
        cat "$TMP/err.txt"; fail "sanitizer report"
    fi
}
# the answers without a cache, and a folder with the document's state
# shellcheck disable=SC2086
"$BRT_BIN" run --model "$M" $P --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --max-jobs 1 --quiet
$NORM2 "$TMP/ref.jsonl" 2 >"$TMP/ref.norm"
run "$TMP/out.jsonl" "$TMP/good"
state=$(ls "$TMP/good"/*.state | head -1)
[ -n "$state" ] || fail "no state file was written"
# another model's state under the same name: the same document with another beacon ratio
run "$TMP/other.jsonl" "$TMP/other" --policy beacon_v1 --beacon-window 64 --beacon-ratio 2
other=$(ls "$TMP/other"/*.state | head -1)

case_() { # NAME "warning pattern" MUTATION
    name=$1 pattern=$2 mutate=$3
    rm -rf "$TMP/c"
    cp -r "$TMP/good" "$TMP/c"
    f="$TMP/c/$(basename "$state")"
    eval "$mutate"
    run "$TMP/out.jsonl" "$TMP/c"
    grep -q -- "$pattern" "$TMP/err.txt" || { cat "$TMP/err.txt"; fail "$name: no warning naming '$pattern'"; }
    cmp -s "$TMP/ref.norm" <($NORM2 "$TMP/out.jsonl" 2) || fail "$name: the answers changed"
    note "$name: $(grep -m1 "warn" "$TMP/err.txt" | head -c 220)"
}
case_ truncated "bytes, its header says" 'truncate -s 300 "$f"'
case_ "flipped bytes" "checksum mismatch" '$PYTHON -c "import sys; p=sys.argv[1]; b=bytearray(open(p,\"rb\").read()); b[len(b)//2]^=0x5a; open(p,\"wb\").write(b)" "$f"'
case_ "another model's file" "made with another model or settings" 'cp "$other" "$f"'
case_ "another version" "state file version" '$PYTHON -c "import sys,struct; p=sys.argv[1]; b=bytearray(open(p,\"rb\").read()); b[8:12]=struct.pack(\"<I\",99); open(p,\"wb\").write(b)" "$f"'
case_ "a damaged manifest line" "do not parse" 'printf "{not json\n" >>"$TMP/c/manifest.jsonl"'
echo "PASS"
