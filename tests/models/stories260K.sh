#!/bin/bash
# models/stories260K (Karpathy's TinyStories 260K, HF layout: GQA 8/4, tied embeddings) reproduces its
# reference.json (transformers, float32): bos_prompt and long_prompt (300 tokens): last logits and top-5/
# top-10 within 1e-4, greedy ids and text identical, from ids and from the prompt text.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/references.sh"
reference_model "$MODELS/stories260K" 1e-4
