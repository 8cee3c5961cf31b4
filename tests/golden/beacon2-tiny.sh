#!/bin/bash
# Golden set beacon2-tiny: the official code's float32 outputs (tests/data/golden/README.md), long (700) and
# short (50) inputs: all-position logits within 1e-4, the first generation score row, the 16 greedy ids.
# Activation Beacon v2 (interleaved beacons, full-coverage): prompt+continuation in one forward
# reproduces the 16 generation scores.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/golden.sh"
golden_set beacon2-tiny "" "long short"
