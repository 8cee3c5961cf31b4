#!/bin/sh
# Installs what the tests need, builds, and runs the whole suite under ctest.
# Extra arguments go to ctest (e.g. -L golden, -R beacon).
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh --slurm
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
