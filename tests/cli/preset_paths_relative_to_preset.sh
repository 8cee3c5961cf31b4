#!/bin/bash
# A preset's paths ("model", "model_config") are relative to the preset file's folder, not to the
# directory beaconrt runs in: the repository's presets work from any directory (generate, run,
# plan, inspect), a preset copied elsewhere with its files beside it works, and absolute paths stay
# as they are.
. "$(dirname "$0")/../lib/common.sh"
CFG=$BRT_SOURCE_DIR/configs
mkdir -p "$TMP/elsewhere/deeper"
cd "$TMP/elsewhere/deeper" # neither the repository nor the presets' folder

# the embedded model through the laptop preset ("../models/stories260K" from configs/)
"$BRT_BIN" generate --config "$CFG/stories260k-beacon-laptop.json" --prompt "Once upon a time" -n 8 --greedy --quiet \
    >"$TMP/gen.txt" 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "generate with the laptop preset from $PWD"; }
grep -q "little girl" "$TMP/gen.txt" || { cat "$TMP/gen.txt"; fail "the preset did not run the embedded model"; }
note "generate --config from $PWD: $(cat "$TMP/gen.txt")"
"$BRT_BIN" plan --config "$CFG/stories260k-beacon-laptop.json" --json >"$TMP/plan.json" 2>"$TMP/err.txt" ||
    { cat "$TMP/err.txt"; fail "plan with the laptop preset from $PWD"; }
"$PYTHON" - "$TMP/plan.json" "$BRT_SOURCE_DIR/models/stories260K" <<'PY' || fail "plan did not find the preset's model"
import json, os, sys
o = json.load(open(sys.argv[1]))
assert o["weights"] == "checkpoint", o  # the model folder was found, weights and all
assert os.path.samefile(o["model"], sys.argv[2]), (o["model"], sys.argv[2])
print("-- plan --config from elsewhere: model", o["model"])
PY
echo '{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}}' \
    >"$TMP/in.jsonl"
"$BRT_BIN" run --config "$CFG/stories260k-beacon-laptop.json" --input "$TMP/in.jsonl" --output "$TMP/out.jsonl" --quiet \
    2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "run with the laptop preset from $PWD"; }
grep -q '"error": *null' "$TMP/out.jsonl" || { cat "$TMP/out.jsonl"; fail "run's result is an error"; }

# the GPU presets: their model is absolute (/models/..., not here) and model_config relative to configs/
for p in "$CFG"/*.json; do
    grep -q '"model_config"' "$p" || continue
    "$BRT_BIN" plan --config "$p" --json >"$TMP/gpu.json" 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "plan --config $p from $PWD"; }
    "$BRT_BIN" inspect --config "$p" >/dev/null 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "inspect --config $p from $PWD"; }
    grep -q '"weights": "config"' "$TMP/gpu.json" || fail "$p: not planned from its model_config"
    grep -q '"model": "/models/' "$TMP/gpu.json" || fail "$p: the absolute model path was changed"
    note "$(basename "$p"): plan and inspect read its model_config from $PWD"
done

# a preset of one's own, given by a relative path from a third directory: paths beside it
mkdir -p "$TMP/deploy/m"
cp "$BRT_SOURCE_DIR/models/stories260K/config.json" "$TMP/deploy/m/config.json"
printf '{"model": "missing-model-folder", "model_config": "m/config.json", "policy": {"policy": "beacon_v1", "beacon_window": 64}}\n' \
    >"$TMP/deploy/p.json"
printf '{"model": "%s"}\n' "$BRT_SOURCE_DIR/models/stories260K" >"$TMP/deploy/abs.json"
cd "$TMP"
"$BRT_BIN" inspect --config deploy/p.json --json >"$TMP/own.json" 2>"$TMP/err.txt" || { cat "$TMP/err.txt"; fail "inspect --config deploy/p.json"; }
grep -q '"config": "deploy/m/config.json"' "$TMP/own.json" || { cat "$TMP/own.json"; fail "model_config not read beside the preset"; }
grep -q '"policy": "beacon_v1"' "$TMP/own.json" || fail "the preset's policy was not applied"
"$BRT_BIN" generate --config deploy/abs.json --prompt "Once upon a time" -n 4 --greedy --quiet >/dev/null 2>"$TMP/err.txt" ||
    { cat "$TMP/err.txt"; fail "a preset with an absolute model path"; }
note "a preset's relative paths resolve beside it; absolute ones stay"
echo "PASS"
