#!/bin/bash
# Golden set llama-tiny: the official code's float32 outputs (tests/data/golden/README.md), long (700) and
# short (50) inputs: all-position logits within 1e-4, the first generation score row, the 16 greedy ids.
# Plain causal attention: one forward over prompt+continuation reproduces all 16 generation scores.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/golden.sh"
golden_set llama-tiny "" "long short"
