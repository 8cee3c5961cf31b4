#!/usr/bin/env bash
# LongLLaMA generation through the command line across the local-cache flush: the 700-token
# prompt leaves a cache of last_context_length = 64 tokens, decode call 9 flushes all 72 into
# memory (in both memory layers of the bf16mem set). `beaconrt generate --greedy` must give the
# golden continuation, and memory dtype / grouping flags must behave:
#   --set mem_attention_grouping=[1,16]  -> the same ids (it only splits loops)
#   --mem-dtype float32 on the bf16 set  -> logits differ from bfloat16 memory, but only a little
. "$(dirname "$0")/../lib/common.sh"

G="$GOLDEN"
for set in longllama-tiny longllama-tiny-bf16mem; do
    "$BRT_BIN" generate --model "$G/$set" --input-ids "$G/$set/golden.safetensors" -n 16 --greedy --ignore-eos \
        --json --quiet --threads 2 >"$TMP/$set.json"
    "$CHECK" ids "$TMP/$set.json" "$G/$set/golden.safetensors:generated_ids" || fail "$set: generation across the flush"
    "$BRT_BIN" generate --model "$G/$set" --input-ids "$G/$set/golden.safetensors" -n 16 --greedy --ignore-eos \
        --json --quiet --threads 2 --set 'mem_attention_grouping=[1,16]' >"$TMP/$set.grouped.json"
    "$CHECK" ids "$TMP/$set.grouped.json" "$G/$set/golden.safetensors:generated_ids" ||
        fail "$set: generation with mem_attention_grouping [1,16]"
done

set=longllama-tiny-bf16mem
"$BRT_BIN" logits --quiet --threads 2 --model "$G/$set" --input-ids "$G/$set/golden.safetensors" --out "$TMP/bf16.st"
"$BRT_BIN" logits --quiet --threads 2 --model "$G/$set" --input-ids "$G/$set/golden.safetensors" --out "$TMP/f32.st" \
    --mem-dtype float32
# close: within 5e-2 ...
"$CHECK" tensors "$TMP/bf16.st:logits" "$TMP/f32.st:logits" 5e-2 || fail "bf16 vs f32 memory: not close"
# ... but not the same numbers (the bf16 rounding of memory must show)
if "$CHECK" tensors "$TMP/bf16.st:logits" "$TMP/f32.st:logits" 1e-5 >/dev/null; then
    fail "--mem-dtype float32 gives the same logits as bfloat16 memory"
fi
note "bf16 and f32 memory differ, and are close"
