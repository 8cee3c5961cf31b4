#!/bin/bash
# The official openai Python package (from PyPI, in a venv) against `mpirun -np 2 beaconrt serve`
# (two pipeline stages, an API key from the environment, the llama-2 chat template): models,
# completions and chat, streamed and not, logprobs in each endpoint's format, echo, stop strings,
# seeds, usage, a wrong key (401) and bad requests (400). The greedy completion must give the same
# token ids and text as `beaconrt generate` and `beaconrt run`.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
PY=$(openai_python)
M=$MODELS/stories260K
PROMPT="Once upon a time"
N=24

# references from the other two ways in
"$BRT_BIN" generate --model "$M" --prompt "$PROMPT" -n $N --greedy --json --quiet >"$TMP/gen.json"
"$BRT_BIN" generate --model "$M" --prompt "$PROMPT" -n 4 --greedy --json --quiet >"$TMP/gen4.json"
$PYTHON - "$TMP/in.jsonl" "$PROMPT" $N <<'PY'
import json, sys
out, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(out, "w") as f:
    f.write(json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/completions",
                        "body": {"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 0,
                                 "return_tokens_as_token_ids": True}}) + "\n")
    f.write(json.dumps({"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions",
                        "body": {"messages": [{"role": "system", "content": "You tell short stories."},
                                              {"role": "user", "content": "Tell me a story."}],
                                 "max_tokens": 10, "temperature": 0}}) + "\n")
PY
"$BRT_BIN" run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/run.jsonl" --chat-template llama-2 --quiet
$PYTHON - "$TMP" "$PROMPT" <<'PY'
import json, sys
d, prompt = sys.argv[1], sys.argv[2]
gen, gen4 = json.load(open(d + "/gen.json")), json.load(open(d + "/gen4.json"))
run = {json.loads(l)["custom_id"]: json.loads(l)["response"]["body"] for l in open(d + "/run.jsonl")}
words = gen["text"].split()
ref = {"prompt": prompt, "generated_ids": gen["generated_ids"], "text": gen["text"], "text_4": gen4["text"],
       "run_text": run["c"]["choices"][0]["text"],
       "run_ids": [int(t.split(":")[1]) for t in run["c"]["choices"][0]["logprobs"]["tokens"]], "prompt_tokens": run["c"]["usage"]["prompt_tokens"],
       "chat_prompt_tokens": run["chat"]["usage"]["prompt_tokens"], "stop": " " + words[4]}
assert gen["finish_reason"] == "length" and len(words) > 5, gen
json.dump(ref, open(d + "/ref.json", "w"))
print("reference:", ref)
PY

export BEACONRT_API_KEY=test-key-1234
serve_start 2 --model "$M" --chat-template llama-2
API_KEY=$BEACONRT_API_KEY
"$PY" "$BRT_SOURCE_DIR/tests/serve/openai_client.py" "$URL" "$API_KEY" "$TMP/ref.json" || {
    cat "$SERVER_LOG" >&2
    fail "the openai client's checks failed"
}
[ "$(metric beaconrt_requests_total 'result="failed"')" = 0 ] || fail "failed requests in /metrics"
[ "$(metric beaconrt_requests_total 'result="ok"')" -eq 9 ] || fail "ok requests: want the 9 that succeeded from /metrics"
serve_stop
echo "PASS"
