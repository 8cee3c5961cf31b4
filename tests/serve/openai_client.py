"""Talks to a running `beaconrt serve` with the official openai package (tests/serve/openai_client.sh).

argv: base URL, API key, reference JSON (generated ids and text of the greedy prompt from
`beaconrt generate`, and the `beaconrt run` result line). Each check prints one line; any failure
raises.
"""
import json
import sys

import openai

base, key, ref_path = sys.argv[1], sys.argv[2], sys.argv[3]
ref = json.load(open(ref_path))
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)
MODEL = "stories260K"
PROMPT = ref["prompt"]
N = len(ref["generated_ids"])


def ids_of(tokens):
    """Token ids from logprob entries named "token_id:ID" (return_tokens_as_token_ids)."""
    return [int(t.split(":", 1)[1]) for t in tokens]


# /v1/models
models = client.models.list()
assert [m.id for m in models.data] == [MODEL], models
print("models:", [m.id for m in models.data])

# completions, greedy: the same tokens as `beaconrt generate` and `beaconrt run`
c = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=N, temperature=0, logprobs=2,
                              extra_body={"return_tokens_as_token_ids": True})
ch = c.choices[0]
assert ids_of(ch.logprobs.tokens) == ref["generated_ids"], (ch.logprobs.tokens, ref["generated_ids"])
assert ch.text == ref["text"], (ch.text, ref["text"])
assert ch.text == ref["run_text"], (ch.text, ref["run_text"])
assert ids_of(ch.logprobs.tokens) == ref["run_ids"], (ch.logprobs.tokens, ref["run_ids"])
assert c.usage.prompt_tokens == ref["prompt_tokens"] and c.usage.completion_tokens == N, c.usage
assert c.usage.total_tokens == c.usage.prompt_tokens + N
assert ch.finish_reason == "length"
# each top-2 list holds the chosen token (greedy) with the same logprob, the best first
for tok, lp, top in zip(ch.logprobs.tokens, ch.logprobs.token_logprobs, ch.logprobs.top_logprobs):
    assert len(top) == 2 and tok in top and abs(top[tok] - lp) < 1e-6, (tok, lp, top)
    assert lp <= 0 and max(top.values()) == lp, (tok, lp, top)
print("completions greedy: %d tokens = generate = run: %r" % (N, ch.text))

# the same request streamed: the chunks add up to the same text and tokens, usage at the end
stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=N, temperature=0, logprobs=1, stream=True,
                                   stream_options={"include_usage": True},
                                   extra_body={"return_tokens_as_token_ids": True})
text, toks, usage, finish, chunks = "", [], None, None, 0
for chunk in stream:
    chunks += 1
    if chunk.usage:
        usage = chunk.usage
        assert chunk.choices == []
        continue
    choice = chunk.choices[0]
    text += choice.text
    if choice.logprobs and choice.logprobs.tokens:
        toks += choice.logprobs.tokens
    if choice.finish_reason:
        finish = choice.finish_reason
assert text == ref["text"] and ids_of(toks) == ref["generated_ids"], (text, toks)
assert finish == "length" and usage.completion_tokens == N and usage.prompt_tokens == ref["prompt_tokens"], usage
assert chunks >= N, chunks
print("completions streamed: %d chunks, same text and tokens, usage %s" % (chunks, usage.total_tokens))

# echo: the prompt comes back in front of the completion
e = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0, echo=True)
assert e.choices[0].text.startswith(PROMPT) and e.choices[0].text[len(PROMPT):] == ref["text_4"], e.choices[0].text
print("echo:", repr(e.choices[0].text))

# stop strings: the text ends before the first stop string, finish_reason stop, streamed or not
stop = ref["stop"]
s = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=N, temperature=0, stop=[stop, "zzz"])
assert s.choices[0].finish_reason == "stop", s.choices[0]
assert s.choices[0].text == ref["text"].split(stop)[0], (s.choices[0].text, stop)
st = "".join(c.choices[0].text for c in client.completions.create(
    model=MODEL, prompt=PROMPT, max_tokens=N, temperature=0, stop=stop, stream=True) if c.choices)
assert st == s.choices[0].text, (st, s.choices[0].text)
print("stop %r: %r (streamed the same)" % (stop, s.choices[0].text))

# sampling with a seed is reproducible
a = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
b = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
assert a.choices[0].text == b.choices[0].text, (a.choices[0].text, b.choices[0].text)
print("seed 7 twice:", repr(a.choices[0].text))

# chat, with the llama-2 template: non-streamed with logprobs, then streamed
msgs = [{"role": "system", "content": "You tell short stories."}, {"role": "user", "content": "Tell me a story."}]
r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10, temperature=0, logprobs=True,
                                   top_logprobs=3)
m = r.choices[0]
assert m.message.role == "assistant" and m.message.content, m
assert r.object == "chat.completion" and r.usage.completion_tokens == len(m.logprobs.content) <= 10, r.usage
assert r.usage.prompt_tokens == ref["chat_prompt_tokens"], (r.usage.prompt_tokens, ref["chat_prompt_tokens"])
assert "".join(t.token for t in m.logprobs.content) == m.message.content
for t in m.logprobs.content:
    assert len(t.top_logprobs) == 3 and t.top_logprobs[0].logprob == t.logprob, t
    assert bytes(t.bytes) == t.token.encode(), t
print("chat: %r (%d prompt tokens)" % (m.message.content, r.usage.prompt_tokens))
parts, roles, usage = [], [], None
for chunk in client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10, temperature=0, stream=True,
                                            stream_options={"include_usage": True}):
    assert chunk.object == "chat.completion.chunk"
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        roles.append(c.delta.role)
        parts.append(c.delta.content or "")
assert "".join(parts) == m.message.content and roles[0] == "assistant" and usage.completion_tokens == r.usage.completion_tokens
print("chat streamed: the same content in %d chunks" % len(parts))

# errors come back as the SDK's exceptions with OpenAI's error body
bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong-key", max_retries=0)
try:
    bad.completions.create(model=MODEL, prompt="x", max_tokens=1)
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as ex:
    assert ex.status_code == 401, ex
print("wrong key: 401")
for what, kw, pattern in [("temperature out of range", {"temperature": 3}, "temperature"),
                          ("logprobs out of range", {"logprobs": 9}, "logprobs"),
                          ("n > 1", {"n": 2}, "n is not supported"),
                          ("prompt too long", {"prompt": "once upon a time " * 200}, "context")]:
    args = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    args.update(kw)
    try:
        client.completions.create(**args)
        raise AssertionError(what + " was accepted")
    except openai.BadRequestError as ex:
        assert ex.status_code == 400 and pattern in ex.body["message"], (what, ex.body)
        print("%s: 400 %s" % (what, ex.body["message"][:100]))
print("PASS openai client")
