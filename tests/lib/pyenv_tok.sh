# Sourced by tests that need the real Hugging Face `tokenizers` library (PyPI, pinned), with gguf
# (llama.cpp's reader) and numpy: a venv in $BRT_TOOLS_DIR/pyenv-tok made once (needs PyPI the
# first time) under a lock, since tests that share it may run at the same time.
# After sourcing: $TOK_PY is its python.
TOKENIZERS_VERSION=0.23.3
GGUF_VERSION=0.19.0
TOK_VENV=$BRT_TOOLS_DIR/pyenv-tok
mkdir -p "$BRT_TOOLS_DIR"
exec 9>"$TOK_VENV.lock"
flock 9
if ! "$TOK_VENV/bin/python" - "$TOKENIZERS_VERSION" "$GGUF_VERSION" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
import numpy, tokenizers, gguf
sys.exit(not (version("tokenizers") == sys.argv[1] and version("gguf") == sys.argv[2]))
PY
then
    note "making $TOK_VENV (tokenizers $TOKENIZERS_VERSION, gguf $GGUF_VERSION, numpy)"
    rm -rf "$TOK_VENV"
    "$PYTHON" -m venv "$TOK_VENV" >&2 || fail "python3 -m venv failed (python3-venv is installed by scripts/install-deps.sh --slurm)"
    "$TOK_VENV/bin/pip" install -q --disable-pip-version-check "tokenizers==$TOKENIZERS_VERSION" "gguf==$GGUF_VERSION" numpy >&2 ||
        fail "cannot install tokenizers==$TOKENIZERS_VERSION gguf==$GGUF_VERSION numpy from PyPI into $TOK_VENV"
fi
flock -u 9
exec 9>&-
TOK_PY=$TOK_VENV/bin/python
