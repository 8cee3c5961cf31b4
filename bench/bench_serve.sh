#!/bin/bash
# Serving throughput and latency of `beaconrt serve` under a bounded load (bench/serve_load.py:
# streamed requests from concurrent clients on loopback), beside its ceiling on the same ranks:
# the same requests as one batch through `beaconrt run`.
#   bench/bench_serve.sh [--model DIR] [--np N] [--requests R] [--concurrency C] [--prompt-words W]
#                        [--max-tokens T] [--quick]
# Default model: the BASELINES "mid" Llama (hidden 768, 12 layers, vocab 32000, f32 random weights)
# with Activation Beacon v1 (window 1024, ratio 8); 2 ranks (2 pipeline stages).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/serve_util.sh"
BIN=${BRT_BIN:-$here/build/beaconrt}
PY=/usr/bin/python3
model="" np=2 requests=32 conc=8 words=1200 maxtok=32
while [ $# -gt 0 ]; do
    case $1 in
        --model) model=$2; shift 2 ;;
        --np) np=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --concurrency) conc=$2; shift 2 ;;
        --prompt-words) words=$2; shift 2 ;;
        --max-tokens) maxtok=$2; shift 2 ;;
        --quick) requests=16 words=600; shift ;;
        *) echo "usage: $0 [--model DIR] [--np N] [--requests R] [--concurrency C] [--prompt-words W] [--max-tokens T] [--quick]" >&2; exit 2 ;;
    esac
done
tmp=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
if [ -z "$model" ]; then
    model=$tmp/mid
    $PY "$here/tests/tools/make_model.py" "$model" --hidden 768 --layers 12 --heads 12 --kv-heads 12 --inter 2048 \
        --vocab 32000 --max-pos 4096 --set beacon_window=1024 --set 'beacon_stride=[1024]' --set 'beacon_ratio=[8]'
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
load="$PY $here/bench/serve_load.py --requests $requests --concurrency $conc --prompt-words $words --max-tokens $maxtok"
echo "beaconrt serving benchmark: model $(basename "$model"), $np ranks (pipeline), $(nproc) cores;" \
    "$requests streamed requests of ~$words words + $maxtok tokens from $conc clients"

bench_serve_start "$tmp" "$np" "$BIN" --model "$model" --max-waiting 100000
echo "-- serve (HTTP, streamed):"
$load --url "$url" --time-limit 1800 --json "$tmp/serve.json"
bench_serve_stop

echo "-- ceiling: the same requests as one batch (beaconrt run, same ranks):"
$load --url "$url" --write-batch "$tmp/in.jsonl"
t0=$(date +%s.%N)
mpirun -np "$np" "$BIN" run --model "$model" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" --quiet
t1=$(date +%s.%N)
$PY - "$tmp/out.jsonl" "$t0" "$t1" "$tmp/serve.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["error"] is None for r in rows), [r["error"] for r in rows if r["error"]]
wall = float(sys.argv[3]) - float(sys.argv[2])
gen = sum(r["response"]["body"]["usage"]["completion_tokens"] for r in rows)
prompt = sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in rows)
s = json.load(open(sys.argv[4]))
print("%d requests in %.1fs (process wall, model loading included): requests/s %.2f | prompt %.0f tok/s | generated %.0f tok/s"
      % (len(rows), wall, len(rows) / wall, prompt / wall, gen / wall))
print("serve / ceiling: requests/s %.0f%%, prompt tokens/s %.0f%%"
      % (100 * s["requests_per_s"] / (len(rows) / wall), 100 * s["prompt_tokens_per_s"] / (prompt / wall)))
PY
