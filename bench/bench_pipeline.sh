#!/bin/bash
# Throughput of a batch of long documents through beaconrt run with 1 and 2 pipeline stages
# (same machine, same total cores), and each stage's idle fraction, from the ranks' own traces.
#   bench/bench_pipeline.sh [--docs N] [--tokens L] [--model DIR] [--quick]
# Default model: the BASELINES "mid" Llama (hidden 768, 12 layers, vocab 32000, f32 random weights)
# with Activation Beacon v1 (window 1024, ratio 8); documents of about L tokens.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BRT_BIN:-$here/build/beaconrt}
PY=/usr/bin/python3
docs=8 tokens=4096 model="" gen=16
while [ $# -gt 0 ]; do
    case $1 in
        --docs) docs=$2; shift 2 ;;
        --tokens) tokens=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --quick) docs=4 tokens=2048; shift ;;
        *) echo "usage: $0 [--docs N] [--tokens L] [--model DIR] [--quick]" >&2; exit 2 ;;
    esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$model" ]; then
    model=$tmp/mid
    $PY "$here/tests/tools/make_model.py" "$model" --hidden 768 --layers 12 --heads 12 --kv-heads 12 --inter 2048 \
        --vocab 32000 --max-pos 4096 --set beacon_window=1024 --set 'beacon_stride=[1024]' --set 'beacon_ratio=[8]'
fi
# documents of ~L tokens of the 512-piece tokenizer: about 1.6 tokens per word here
$PY - "$tmp/in.jsonl" "$docs" "$tokens" "$gen" <<'PY'
import json, random, sys
out, n, L, gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
words = "the little girl saw a big red ball in the park and her dog ran to get it while mom read a book".split()
with open(out, "w") as f:
    for i in range(n):
        r = random.Random(i)
        text = " ".join(r.choice(words) for _ in range(int(L / 1.6)))
        f.write(json.dumps({"custom_id": f"doc-{i}", "method": "POST", "url": "/v1/completions",
                            "body": {"prompt": text, "max_tokens": gen, "temperature": 0}}) + "\n")
PY
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cores=$(nproc)
echo "beaconrt pipeline benchmark: $docs documents of ~$tokens tokens + $gen generated, model $(basename "$model"), $cores cores"
printf "%-22s %8s %10s %10s %12s  %s\n" layout seconds docs/s tokens/s "KV peak MiB" "idle fraction per stage"
for layout in "1 1" "2 2"; do
    set -- $layout
    np=$1 pp=$2
    rm -f "$tmp/out.jsonl"
    t0=$(date +%s.%N)
    mpirun -np "$np" "$BIN" run --model "$model" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" --pp "$pp" \
        --trace "$tmp/trace.jsonl" --quiet 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    $PY - "$tmp/out.jsonl" "$tmp/trace.jsonl" "$np" "$pp" "$t0" "$t1" <<'PY'
import json, sys
out, trace, np_, pp, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
rows = [json.loads(l) for l in open(out)]
assert all(r["error"] is None for r in rows), [r["error"] for r in rows if r["error"]]
tok = sum(r["response"]["body"]["usage"]["total_tokens"] for r in rows)
ranks = [json.loads(l) for l in open(trace)]
# the run phase: first to last micro-batch on any rank (model loading excluded)
b = min(e["t0"] for r in ranks for e in r["events"]); e_ = max(e["t1"] for r in ranks for e in r["events"])
span = e_ - b
idle = " ".join(f"s{r['stage']}={1 - sum(e['t1'] - e['t0'] for e in r['events']) / span:.2f}" for r in sorted(ranks, key=lambda r: r["rank"]))
kv = max(r["kv_peak_bytes"] for r in ranks) / 1048576
label = f"np {np_}, pp {pp}"
print(f"{label:<22} {span:8.2f} {len(rows)/span:10.3f} {tok/span:10.0f} {kv:12.1f}  {idle}   (process wall {t1 - t0:.1f}s)")
PY
done
