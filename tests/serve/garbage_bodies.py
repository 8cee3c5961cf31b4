"""Sends malformed and random request bodies to a running `beaconrt serve` (tests/serve): every
answer must be 200, 400 or 429 with OpenAI's error body, whatever the bytes.

argv: base URL, API key (may be empty), number of requests.
"""
import json, random, sys, urllib.request, urllib.error
url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(5)
values = [None, True, -1, 2**70, 1e308, "", "\u0000", [], {}, [[1]], {"a": 1}, "x" * 5000]
fields = ["prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "echo", "logprobs", "stream",
          "stream_options", "messages", "n", "top_logprobs", "ignore_eos"]
codes = {}
for i in range(n):
    if i % 3 == 0:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    else:
        obj = {"prompt": "hi", "max_tokens": 1}
        for _ in range(rng.randrange(1, 4)):
            obj[rng.choice(fields)] = rng.choice(values)
        body = json.dumps(obj).encode()
    path = "/v1/completions" if rng.random() < 0.8 else "/v1/chat/completions"
    req = urllib.request.Request(url + path, data=body, headers={"Authorization": "Bearer " + key} if key else {})
    try:
        code = urllib.request.urlopen(req, timeout=60).status
    except urllib.error.HTTPError as e:
        code = e.code
        err = json.loads(e.read())["error"]
        assert err["message"] and err["type"], err
    assert code in (200, 400, 429), (code, body[:200])
    codes[code] = codes.get(code, 0) + 1
print("garbage bodies:", codes)
