#!/bin/sh
# Installs what the tests need, builds, and runs the whole suite under ctest, then a short fixed run
# of every fuzz harness (tests/fuzz) from their own clang build in build-fuzz.
# Extra arguments go to ctest (e.g. -L golden, -R beacon) and leave the fuzz step out.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh --slurm
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
[ $# -eq 0 ] || exit 0
CC=clang cmake -S . -B build-fuzz -DBRT_FUZZ=ON -DBRT_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-fuzz --target fuzz_all -j"$(nproc)" >&2
ctest --test-dir build-fuzz -L fuzz --output-on-failure -j"$(nproc)"
