#!/usr/bin/env bash
# Our CPU GEMM beside OpenBLAS's at the same shapes, in one run, on 1 and 2 threads (issue 13).
#
#   bench/bench_gemm.sh [bench_kernels flags...]     e.g. --quick, --precision bf16, --filter mid
#
# OpenBLAS is the one numpy's PyPI wheel bundles (BASELINES.md: Debian's numpy uses another build);
# this script keeps a venv with it in $BUILD/bench-pyenv (needs PyPI the first time) and passes its
# Python to bench_kernels --openblas, which times OpenBLAS right after each of our shapes with
# OPENBLAS_CORETYPE unset and OPENBLAS_NUM_THREADS set to the same thread count.
# Environment: BUILD (default build), THREADS (default "1 2").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
VENV=$BUILD/bench-pyenv
if ! "$VENV/bin/python" -c 'import numpy' 2>/dev/null; then
  echo "making $VENV (numpy from PyPI)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check numpy
fi
cmake --build "$BUILD" --target bench_kernels -j "$(nproc)" >/dev/null
for t in ${THREADS:-1 2}; do
  "$BUILD/bench/bench_kernels" --only gemm --threads "$t" --openblas "$VENV/bin/python" "$@"
  echo
done
