#!/bin/sh
# Installs what beaconrt needs, builds it, and runs the main job on the embedded model.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh
exec ./build/beaconrt generate --model models/stories260K --prompt "Once upon a time" -n 120 --seed 7
