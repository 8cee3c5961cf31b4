#!/usr/bin/python3
"""A bounded load generator for `beaconrt serve` (standard library only): a fixed number of
streamed /v1/completions requests from C concurrent clients, within a time limit, on loopback.

    serve_load.py --url http://127.0.0.1:8000 [--requests 64] [--concurrency 16] [--prompt-words 800]
                  [--max-tokens 32] [--time-limit 300] [--retries 0] [--api-key KEY] [--seed 1] [--json OUT]
    serve_load.py --write-batch FILE [same --requests/--prompt-words/--max-tokens/--seed]

Each request has its own prompt (words drawn by its index) and asks for max_tokens tokens with
ignore_eos, so every run does the same work. Prints requests/s, time to first token p50/p99,
time per output token, generated and prompt tokens/s, and the status codes (429s are refusals
the server declared, counted apart from failures; with --retries N a client waits Retry-After and
tries again, as the openai SDK does). --json writes the figures for scripts; --write-batch writes
the same requests as a batch file, to measure the offline ceiling with `beaconrt run`.
"""
import argparse
import concurrent.futures
import http.client
import json
import random
import sys
import time
import urllib.parse

WORDS = ("the little girl saw a big red ball in the park and her dog ran to get it while mom read a book "
         "under an old tree near the river where ducks swam all day long").split()


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def body_of(args, i):
    """Request i's body: its own prompt (words drawn by its index), max_tokens with ignore_eos."""
    r = random.Random(args.seed * 100003 + i)
    prompt = " ".join(r.choice(WORDS) for _ in range(args.prompt_words))
    # logprobs 0: every token comes with an entry, so each one is a chunk even when its text is
    # empty (random models generate ids the 512-piece tokenizer has no text for)
    return {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True, "logprobs": 0}


def one(args, host, port, i, deadline):
    """One request, retried after a 429 (waiting Retry-After) up to --retries times."""
    refusals = 0
    while True:
        out = attempt(args, host, port, i, deadline)
        if out["status"] != 429 or refusals >= args.retries or time.monotonic() > deadline:
            out["refusals"] = refusals + (out["status"] == 429)
            return out
        refusals += 1
        time.sleep(min(float(out.get("retry_after") or 1), 5.0))


def attempt(args, host, port, i, deadline):
    body = dict(body_of(args, i), stream=True, stream_options={"include_usage": True})
    body = json.dumps(body)
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    t0 = time.monotonic()
    out = {"status": None, "ttft": None, "e2e": None, "gen": 0, "prompt": 0, "error": None}
    try:
        c = http.client.HTTPConnection(host, port, timeout=max(1.0, deadline - t0))
        c.request("POST", "/v1/completions", body, headers)
        resp = c.getresponse()
        out["status"] = resp.status
        if resp.status != 200:
            out["retry_after"] = resp.getheader("Retry-After")
            out["error"] = resp.read(300).decode(errors="replace")
            return out
        done = False
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                out["error"] = ev["error"]["message"]
                break
            if ev.get("usage"):
                out["gen"], out["prompt"] = ev["usage"]["completion_tokens"], ev["usage"]["prompt_tokens"]
            elif ev["choices"] and (ev["choices"][0]["text"] or ev["choices"][0]["logprobs"]) and out["ttft"] is None:
                out["ttft"] = time.monotonic() - t0
        out["e2e"] = time.monotonic() - t0
        if not done and not out["error"]:
            out["error"] = "the stream ended without [DONE]"
        c.close()
    except Exception as ex:  # a failure of this request, reported with the rest
        out["error"] = "%s: %s" % (type(ex).__name__, ex)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--prompt-words", type=int, default=800)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=300)
    ap.add_argument("--retries", type=int, default=0)
    ap.add_argument("--api-key")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--write-batch", help="write the same requests as an OpenAI Batch file and exit")
    args = ap.parse_args()
    if args.write_batch:
        with open(args.write_batch, "w") as f:
            for i in range(args.requests):
                f.write(json.dumps({"custom_id": "req-%d" % i, "method": "POST", "url": "/v1/completions",
                                    "body": body_of(args, i)}) + "\n")
        return
    u = urllib.parse.urlparse(args.url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("serve_load.py: loopback only (got %s)" % u.hostname)
    t0 = time.monotonic()
    deadline = t0 + args.time_limit
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as ex:
        res = list(ex.map(lambda i: one(args, u.hostname, u.port, i, deadline), range(args.requests)))
    wall = time.monotonic() - t0
    ok = [r for r in res if r["status"] == 200 and not r["error"]]
    refused = [r for r in res if r["status"] == 429]
    failed = [r for r in res if r not in ok and r not in refused]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    tpot = [(r["e2e"] - r["ttft"]) / (r["gen"] - 1) for r in ok if r["ttft"] is not None and r["gen"] > 1]
    gen = sum(r["gen"] for r in ok)
    prompt = sum(r["prompt"] for r in ok)
    fig = {"requests": args.requests, "concurrency": args.concurrency, "ok": len(ok), "refused_429": len(refused),
           "answers_429": sum(r.get("refusals", 0) for r in res),
           "failed": len(failed), "wall_s": wall, "requests_per_s": len(ok) / wall,
           "ttft_p50_s": percentile(ttft, 50), "ttft_p99_s": percentile(ttft, 99),
           "tpot_p50_s": percentile(tpot, 50), "gen_tokens_per_s": gen / wall, "prompt_tokens_per_s": prompt / wall,
           "prompt_tokens_mean": prompt / len(ok) if ok else 0,
           "errors": sorted({str(r["error"])[:200] for r in failed})[:5]}
    print("%d requests, %d clients, %.1fs: %d ok, %d refused (429) in the end, %d failed; %d 429 answers in all" %
          (args.requests, args.concurrency, wall, len(ok), len(refused), len(failed), fig["answers_429"]))
    print("  requests/s %.2f | TTFT p50 %.3fs p99 %.3fs | time per output token p50 %.4fs" %
          (fig["requests_per_s"], fig["ttft_p50_s"], fig["ttft_p99_s"], fig["tpot_p50_s"]))
    print("  generated %.0f tok/s | prompt %.0f tok/s (%.0f prompt tokens per request)" %
          (fig["gen_tokens_per_s"], fig["prompt_tokens_per_s"], fig["prompt_tokens_mean"]))
    for e in fig["errors"]:
        print("  error:", e)
    if args.json:
        json.dump(fig, open(args.json, "w"))


if __name__ == "__main__":
    main()
