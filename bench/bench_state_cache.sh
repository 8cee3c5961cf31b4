#!/bin/bash
# Time to answer a second question about a long document against the first, with the state cache:
# the first question reads the whole document (and keeps its state), the second reads only itself.
#   bench/bench_state_cache.sh [--doc-tokens N] [--model DIR] [--np N] [--quick]
# Default: the BASELINES "mid" Llama (hidden 768, 12 layers, f32 random weights) with Activation
# Beacon v1 (window 1024, ratio 8), a document of ~64K tokens, 2 ranks (2 stages).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BRT_BIN:-$here/build/beaconrt}
PY=/usr/bin/python3
doc=65536 model="" np=2
while [ $# -gt 0 ]; do
    case $1 in
        --doc-tokens) doc=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --np) np=$2; shift 2 ;;
        --quick) doc=16384; shift ;;
        *) echo "usage: $0 [--doc-tokens N] [--model DIR] [--np N] [--quick]" >&2; exit 2 ;;
    esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
