#!/bin/bash
# Golden set beacon-tiny-adapt: the official code's float32 outputs (tests/data/golden/README.md), long (700) and
# short (50) inputs: all-position logits within 1e-4, the first generation score row, the 16 greedy ids.
# Adaptive ratio (adapt-16; ratio 8 for the long input, 0 for the short one). Long input: one forward
# over prompt+continuation reproduces all 16 generation scores. Not for the short input, by design of
# the official code: with ratio 0, a window that fills keeps as memory only the raw activations of the
# step that fills it and drops the window's cached raw tokens (runtime/engine/policy_beacon.c,
# v1_plan_next: "the official code drops the cached raw window here"). In generation the short input's
# window fills one token at a time (oracle.json short_case beacon_generation: -1 at step 14), so one raw
# token survives; one forward over the same 65 tokens keeps all 64, and position 64 differs (by 3.4).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/golden.sh"
golden_set beacon-tiny-adapt "" "long"
