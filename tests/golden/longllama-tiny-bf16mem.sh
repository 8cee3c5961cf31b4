#!/bin/bash
# Golden set longllama-tiny-bf16mem: LongLLaMA / FoT with two memory layers and memory K/V stored in
# bfloat16 (the released checkpoints' setting). Long (700) and short (50) inputs: all-position logits,
# the first generation score row, the 16 greedy ids. No prompt+continuation check (see longllama-tiny.sh).
#
# Long-input logits use 2e-4 instead of 1e-4: the memory is rounded to bf16, and a float32
# summation-order difference that flips one bf16 rounding is amplified to ~1e-4 in the logits. The
# official code's own float64-vs-float32 difference for this set is 1.44e-4
# (oracle.json case.f64_vs_f32.max_abs), so 1e-4 is tighter than the reference itself can promise.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/golden.sh"
f64=$($PYTHON -c "import json, sys; print(json.load(open(sys.argv[1]))['case']['f64_vs_f32']['max_abs'])" \
    "$GOLDEN/longllama-tiny-bf16mem/oracle.json")
note "long logits tolerance 2e-4: memory rounded to bf16 amplifies float32 summation-order differences;" \
    "the official code's own float64 vs float32 difference here is $f64 (oracle.json case.f64_vs_f32.max_abs)"
$PYTHON -c "import sys; sys.exit(0 if float(sys.argv[1]) < 2e-4 else 1)" "$f64" ||
    fail "oracle.json f64_vs_f32.max_abs $f64 is not below the 2e-4 tolerance this test assumes"
golden_set longllama-tiny-bf16mem 2e-4 ""
