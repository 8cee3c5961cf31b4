# Shared by tests/models/stories*.sh (sourced after common.sh): reproduce a TinyStories model folder's
# reference.json (official transformers LlamaForCausalLM, float32; see the folder's README.md).
#   reference_model DIR TOL [BEYOND_CONTEXT_ENTRY]
# For every entry with input_ids and greedy_new_ids (bos_prompt, long_prompt and any extra one):
#  * last-position logits (one forward over the entry's input_ids) vs logits_last within TOL, and the
#    top-k list (top5_last_logits / top10_last_logits): same ids in the same order, logits within TOL;
#  * greedy continuation from the ids: greedy_new_ids identical, the "text" field identical to
#    greedy_text (leading-space rule: tests/tools/reference_json.py);
#  * entries with a text prompt: the same through the tokenizer, `generate --prompt-file` with the
#    text (the CLI adds BOS), and the prompt token count it reports equals n_tokens. (Exact ids of
#    BOS + encode(text): tests/unit/test_references.c.)
# BEYOND_CONTEXT_ENTRY names an entry that runs past max_position_embeddings: reference.json says to use
# it only for runtimes that do not enforce the limit. beaconrt does not today, so it is checked like the
# others; should beaconrt start refusing such inputs, a clean refusal that names max_position_embeddings
# is accepted for that entry instead.

ref_json() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/reference_json.py" "$@"; }
st_util() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/st_util.py" "$@"; }

reference_model() {
    local dir=$1 tol=$2 beyond=${3:-} e n ref="$1/reference.json" n_entries=0
    [ -f "$ref" ] || fail "$ref is missing"
    for e in $(ref_json entries "$ref"); do
        n_entries=$((n_entries + 1))
        n=$(st_util json-get "$ref" "$e.greedy_new_ids" | "$PYTHON" -c "import json, sys; print(len(json.load(sys.stdin)))")
        note "$e: $(st_util json-get "$ref" "$e.input_ids" | "$PYTHON" -c "import json, sys; print(len(json.load(sys.stdin)))") prompt tokens, $n greedy tokens"
        st_util ids-json "$TMP/$e.ids.st" "$ref" "$e.input_ids" || fail "st_util ids-json failed"

        # last-position logits
        if ! "$BRT_BIN" logits --model "$dir" --input-ids "$TMP/$e.ids.st" --out "$TMP/$e.logits.st" --quiet \
            2>"$TMP/$e.err"; then
            cat "$TMP/$e.err" >&2
            if [ "$e" = "$beyond" ] && grep -q "max_position_embeddings" "$TMP/$e.err"; then
                note "$e: refused past max_position_embeddings (reference.json: only for runtimes without the limit)"
                continue
            fi
            fail "$e: beaconrt logits failed"
        fi
        st_util vec-json "$TMP/$e.last.st:logits_last" "$ref" "$e.logits_last" || fail "st_util vec-json failed"
        "$CHECK" lastrows "$TMP/$e.logits.st:logits" "$TMP/$e.last.st:logits_last" 1 "$tol" ||
            fail "$e: last-position logits differ from logits_last"
        local k
        for k in top5_last_logits top10_last_logits; do
            if st_util json-get "$ref" "$e.$k" >/dev/null 2>&1; then
                st_util topk "$TMP/$e.logits.st:logits" "$ref" "$e.$k" "$tol" || fail "$e: $k differs"
            fi
        done

        # greedy continuation from the ids (EOS stopping off, as the reference)
        "$BRT_BIN" generate --model "$dir" --input-ids "$TMP/$e.ids.st" -n "$n" --greedy --ignore-eos --json --quiet \
            >"$TMP/$e.gen.json" || fail "$e: beaconrt generate failed"
        ref_json check-gen "$TMP/$e.gen.json" "$ref" "$e" || fail "$e: continuation differs from the reference"

        # the same from the prompt text, through the model's tokenizer
        if st_util json-get "$ref" "$e.text" >/dev/null 2>&1; then
            note "$e: again from the prompt text (generate --prompt-file)"
            ref_json text "$ref" "$e" "$TMP/$e.txt"
            "$BRT_BIN" generate --model "$dir" --prompt-file "$TMP/$e.txt" -n "$n" --greedy --ignore-eos --json \
                >"$TMP/$e.tgen.json" 2>"$TMP/$e.tgen.err" || { cat "$TMP/$e.tgen.err"; fail "$e: generate --prompt-file failed"; }
            local want
            want=$(st_util json-get "$ref" "$e.n_tokens")
            grep -q "[, ]$want prompt tokens" "$TMP/$e.tgen.err" ||
                { cat "$TMP/$e.tgen.err"; fail "$e: the prompt text did not become $want tokens"; }
            ref_json check-gen "$TMP/$e.tgen.json" "$ref" "$e" || fail "$e (from text): continuation differs from the reference"
        fi
    done
    [ "$n_entries" -ge 2 ] || fail "$ref: expected at least bos_prompt and long_prompt, found $n_entries entries"
}
