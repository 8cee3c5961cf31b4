#!/bin/bash
# generate holds --temperature and --top-p to the ranges a batch request is held to
# (runtime/api/request.c): temperature a number in [0, 2] (nan, inf, negative and above 2 refused,
# not silently sampled with), top_p in (0, 1] (a value that is 0 as a float refused too). A bad value
# is a usage error naming the flag and the value, exit 2, before any model is read; the bounds
# themselves are accepted.
. "$(dirname "$0")/../lib/common.sh"
M="$MODELS/stories260K"
gen() { "$BRT_BIN" generate --model "$M" --prompt "Once upon a time" -n 2 --quiet "$@"; }
for t in nan NaN inf -inf infinity -1 -0.001 2.0001 3 1e9 "" 0.5x; do
    expect_fail "--temperature '$t'" "--temperature wants a number in \[0, 2\], not '$t'" gen --temperature "$t"
    [ "$rc" -eq 2 ] || fail "--temperature '$t': exit $rc, expected 2"
done
for p in 0 -0 nan inf -0.5 1.0001 2 1e-50 ""; do
    expect_fail "--top-p '$p'" "--top-p wants a number in (0, 1\], not '$p'" gen --top-p "$p"
    [ "$rc" -eq 2 ] || fail "--top-p '$p': exit $rc, expected 2"
done
# the same bounds the batch path takes
for t in 0 2 0.7; do
    gen --temperature "$t" >/dev/null 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "--temperature $t refused"; }
done
for p in 1 0.01; do
    gen --top-p "$p" >/dev/null 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "--top-p $p refused"; }
done
note "--temperature 0, 2, 0.7 and --top-p 1, 0.01 run"
# and the batch path refuses what generate refuses
printf '%s\n' '{"custom_id": "t", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", "max_tokens": 1, "temperature": 2.5}}' \
    '{"custom_id": "p", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", "max_tokens": 1, "top_p": 0}}' >"$TMP/in.jsonl"
"$BRT_BIN" run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --quiet 2>/dev/null || true
[ "$(grep -c "out of range" "$TMP/out.jsonl")" -eq 2 ] || { cat "$TMP/out.jsonl"; fail "the batch path accepts what generate refuses"; }
echo "PASS"
