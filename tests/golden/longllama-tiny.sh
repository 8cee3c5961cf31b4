#!/bin/bash
# Golden set longllama-tiny: the official code's float32 outputs (tests/data/golden/README.md), long (700) and
# short (50) inputs: all-position logits within 1e-4, the first generation score row, the 16 greedy ids.
# LongLLaMA / FoT (memory layer 1). No prompt+continuation check: FoT's memory depends on how the tokens
# are split into calls. One forward over L tokens moves all but the last last_context_length (64) to
# memory; generation then adds one token per call to the local context (up to the 72-token window). So
# the official code itself gives different numbers for one forward over prompt+continuation (for the
# short input: 1 of 65 tokens in memory vs none during generation).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/golden.sh"
golden_set longllama-tiny "" ""
