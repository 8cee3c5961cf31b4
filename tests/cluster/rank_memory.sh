#!/bin/bash
# Each rank loads only its own layers: the checkpoint is memory-mapped and a rank touches only its
# stage's tensors, so its resident memory is about its share of the weights, not the whole model
# (measured from each rank's own peak RSS in the trace).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/cluster.sh"
M=$TMP/model
# ~200 MB of f32 weights in 8 layers, small embedding: the layers dominate
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_model.py" "$M" --hidden 1024 --layers 8 --heads 16 --kv-heads 16 --inter 2048
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_batch.py" "$TMP/in.jsonl" text 2 100
for np in 1 4; do
    brt_mpirun $np run --model "$M" --input "$TMP/in.jsonl" --output "$TMP/out$np.jsonl" --pp $np \
        --trace "$TMP/trace$np.jsonl" --quiet 2>"$TMP/err" || { cat "$TMP/err"; fail "run -np $np"; }
done
$PYTHON - "$M/model.safetensors" "$TMP/trace1.jsonl" "$TMP/trace4.jsonl" <<'PY' || fail "a rank holds more than its share"
import json, os, sys
model = os.path.getsize(sys.argv[1])
one = [json.loads(l) for l in open(sys.argv[2])][0]
four = [json.loads(l) for l in open(sys.argv[3])]
print(f"checkpoint {model / 2**20:.0f} MiB; one rank: RSS peak {one['rss_peak_kb'] / 1024:.0f} MiB")
base = one["rss_peak_kb"] * 1024 - model  # buffers, libraries, MPI
for t in sorted(four, key=lambda t: t["rank"]):
    rss = t["rss_peak_kb"] * 1024
    print(f"rank {t['rank']} (stage {t['stage']}): its layers {t['weight_bytes'] / 2**20:.0f} MiB, "
          f"RSS peak {rss / 2**20:.0f} MiB")
    assert rss < t["weight_bytes"] + base + 40 * 2**20, "resident memory beyond its own layers"
    assert rss < 0.6 * model, "a quarter of the layers should not cost most of the model"
PY
echo "PASS"
