#!/usr/bin/env bash
# scripts/convert-pytorch-checkpoint.py on checkpoints in torch.save's zip format, written
# without torch by tests/tools/write_torch_zip.py from the golden longllama-tiny weights:
#   * a bf16 pytorch_model.bin (state_dict OrderedDict, torch 2.1 layout, rotary inv_freq
#     buffers, weights stored as views: shared storage at an offset, transposed, column slice,
#     padded storage) and the same weights as 2 shards + pytorch_model.bin.index.json (torch 2.0
#     and 1.6 layouts, plain dicts);
#   * converted keeping bf16, and with --dtype float32, single file and sharded output;
#   * every converted tensor equals the bf16-rounded golden weights written directly as
#     safetensors, and `beaconrt logits` gives identical logits (tolerance 0) for all of them;
#   * synthetic tensors of every dtype, views and special values under each --dtype, with and
#     without numpy; the legacy format, a foreign pickle global and an existing output refused.
. "$(dirname "$0")/../lib/common.sh"

[ -x "$BRT_BIN" ] || skip "no beaconrt binary at $BRT_BIN"
[ -x "$PYTHON" ] || skip "no $PYTHON"
CONV=("$PYTHON" "$BRT_SOURCE_DIR/scripts/convert-pytorch-checkpoint.py")
W=("$PYTHON" "$BRT_SOURCE_DIR/tests/tools/write_torch_zip.py")
G="$GOLDEN/longllama-tiny"
cd "$TMP"

note "writing torch checkpoints"
"${W[@]}" golden-bin "$G" bin1 --inv-freq --views
"${W[@]}" golden-bin "$G" bin2 --inv-freq --shards 2
"${W[@]}" rounded "$G" ref32 --dtype float32
"${W[@]}" rounded "$G" ref16 --dtype bfloat16
"${W[@]}" records bin1/pytorch_model.bin >records.txt
if grep -v 'stored=True align64=True' records.txt; then fail "records not stored 64-byte aligned"; fi
grep -q '^pytorch_model/data.pkl ' records.txt || fail "archive name is not the file stem"

# the pickle must be what torch.save emits: this is the opcode sequence of a real torch.save file
# (a bf16 state dict saved as a plain dict), memo indices included
"${W[@]}" opcodes bin2/pytorch_model-00001-of-00002.bin 25 >ops.txt
cat >ops.want <<'EOF'
PROTO 2
EMPTY_DICT
BINPUT 0
MARK
BINUNICODE 'model.embed_tokens.weight'
BINPUT 1
GLOBAL 'torch._utils _rebuild_tensor_v2'
BINPUT 2
MARK
MARK
BINUNICODE 'storage'
BINPUT 3
GLOBAL 'torch BFloat16Storage'
BINPUT 4
BINUNICODE '0'
BINPUT 5
BINUNICODE 'cpu'
BINPUT 6
BININT2 32768
TUPLE
BINPUT 7
BINPERSID
BININT1 0
BININT2 512
BININT1 64
EOF
diff ops.want ops.txt || fail "data.pkl opcodes differ from torch.save's"
"${W[@]}" opcodes bin1/pytorch_model.bin 4 >ops1.txt
grep -q "GLOBAL 'collections OrderedDict'" ops1.txt ||
    fail "state_dict() pickle does not start with an OrderedDict"

note "converting"
"${CONV[@]}" bin1 out1 --quiet
"${CONV[@]}" bin1 out1f --dtype float32 --quiet
"${CONV[@]}" bin2 out2 --max-shard-size 200KB --quiet
"${CONV[@]}" bin2 out2f --dtype float32 --quiet
[ -f out1/model.safetensors ] && [ ! -e out1/model.safetensors.index.json ] || fail "out1: expected one model.safetensors"
[ -f out2/model.safetensors.index.json ] && [ -f out2/model-00003-of-00003.safetensors ] ||
    fail "out2: expected 3 shards and an index"
cmp -s "$G/config.json" out1/config.json || fail "config.json not copied"
for d in out1 out1f out2 out2f; do
    if "$PYTHON" -c 'import json,struct,sys,glob
for p in glob.glob(sys.argv[1]+"/*.safetensors"):
    f=open(p,"rb"); n=struct.unpack("<Q",f.read(8))[0]
    if any("inv_freq" in k for k in json.loads(f.read(n))): sys.exit(0)
sys.exit(1)' "$d"; then fail "$d: rotary_emb.inv_freq was not dropped"; fi
done
"${W[@]}" compare out1 ref16
"${W[@]}" compare out2 ref16
"${W[@]}" compare out1f ref32
"${W[@]}" compare out2f ref32
"$PYTHON" -c 'import json,sys
d=json.load(open(sys.argv[1]))
assert all(v.endswith(".safetensors") for v in d["weight_map"].values()) and d["metadata"]["total_size"] > 0' \
    out2/model.safetensors.index.json || fail "bad output index"

note "logits (the runtime computes BF16 weights in f32: all identical)"
for m in ref32 ref16 out1 out1f out2 out2f; do
    for ids in input_ids short_input_ids; do
        "$BRT_BIN" logits --quiet --model "$m" --input-ids "$G/golden.safetensors:$ids" --out "$m.$ids.safetensors"
    done
done
for m in ref16 out1 out1f out2 out2f; do
    for ids in input_ids short_input_ids; do
        "$CHECK" tensors "ref32.$ids.safetensors:logits" "$m.$ids.safetensors:logits" 0 || fail "$m: logits differ"
        echo
    done
done

note "synthetic tensors: dtypes, views, special values"
"${W[@]}" synthetic syn/pytorch_model.bin exp
for mode in keep float32 bfloat16 float16; do
    "${CONV[@]}" syn "s_$mode" --dtype "$mode" --quiet 2>/dev/null
    "${W[@]}" compare "s_$mode" "exp.$mode.safetensors"
    BRT_CONVERT_NO_NUMPY=1 "${CONV[@]}" syn "s_${mode}_std" --dtype "$mode" --quiet 2>/dev/null
    "${W[@]}" compare "s_${mode}_std" "exp.$mode.safetensors"
done
"${CONV[@]}" syn s_dry --dry-run 2>/dev/null >dry.txt
grep -q 'c.f32_transposed F32->F32 \[4, 3\] (view, made contiguous)' dry.txt || fail "dry run does not list the view"
[ ! -e s_dry ] || fail "--dry-run wrote $TMP/s_dry"

note "refusals"
"${W[@]}" legacy legacy.bin
expect_fail "legacy non-zip file" "legacy PyTorch serialization format" "${CONV[@]}" legacy.bin leg_out
"${W[@]}" foreign foreign.bin
expect_fail "foreign pickle global" "needs collections.Counter" "${CONV[@]}" foreign.bin foreign_out
expect_fail "existing output" "already has safetensors weights" "${CONV[@]}" bin1 out1 --quiet
echo '{}' >empty.bin
expect_fail "not a checkpoint" "not a PyTorch zip checkpoint" "${CONV[@]}" empty.bin x_out
mkdir nothing
expect_fail "empty folder" "no pytorch_model.bin" "${CONV[@]}" nothing x_out
cp -r bin2 bin2_missing
rm bin2_missing/pytorch_model-00002-of-00002.bin
expect_fail "missing shard" "shard(s) missing" "${CONV[@]}" bin2_missing x_out

note "--force replaces a sharded output by a single file (stale index removed)"
echo '{"edited": true}' >out2/config.json
"${CONV[@]}" bin2 out2 --force --quiet
[ ! -e out2/model.safetensors.index.json ] && [ ! -e out2/model-00001-of-00003.safetensors ] ||
    fail "stale shards or index left behind"
cmp -s "$G/config.json" out2/config.json || fail "--force did not refresh config.json"
"${W[@]}" compare out2 ref16
note "all conversions checked"
