#!/bin/bash
# BF16 and F16 checkpoints. The CPU backend widens every weight to f32 and computes in f32 with the
# same summation order whatever the stored dtype, so llama-tiny stored as BF16 (F16) must give
# bit-identical logits to the same values stored as F32 (f32 -> bf16 -> f32, "f32r"): tolerance 0.
# Checked for each instruction set the machine has. A loose sanity bound against the f32 golden logits
# shows the low-precision weights were decoded at all (not, say, read as zeros or byte-swapped).
. "$(dirname "$0")/../lib/common.sh"
LLAMA="$GOLDEN/llama-tiny"
IDS="$LLAMA/golden.safetensors:input_ids"
conv() { "$PYTHON" "$BRT_SOURCE_DIR/tests/tools/convert_weights.py" "$@" || fail "convert_weights $* failed"; }

for k in bf16 f32r-bf16 f16 f32r-f16; do
    conv dtype "$LLAMA" "$TMP/$k" "$k"
done
"$BRT_BIN" inspect --model "$TMP/bf16" >"$TMP/inspect.txt" || fail "inspect bf16 failed"
grep -q "BF16 214208" "$TMP/inspect.txt" || { cat "$TMP/inspect.txt"; fail "inspect does not report 214208 BF16 parameters"; }
"$BRT_BIN" inspect --model "$TMP/f16" >"$TMP/inspect.txt" || fail "inspect f16 failed"
grep -q "F16 214208" "$TMP/inspect.txt" || { cat "$TMP/inspect.txt"; fail "inspect does not report 214208 F16 parameters"; }

n_isa=0
for isa in generic avx2 avx512; do
    if ! "$BRT_BIN" logits --model "$TMP/f32r-bf16" --input-ids "$IDS" --out "$TMP/f32r-bf16.$isa.st" --quiet \
        --isa "$isa" 2>"$TMP/err.txt"; then
        grep -q "not available here" "$TMP/err.txt" || { cat "$TMP/err.txt"; fail "logits --isa $isa failed"; }
        note "instruction set $isa not available here, skipped"
        continue
    fi
    n_isa=$((n_isa + 1))
    for k in bf16 f16 f32r-f16; do
        "$BRT_BIN" logits --model "$TMP/$k" --input-ids "$IDS" --out "$TMP/$k.$isa.st" --quiet --isa "$isa" ||
            fail "logits $k --isa $isa failed"
    done
    "$CHECK" tensors "$TMP/bf16.$isa.st:logits" "$TMP/f32r-bf16.$isa.st:logits" 0 ||
        fail "$isa: BF16 weights and the same values in F32 give different logits"
    "$CHECK" tensors "$TMP/f16.$isa.st:logits" "$TMP/f32r-f16.$isa.st:logits" 0 ||
        fail "$isa: F16 weights and the same values in F32 give different logits"
    # rounding the weights moves these logits by ~0.03 (bf16) / ~0.004 (f16); 0.25 only catches garbage
    "$CHECK" tensors "$TMP/bf16.$isa.st:logits" "$LLAMA/golden.safetensors:logits" 0.25 ||
        fail "$isa: BF16 logits are far from the f32 model's"
    "$CHECK" tensors "$TMP/f16.$isa.st:logits" "$LLAMA/golden.safetensors:logits" 0.05 ||
        fail "$isa: F16 logits are far from the f32 model's"
done
[ "$n_isa" -gt 0 ] || fail "no instruction set ran"

# the long-context policies read the same weights (beacon projections, beacon embedding, FoT memory
# layers): BF16 == its f32 values there too (default instruction set). beacon-tiny with its beacon
# tensors left out: the runtime initializes them as the official code does (copies of the base
# projections, the EOS embedding row), from BF16 data in the bf16 model.
for s in beacon-tiny beacon2-tiny longllama-tiny-bf16mem beacon-tiny:beacon; do
    set_=${s%%:*} drop=""
    [ "$s" = "$set_" ] || drop="--drop ${s#*:}"
    for k in bf16 f32r-bf16; do
        # shellcheck disable=SC2086
        conv dtype "$GOLDEN/$set_" "$TMP/$set_-$k" "$k" $drop
        "$BRT_BIN" logits --model "$TMP/$set_-$k" --input-ids "$GOLDEN/$set_/golden.safetensors:input_ids" \
            --out "$TMP/$set_-$k.st" --quiet || fail "$s $k: logits failed"
    done
    "$CHECK" tensors "$TMP/$set_-bf16.st:logits" "$TMP/$set_-f32r-bf16.st:logits" 0 ||
        fail "$s: BF16 weights and the same values in F32 give different logits"
    rm -rf "$TMP/$set_-bf16" "$TMP/$set_-f32r-bf16"
done

# greedy generation reads the same weights through the decode path
"$BRT_BIN" generate --model "$TMP/bf16" --input-ids "$IDS" -n 8 --greedy --ignore-eos --json --quiet >"$TMP/a.json"
"$BRT_BIN" generate --model "$TMP/f32r-bf16" --input-ids "$IDS" -n 8 --greedy --ignore-eos --json --quiet >"$TMP/b.json"
cmp -s "$TMP/a.json" "$TMP/b.json" || { cat "$TMP/a.json" "$TMP/b.json"; fail "BF16 and f32r generate different ids"; }
note "bf16/f16 weights give the same logits as their f32 values on $n_isa instruction set(s)"
