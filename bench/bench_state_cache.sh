#!/bin/bash
# Time to answer a second question about a long document against the first, with the state cache:
# the first question reads the whole document (and keeps its state), the second reads only itself.
#   bench/bench_state_cache.sh [--doc-tokens N] [--model DIR] [--np N] [--quick] [--tiers LIST]
# Default: the BASELINES "mid" Llama (hidden 768, 12 layers, f32 random weights) with Activation
# Beacon v1 (window 1024, ratio 8), a document of ~64K tokens, 2 ranks (2 stages), each question
# its own `beaconrt run` with a disk tier (the state outlives the process). --tiers device,host,disk
# instead asks both questions of one `beaconrt serve` per tier (HTTP, curl's time per request, model
# loading not included), the state kept in that tier only: what a hit costs from each.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/serve_util.sh"
BIN=${BRT_BIN:-$here/build/beaconrt}
PY=/usr/bin/python3
doc=65536 model="" np=2 tiers=""
while [ $# -gt 0 ]; do
    case $1 in
        --doc-tokens) doc=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --np) np=$2; shift 2 ;;
        --quick) doc=16384; shift ;;
        --tiers) tiers=$2; shift 2 ;;
        *) echo "usage: $0 [--doc-tokens N] [--model DIR] [--np N] [--quick] [--tiers device,host,disk]" >&2; exit 2 ;;
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
# one question per file, so each run measures one answer; the cache folder carries the state over
$PY - "$tmp" "$doc" <<'PY'
import json, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(1)
words = "the little girl saw a big red ball in the park and her dog ran to get it while mom read a book".split()
doc = " ".join(r.choice(words) for _ in range(int(n / 1.6)))  # ~1.6 tokens per word with the 512-piece tokenizer
for i, q in enumerate(["Who ran to get the ball?", "What was mom reading in the park?"]):
    with open("%s/q%d.jsonl" % (d, i + 1), "w") as f:
        f.write(json.dumps({"custom_id": "q%d" % (i + 1), "method": "POST", "url": "/v1/completions",
                            "body": {"prompt": doc + " " + q, "max_tokens": 16, "temperature": 0}}) + "\n")
PY
echo "beaconrt state-cache benchmark: model $(basename "$model"), ~$doc-token document, $np ranks, $(nproc) cores"
if [ -n "$tiers" ]; then
    export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
    for tier in ${tiers//,/ }; do
        case $tier in
            device) flags="--state-cache-device-mb 4096" ;;
            host) flags="--state-cache-host-mb 4096" ;;
            disk) flags="--state-cache-dir $tmp/cache-serve" ;;
            *) echo "$0: --tiers takes device, host, disk" >&2; exit 2 ;;
        esac
        rm -rf "$tmp/cache-serve"
        # shellcheck disable=SC2086
        bench_serve_start "$tmp" "$np" "$BIN" --model "$model" --max-jobs 1 $flags
        for q in 1 2; do
            $PY -c 'import json,sys; print(json.dumps(json.loads(open(sys.argv[1]).readline())["body"]))' "$tmp/q$q.jsonl" >"$tmp/body.json"
            t=$(curl -s -o "$tmp/resp.json" -w '%{time_total}' -H 'Content-Type: application/json' \
                "$url/v1/completions" --data-binary @"$tmp/body.json")
            $PY - "$tmp/resp.json" "$t" "$q" "$tier" <<'PY'
import json, sys
u = json.load(open(sys.argv[1]))["usage"]
print("%-6s question %s: %7.2f s (HTTP request) for %d prompt tokens, %d from the cache"
      % (sys.argv[4], sys.argv[3], float(sys.argv[2]), u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"]))
PY
        done
        bench_serve_stop
    done
    exit 0
fi
for q in 1 2; do
    t0=$(date +%s.%N)
    mpirun -np "$np" "$BIN" run --model "$model" --input "$tmp/q$q.jsonl" --output "$tmp/out$q.jsonl" \
        --state-cache-dir "$tmp/cache" --quiet
    t1=$(date +%s.%N)
    $PY - "$tmp/out$q.jsonl" "$t0" "$t1" "$q" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).readline())["response"]["body"]
u = r["usage"]
print("question %s: %.2fs (process wall, model loading included) for %d prompt tokens, %d from the cache"
      % (sys.argv[4], float(sys.argv[3]) - float(sys.argv[2]), u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"]))
PY
done
