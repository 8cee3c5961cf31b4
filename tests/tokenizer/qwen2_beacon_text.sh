#!/bin/bash
# Text in and out of a Qwen2-configured Activation Beacon v2 model folder whose tokenizer is a
# byte-level BPE tokenizer.json (trained here by the real `tokenizers` library with Qwen2's
# pre-tokenizer, ChatML specials and template; see qwen2_beacon_text.py), against that library:
#   - generate --prompt: the prompt's ids are the library's (no BOS, as Qwen2): the same greedy
#     ids as generate --input-ids with the library's encoding; the text is the library's decode
#     of the generated ids, invalid UTF-8 included;
#   - a batch: a stop string that spans two tokens cuts the text just before it (finish_reason
#     stop); a chat job renders the ChatML template from tokenizer_config.json and counts the
#     prompt tokens the library counts for that text.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/pyenv_tok.sh"
HELP="$TOK_PY $BRT_SOURCE_DIR/tests/tokenizer/qwen2_beacon_text.py"
M=$TMP/qwen2-beacon
$HELP make "$GOLDEN/beacon2-tiny" "$M" >/dev/null || fail "cannot make the model folder"
[ ! -e "$M/tokenizer.model" ] || fail "the folder has a tokenizer.model"
PROMPT="Lily saw a big red ball. She"

# ---- generate --prompt ----
"$BRT_BIN" generate --model "$M" --prompt "$PROMPT" -n 24 --greedy --json >"$TMP/g.json" 2>"$TMP/g.err" ||
    { cat "$TMP/g.err"; fail "generate --prompt on the Qwen2 folder"; }
grep -q "policy beacon_v2" "$TMP/g.err" || { cat "$TMP/g.err"; fail "the folder did not run as beacon_v2"; }
$TOK_PY - "$M" "$PROMPT" "$TMP/ids.safetensors" <<'PY' || fail "cannot write the library's ids"
import json, struct, sys
from tokenizers import Tokenizer
ids = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json").encode(sys.argv[2], add_special_tokens=False).ids
h = json.dumps({"input_ids": {"dtype": "I64", "shape": [1, len(ids)], "data_offsets": [0, 8 * len(ids)]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<%dq" % len(ids), *ids))
PY
"$BRT_BIN" generate --model "$M" --input-ids "$TMP/ids.safetensors" -n 24 --greedy --json >"$TMP/gi.json" 2>/dev/null ||
    fail "generate --input-ids"
$PYTHON - "$TMP/g.json" "$TMP/gi.json" <<'PY' || fail "the prompt's ids are not the library's"
import json, sys
a, b = (json.load(open(p))["generated_ids"] for p in sys.argv[1:3])
assert a == b, (a, b)
PY
ids=$($PYTHON -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["generated_ids"]))' "$TMP/g.json")
$HELP decode "$M" "$ids" >"$TMP/lib.txt"
$PYTHON -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["text"])' "$TMP/g.json" >"$TMP/ours.txt"
cmp -s "$TMP/lib.txt" "$TMP/ours.txt" ||
    fail "generated text differs from the library's decode: ours $(head -c 200 "$TMP/ours.txt" | od -c | head -3), library's $(head -c 200 "$TMP/lib.txt" | od -c | head -3)"
note "generate --prompt: ids as the library encodes them, text as it decodes ($(wc -c <"$TMP/ours.txt") bytes)"

# ---- batch: stop string across two tokens, chat through the ChatML template ----
$TOK_PY - "$M" "$PROMPT" "$ids" "$TMP/in.jsonl" "$TMP/expect.json" <<'PY' || fail "cannot pick a stop string"
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
prompt, ids = sys.argv[2], json.loads(sys.argv[3])
text = tok.decode(ids, skip_special_tokens=True)
# a token boundary inside plain text: the stop string takes two characters on each side
stop = None
for k in range(1, len(ids)):
    b = len(tok.decode(ids[:k], skip_special_tokens=True))
    s = text[b - 2:b + 2]
    if b >= 2 and len(s) == 4 and all(c.isascii() and c.isprintable() for c in s) and text.find(s) == b - 2:
        stop = s
        break
assert stop, "no token boundary inside plain text in %r" % text
chat = [{"role": "user", "content": "Where is Max?"}]
rendered = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhere is Max?<|im_end|>\n<|im_start|>assistant\n"
body = lambda **k: dict(k, max_tokens=24, temperature=0)
with open(sys.argv[4], "w") as f:
    for cid, url, b in [("plain", "/v1/completions", body(prompt=prompt)),
                        ("stop", "/v1/completions", body(prompt=prompt, stop=[stop])),
                        ("chat", "/v1/chat/completions", body(messages=chat))]:
        f.write(json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": b}) + "\n")
json.dump({"text": text, "stop": stop, "cut": text[:text.index(stop)],
           "chat_prompt_tokens": len(tok.encode(rendered, add_special_tokens=False).ids)}, open(sys.argv[5], "w"))
PY
"$BRT_BIN" run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --quiet 2>"$TMP/run.err" ||
    { cat "$TMP/run.err"; fail "the batch run"; }
$PYTHON - "$TMP/out.jsonl" "$TMP/expect.json" <<'PY' || fail "batch results"
import json, sys
r = {j["custom_id"]: j for j in map(json.loads, open(sys.argv[1]))}
e = json.load(open(sys.argv[2]))
for cid in ("plain", "stop", "chat"):
    assert r[cid]["error"] is None and r[cid]["response"]["status_code"] == 200, r[cid]
plain = r["plain"]["response"]["body"]["choices"][0]
assert plain["text"] == e["text"], (plain["text"], e["text"])
stop = r["stop"]["response"]["body"]["choices"][0]
assert stop["finish_reason"] == "stop", stop
assert stop["text"] == e["cut"], ("stop %r: got %r, want %r" % (e["stop"], stop["text"], e["cut"]))
chat = r["chat"]["response"]["body"]
assert chat["usage"]["prompt_tokens"] == e["chat_prompt_tokens"], (chat["usage"], e["chat_prompt_tokens"])
assert chat["choices"][0]["message"]["role"] == "assistant"
print("-- stop %r cut the text to %d characters; chat prompt %d tokens as ChatML renders it"
      % (e["stop"], len(stop["text"]), e["chat_prompt_tokens"]))
PY
echo "PASS"
