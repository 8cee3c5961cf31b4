#!/bin/sh
# Installs the build dependencies (Debian packages, idempotent) and builds beaconrt into build/.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh "$@"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >&2
