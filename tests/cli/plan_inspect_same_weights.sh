#!/bin/bash
# plan and inspect print the same per-stage weight figures for one model, whatever is present: the
# model folder with its BF16 (or F16) weights, the folder's config.json alone, or a preset whose
# model is elsewhere (its model_config). The weights are counted in their real dtype (the embedding
# table of a BF16 checkpoint is not counted as f32), and a config alone in its torch_dtype; both
# equal the checkpoint's tensor bytes. The same holds for the GPU figures (--device cuda).
. "$(dirname "$0")/../lib/common.sh"
mk() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/make_model.py" "$@" >/dev/null || fail "make_model $*"; }
conv() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/convert_weights.py" "$@" >/dev/null || fail "convert_weights $*"; }

for dt in bf16 f16; do
    torch=$([ $dt = bf16 ] && echo bfloat16 || echo float16)
    # untied embeddings (lm_head on the last stage) and a vocabulary large enough that the table's
    # element size decides stage 0's figure
    mk "$TMP/f32-$dt" --hidden 64 --layers 4 --heads 4 --kv-heads 2 --inter 160 --vocab 4096 \
        --set "torch_dtype=\"$torch\""
    conv dtype "$TMP/f32-$dt" "$TMP/$dt" "$dt"
    mkdir -p "$TMP/$dt-config" "$TMP/presets/$dt"
    cp "$TMP/$dt/config.json" "$TMP/$dt-config/config.json"
    cp "$TMP/$dt/config.json" "$TMP/presets/$dt/model-config.json"
    # a preset whose checkpoint is not on this machine: plan and inspect read its model_config
    printf '{"model": "/nonexistent/%s", "model_config": "model-config.json", "parallel": {"pp": 2, "dp": 1}}\n' \
        "$dt" >"$TMP/presets/$dt/deploy.json"

    # every (command, source) pair, as JSON: per-stage weight bytes
    for cmd in plan inspect; do
        for src in weights config preset; do
            case $src in
            weights) args=(--model "$TMP/$dt" --pp 2) ;;
            config) args=(--model "$TMP/$dt-config" --pp 2) ;;
            preset) args=(--config "$TMP/presets/$dt/deploy.json") ;;
            esac
            for dev in cpu cuda; do
                extra=()
                [ $dev = cuda ] && extra=(--device cuda)
                "$BRT_BIN" "$cmd" "${args[@]}" "${extra[@]}" --json >"$TMP/$dt.$cmd.$src.$dev.json" 2>"$TMP/err.txt" ||
                    { cat "$TMP/err.txt"; fail "$cmd from the $src ($dt, $dev) failed"; }
            done
        done
    done
    # the text tables too: the same weights column
    "$BRT_BIN" plan --model "$TMP/$dt" --pp 2 | awk '$1 ~ /^[0-9]+$/ {print $1, $2, $3}' >"$TMP/plan.txt"
    "$BRT_BIN" inspect --model "$TMP/$dt-config" --pp 2 | awk '$1 ~ /^[0-9]+$/ {print $1, $2, $3}' >"$TMP/inspect.txt"
    [ -s "$TMP/plan.txt" ] && cmp -s "$TMP/plan.txt" "$TMP/inspect.txt" ||
        { paste "$TMP/plan.txt" "$TMP/inspect.txt"; fail "$dt: plan's and inspect's tables differ"; }

    "$PYTHON" - "$TMP" "$dt" <<'PY' || fail "$dt: plan and inspect disagree on the weights"
import json, os, struct, sys
tmp, dt = sys.argv[1:3]
def load(cmd, src, dev):
    return json.load(open(f"{tmp}/{dt}.{cmd}.{src}.{dev}.json"))
# the checkpoint's own bytes per stage: its tensors as stored
with open(f"{tmp}/{dt}/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
size = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in hdr.items() if k != "__metadata__"}
assert all(v["dtype"] == dt.upper() for k, v in hdr.items() if k != "__metadata__"), "not a %s checkpoint" % dt
ref = load("plan", "weights", "cpu")["stages"]
assert len(ref) == 2, ref
for st in ref:
    a, b = st["layer_begin"], st["layer_end"]
    want = sum(v for k, v in size.items() if any(k.startswith(f"model.layers.{l}.") for l in range(a, b)))
    if st["stage"] == 0:
        want += size["model.embed_tokens.weight"]
    if st["stage"] == len(ref) - 1:
        want += size["model.norm.weight"] + size["lm_head.weight"]
    assert st["weight_bytes"] == want, (st, want)
for dev in ("cpu", "cuda"):
    figures = {}
    for cmd in ("plan", "inspect"):
        for src in ("weights", "config", "preset"):
            o = load(cmd, src, dev)
            figures[(cmd, src)] = [(s["layer_begin"], s["layer_end"], s["weight_bytes"]) for s in o["stages"]]
            assert o["weights"] == ("checkpoint" if src == "weights" else "config"), (cmd, src, o["weights"])
    first = figures[("plan", "weights")]
    for k, v in figures.items():
        assert v == first, (dev, k, v, first)
    print(f"{dt} {dev}: stages (layers, weight bytes) {first}, the same for plan and inspect from the weights, "
          f"the config and the preset")
PY
done
echo "PASS"
