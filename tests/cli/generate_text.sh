#!/bin/bash
# The README's first command works: greedy text from the embedded stories260K model continues "Once upon
# a time" with the known story (Karpathy's llama2.c doc/stories260K.md, reproduced by transformers in
# models/stories260K/reference.json); --help of each command exits 0 and documents its flags; inspect
# reports the model's 260032 parameters.
. "$(dirname "$0")/../lib/common.sh"
M="$MODELS/stories260K"

"$BRT_BIN" generate --model "$M" --prompt "Once upon a time" -n 40 --greedy >"$TMP/out.txt" 2>"$TMP/err.txt" ||
    { cat "$TMP/err.txt"; fail "generate exited non-zero"; }
note "generate printed: $(head -c 200 "$TMP/out.txt")"
want=", there was a little girl named Lily"
case "$(cat "$TMP/out.txt")" in
"$want"*) ;;
*) fail "generate's text does not start with '$want'" ;;
esac
# the whole known continuation of 40 tokens (reference.json bos_prompt greedy_text, after "Once upon a time")
full=", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
[ "$(cat "$TMP/out.txt")" = "$full" ] || fail "generate's 40-token text is not '$full'"
# the text goes to stdout, progress to stderr
grep -q "Lily" "$TMP/err.txt" && fail "story text on stderr"
grep -q "5 prompt tokens" "$TMP/err.txt" || { cat "$TMP/err.txt"; fail "no '5 prompt tokens' info line (BOS + 4 tokens)"; }

# same with --quiet: nothing on stderr, same text
"$BRT_BIN" generate --model "$M" --prompt "Once upon a time" -n 40 --greedy --quiet >"$TMP/q.txt" 2>"$TMP/qerr.txt"
[ ! -s "$TMP/qerr.txt" ] || { cat "$TMP/qerr.txt"; fail "--quiet still printed on stderr"; }
cmp -s "$TMP/out.txt" "$TMP/q.txt" || fail "--quiet changed the text"

# --json: ids of the text; [BOS] + "Once upon a time" is 1 403 407 261 378 and the story goes on with
# 432 383 286 261 376 298 315 421 395 317 (", there was a little girl named Lily")
"$BRT_BIN" generate --model "$M" --prompt "Once upon a time" -n 10 --greedy --json --quiet >"$TMP/j.json"
"$PYTHON" - "$TMP/j.json" <<'PY' || fail "generate --json output is wrong"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["generated_ids"] == [432, 383, 286, 261, 376, 298, 315, 421, 395, 317], o
assert o["text"] == ", there was a little girl named Lily", o
print("-- generate --json:", o)
PY

# --help: exit 0, usage on stdout, every flag documented
check_help() {
    local cmd=$1 flag
    shift
    "$BRT_BIN" "$cmd" --help >"$TMP/help.txt" 2>"$TMP/help.err" || fail "$cmd --help exited non-zero"
    grep -q "^usage: beaconrt $cmd" "$TMP/help.txt" || { cat "$TMP/help.txt"; fail "$cmd --help: no usage line"; }
    for flag in "$@"; do
        grep -q -- "$flag" "$TMP/help.txt" || fail "$cmd --help does not mention $flag"
    done
    note "$cmd --help: exit 0, mentions $*"
}
check_help generate --model --prompt --prompt-file --input-ids --max-tokens --temperature --top-p --seed --greedy \
    --ignore-eos --json --policy --threads --quiet
check_help logits --model --input-ids --out --policy --threads --quiet
check_help inspect --model --doc-tokens --max-tokens --json --policy

# inspect: 260032 parameters (264128 values in stories260K.bin minus the 2 x 512 x 4 freq_cis tables,
# which the HF layout does not store)
"$BRT_BIN" inspect --model "$M" >"$TMP/inspect.txt" || fail "inspect exited non-zero"
grep -q "^parameters *260032 " "$TMP/inspect.txt" || { cat "$TMP/inspect.txt"; fail "inspect does not report 260032 parameters"; }
grep -q "5 layers, hidden 64, 8 heads (4 kv, head dim 8), mlp 172, vocab 512" "$TMP/inspect.txt" ||
    { cat "$TMP/inspect.txt"; fail "inspect's architecture line is wrong"; }
"$BRT_BIN" inspect --model "$M" --json >"$TMP/inspect.json" || fail "inspect --json exited non-zero"
"$PYTHON" -c "import json, sys; o = json.load(open(sys.argv[1])); sys.exit(0 if o['parameters'] == 260032 else 1)" \
    "$TMP/inspect.json" || { cat "$TMP/inspect.json"; fail "inspect --json: parameters is not 260032"; }

# usage errors: no model, unknown flag -> exit 2 with a message, nothing on stdout
expect_fail "generate without --model" "--model DIR is required" "$BRT_BIN" generate --prompt hi
[ "$rc" -eq 2 ] || fail "generate without --model: exit $rc, want 2"
expect_fail "generate with an unknown flag" "see beaconrt generate --help" "$BRT_BIN" generate --model "$M" --no-such-flag
[ "$rc" -eq 2 ] || fail "unknown flag: exit $rc, want 2"
