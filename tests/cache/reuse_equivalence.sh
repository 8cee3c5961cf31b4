#!/bin/bash
# A document read once, then asked three different questions: for every policy (full, beacon v1,
# beacon v2, LongLLaMA) and with 1, 2 and 3 ranks, the answers with the state cache (in host memory,
# and in the device tier) are byte-identical to three fresh runs without it; every question reports the document's tokens as
# cached_tokens, and the ranks' traces show the document's steps computed once (each question's
# first step is past them). Then the same from the disk tier in a second run (the states outlive the
# process), and with an adaptive ratio (beacon-tiny-adapt), whose steps depend on the whole length:
# a different question length must not reuse a state that would give other numbers.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
NORM2="$PYTHON $BRT_SOURCE_DIR/tests/cache/normalize_uncached.py"

with_tok() { # a golden folder with the 512-piece tokenizer, so prompts can be text
    mkdir -p "$TMP/m/$1"
    for f in "$GOLDEN/$1"/*; do ln -sf "$f" "$TMP/m/$1/"; done
    ln -sf "$MODELS/stories260K/tokenizer.model" "$TMP/m/$1/tokenizer.model"
    echo "$TMP/m/$1"
}
# make_batch OUT WORDS: the document alone, then three questions after it
make_batch() {
    $PYTHON - "$1" "$2" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
w = "once upon a time there was a little girl named Lily who loved to play in the park with her dog Max".split()
doc = " ".join(w[(i * 7) % len(w)] for i in range(n))
qs = ["Who was the girl?", "What did Lily love to do in the park with her dog?", "Max"]
with open(out, "w") as f:
    f.write(json.dumps({"custom_id": "doc", "method": "POST", "url": "/v1/completions",
                        "body": {"prompt": doc, "max_tokens": 4, "temperature": 0}}) + "\n")
    for i, q in enumerate(qs):
        f.write(json.dumps({"custom_id": "q%d" % i, "method": "POST", "url": "/v1/completions",
                            "body": {"prompt": doc + " " + q, "max_tokens": 10, "temperature": 0.8, "seed": i,
                                     "logprobs": 2}}) + "\n")
PY
}
# check_cached OUT TRACE: questions report cached tokens; their first steps in the trace are past 0
check_cached() {
    $PYTHON - "$1" "$2" <<'PY' || fail "$3: the document was not read once"
import json, sys
rows = {json.loads(l)["custom_id"]: json.loads(l) for l in open(sys.argv[1])}
cached = {k: r["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"] for k, r in rows.items()}
assert cached["doc"] == 0 and all(cached["q%d" % i] > 0 for i in range(3)), cached
first = {}
for line in open(sys.argv[2]):
    t = json.loads(line)
    if t["stage"] != 0:
        continue
    for ev in t["events"]:
        for job, idx in ev["steps"]:
            first[job] = min(first.get(job, idx), idx)
# jobs are numbered in submission order: the document is 1, the questions 2..4
assert first[1] == 0 and all(first[j] > 0 for j in (2, 3, 4)), first
print("cached tokens:", cached, "first steps:", first)
PY
}

for set in llama-tiny beacon-tiny beacon2-tiny longllama-tiny; do
    G=$(with_tok $set)
    words=600 x=""
    # plain attention: the document and question fit 1024 positions, in prefill steps of 128
    [ $set = llama-tiny ] && words=250 x="--prefill-chunk 128"
    make_batch "$TMP/in.jsonl" $words
    rm -f "$TMP/ref.jsonl"
    # shellcheck disable=SC2086
    "$BRT_BIN" run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --max-jobs 1 --quiet $x ||
        fail "$set: the reference run failed"
    $NORM2 "$TMP/ref.jsonl" 4 >"$TMP/ref.norm"
    for np in 1 2 3; do
        # host memory, then the device tier (the backend's own memory: a hit is a copy between
        # pools, no image), whose hits the run summary counts
        for tier in host-mb device-mb; do
            rm -f "$TMP/out.jsonl" "$TMP/trace.jsonl"
            # shellcheck disable=SC2086
            brt_mpirun $np run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --max-jobs 1 \
                --state-cache-$tier 64 --trace "$TMP/trace.jsonl" $x 2>"$TMP/err.txt" ||
                { cat "$TMP/err.txt"; fail "$set np $np $tier: the run with a state cache failed"; }
            $NORM2 "$TMP/out.jsonl" 4 >"$TMP/out.norm"
            cmp -s "$TMP/ref.norm" "$TMP/out.norm" ||
                { diff "$TMP/ref.norm" "$TMP/out.norm" | head; fail "$set np $np $tier: answers differ with the state cache"; }
            check_cached "$TMP/out.jsonl" "$TMP/trace.jsonl" "$set np $np $tier"
            want="3 hits of 4 lookups (0 from device memory"
            [ $tier = device-mb ] && want="3 hits of 4 lookups (3 from device memory"
            grep -qF "$want" "$TMP/err.txt" || { grep "state cache" "$TMP/err.txt"; fail "$set np $np $tier: expected '$want'"; }
        done
        note "$set, $np ranks: identical answers from host and device memory, the document read once"
    done
    # the disk tier: kept by one run, used by the next (another layout of the same split would not be)
    rm -rf "$TMP/dc"
    for run in 1 2; do
        rm -f "$TMP/out.jsonl"
        # shellcheck disable=SC2086
        brt_mpirun 2 run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --max-jobs 1 \
            --state-cache-dir "$TMP/dc" --trace "$TMP/trace.jsonl" --quiet $x 2>"$TMP/err.txt" ||
            { cat "$TMP/err.txt"; fail "$set: the run with a disk tier failed"; }
        $NORM2 "$TMP/out.jsonl" 4 >"$TMP/out.norm"
        cmp -s "$TMP/ref.norm" "$TMP/out.norm" || fail "$set: answers differ with the disk tier (run $run)"
    done
    $PYTHON - "$TMP/out.jsonl" <<'PY' || fail "$set: the second run did not read the document from disk"
import json, sys
c = [json.loads(l)["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"] for l in open(sys.argv[1])]
assert all(x > 0 for x in c), c
PY
    note "$set: the disk tier serves a second run, answers identical"
done

# an adaptive ratio is chosen from the whole length: prompts of other lengths plan other steps, so
# they get other keys; answers stay identical whatever is in the cache
G=$(with_tok beacon-tiny-adapt)
make_batch "$TMP/in.jsonl" 600
rm -f "$TMP/ref.jsonl" "$TMP/out.jsonl"
"$BRT_BIN" run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/ref.jsonl" --max-jobs 1 --quiet
"$BRT_BIN" run --model "$G" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --max-jobs 1 --state-cache-host-mb 64 --quiet
cmp -s <($NORM2 "$TMP/ref.jsonl" 4) <($NORM2 "$TMP/out.jsonl" 4) || fail "adaptive ratio: answers differ with the cache"
note "beacon-tiny-adapt: identical answers ($(grep -o '"cached_tokens":[0-9]*' "$TMP/out.jsonl" | tr '\n' ' '))"
echo "PASS"
