#!/bin/bash
# The same batch gives identical outputs with 1, 2, 3 and 4 ranks, in pipeline and data-parallel
# splits, with small micro-batches and one micro-batch in flight, for a model of every policy
# (full, beacon v1, beacon v2, LongLLaMA); and the scored logprobs of the golden inputs match the
# official code's logits within 1e-4 in every layout.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"

layouts=("1" "2" "3" "2 --dp 2" "4 --pp 2 --dp 2" "1 --max-rows 128 --prefill-chunk 96 --max-inflight 1" "2 --max-inflight 1 --max-jobs 1")
# golden folders carry no tokenizer: give them the 512-piece one so outputs have text
with_tok() {
    mkdir -p "$TMP/m/$1"
    for f in "$GOLDEN/$1"/*; do ln -sf "$f" "$TMP/m/$1/"; done
    ln -sf "$MODELS/stories260K/tokenizer.model" "$TMP/m/$1/tokenizer.model"
    echo "$TMP/m/$1"
}
for set in llama-tiny beacon-tiny beacon2-tiny longllama-tiny; do
    G=$(with_tok $set)
    $PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" golden "$G"
    ref=""
    for layout in "${layouts[@]}"; do
        run_layout "$layout" "$TMP/out.jsonl" --model "$G" --input "$TMP/in.jsonl"
        $NORM "$TMP/out.jsonl" 6 > "$TMP/norm.json"
        if [ -z "$ref" ]; then
            cp "$TMP/norm.json" "$TMP/ref.json"; ref=1
            # scoring rows vs the official logits: logprob(token i) = log_softmax(logits[i-1])[token i]
            $PYTHON - "$TMP/out.jsonl" "$G/golden.safetensors" <<'PY' || fail "$set: scored logprobs differ from the golden logits"
import json, struct, sys
import numpy as np
def tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); b, e = h[name]["data_offsets"]
        f.seek(8 + n + b); raw = f.read(e - b)
    dt = {"F32": np.float32, "I64": np.int64}[h[name]["dtype"]]
    return np.frombuffer(raw, dtype=dt).reshape(h[name]["shape"])
rows = {json.loads(l)["custom_id"]: json.loads(l) for l in open(sys.argv[1])}
for cid, pre in (("score-long", ""), ("score-short", "short_")):
    lp = rows[cid]["response"]["body"]["choices"][0]["logprobs"]["token_logprobs"]
    logits = tensor(sys.argv[2], pre + "logits")[0].astype(np.float64)
    ids = tensor(sys.argv[2], pre + "input_ids")[0]
    ls = logits - (logits.max(1, keepdims=True) + np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)))
    want = ls[np.arange(len(ids) - 1), ids[1:]]
    got = np.array(lp[1:len(ids)], dtype=np.float64)
    assert lp[0] is None, "the first prompt token has no logprob"
    d = np.abs(got - want).max()
    print(f"{cid}: {len(want)} prompt logprobs vs golden logits: max |diff| {d:.2e}")
    assert d <= 1e-4, d
PY
        elif ! cmp -s "$TMP/ref.json" "$TMP/norm.json"; then
            diff "$TMP/ref.json" "$TMP/norm.json" | head -20 >&2
            fail "$set: layout '$layout' gave different outputs than layout '${layouts[0]}'"
        fi
        note "$set: layout -np $layout: identical"
    done
done

# the transport's chunking (messages over 2 GiB are split) exercised with tiny chunks
G=$(with_tok beacon-tiny)
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in2.jsonl" golden "$G"
run_layout "1" "$TMP/one.jsonl" --model "$G" --input "$TMP/in2.jsonl"
BRT_MPI_CHUNK_BYTES=1000 run_layout "3" "$TMP/chunked.jsonl" --model "$G" --input "$TMP/in2.jsonl"
cmp -s <($NORM "$TMP/one.jsonl") <($NORM "$TMP/chunked.jsonl") || fail "1000-byte chunks changed the outputs"
note "messages in 1000-byte chunks: identical"
echo "PASS"
