#!/bin/bash
# Golden set beacon-tiny-gqa: the official code's float32 outputs (tests/data/golden/README.md), long (700) and
# short (50) inputs: all-position logits within 1e-4, the first generation score row, the 16 greedy ids.
# Activation Beacon v1 with GQA (2 kv heads); prompt+continuation in one forward reproduces the
# 16 generation scores as for beacon-tiny.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/golden.sh"
golden_set beacon-tiny-gqa "" "long short"
