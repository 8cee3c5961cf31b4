#!/bin/bash
# Golden set beacon-tiny: the official code's float32 outputs (tests/data/golden/README.md), long (700) and
# short (50) inputs: all-position logits within 1e-4, the first generation score row, the 16 greedy ids.
# Activation Beacon v1 condenses the same windows whether the tokens come in one forward or one by
# one, so one forward over prompt+continuation also reproduces all 16 generation scores.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/golden.sh"
golden_set beacon-tiny "" "long short"
