#!/usr/bin/env bash
# Build the benchmarks and run them all with modest defaults; each one's output goes to a file.
#
#   bench/run-all.sh                 # build/ , outputs in out/bench-<date>/
#   MAX_LEN=65536 bench/run-all.sh   # the whole long-document table (long: full attention at 64K)
#
# Environment: BUILD (build folder, default build), OUT (output folder), MODELS (generated models,
# kept and reused between runs; default $BUILD/bench-models), MAX_LEN (longest document of
# bench_longctx, default 16384), MEM_LIMIT_GB (16), THREADS (default: all cores), REPS (3).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT=${OUT:-$ROOT/out/bench-$(date +%Y%m%d-%H%M%S)}
MODELS=${MODELS:-$BUILD/bench-models}
MAX_LEN=${MAX_LEN:-16384}
MEM_LIMIT_GB=${MEM_LIMIT_GB:-16}
REPS=${REPS:-3}
THREADS_ARG=()
if [[ -n "${THREADS:-}" ]]; then THREADS_ARG=(--threads "$THREADS"); fi

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" -j "$(nproc)" --target beaconrt mkmodel bench_kernels bench_model bench_longctx
mkdir -p "$OUT" "$MODELS"
B="$BUILD/bench"

run() { # name, command...: show the command and its output, keep both in $OUT/name.txt
  local name=$1; shift
  echo "== $name: $*" | tee "$OUT/$name.txt"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$OUT/$name.txt"
  echo "== $name: $((SECONDS - t0)) s" | tee -a "$OUT/$name.txt"
}

{
  echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ local changes)')"
  echo "host:    $(uname -n), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (other work running makes every figure noisy)"
} | tee "$OUT/machine.txt"

# The generated models, checked by the runtime's own strict config parser.
[[ -f "$MODELS/longctx/mid/model.safetensors" ]] || "$B/mkmodel" --out "$MODELS/longctx/mid"
[[ -f "$MODELS/longctx/mid-beacon/model.safetensors" ]] || "$B/mkmodel" --beacon --out "$MODELS/longctx/mid-beacon"
run inspect-mid "$BUILD/beaconrt" inspect --model "$MODELS/longctx/mid" --doc-tokens 4096
run inspect-mid-beacon "$BUILD/beaconrt" inspect --model "$MODELS/longctx/mid-beacon" --doc-tokens 65536

run bench_kernels "$B/bench_kernels" "${THREADS_ARG[@]}"
run bench_model "$B/bench_model" --keep "$MODELS/model-1024" --reps "$REPS" "${THREADS_ARG[@]}"
run bench_longctx "$B/bench_longctx" --keep "$MODELS/longctx" --max-len "$MAX_LEN" \
  --mem-limit-gb "$MEM_LIMIT_GB" "${THREADS_ARG[@]}"
run inspect-mid-fot "$BUILD/beaconrt" inspect --model "$MODELS/longctx/mid-fot" --doc-tokens 16384

echo "outputs in $OUT"
