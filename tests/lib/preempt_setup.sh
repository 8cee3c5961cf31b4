# Sourced by the preemption tests (tests/cache/preemption.sh, tests/slurm/preempt.sh): a small
# Activation Beacon model in $M (window 128, ratio 8) and $TMP/in.jsonl holding one long document
# (~96K tokens, long enough that a run is still reading it seconds after it starts) as job "long",
# then, with "short" as $1, a short job too.
M=$TMP/model
$PYTHON "$BRT_SOURCE_DIR/tests/tools/make_model.py" "$M" --hidden 256 --layers 4 --inter 688 \
    --set beacon_window=128 --set 'beacon_stride=[128]' --set 'beacon_ratio=[8]'
$PYTHON - "$TMP/in.jsonl" "${1:-}" <<'PY'
import json, sys
w = "once upon a time there was a little girl named Lily who loved to play in the park with her dog Max".split()
doc = " ".join(w[(i * 7) % len(w)] for i in range(64000))
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"custom_id": "long", "method": "POST", "url": "/v1/completions",
                        "body": {"prompt": doc, "max_tokens": 8, "temperature": 0}}) + "\n")
    if sys.argv[2] == "short":
        f.write(json.dumps({"custom_id": "short", "method": "POST", "url": "/v1/completions",
                            "body": {"prompt": "Lily and Max", "max_tokens": 8, "temperature": 0}}) + "\n")
PY
