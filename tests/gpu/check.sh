#!/bin/bash
# The GPU checks of issue 8 in one call on a lent machine with one GPU (~8 minutes), writing
# $OUT/summary.txt (the device tool brings $OUT back) and printing it last:
#   1. the op suite on CUDA in f32 and bf16 mode (tests/ops);
#   2. every golden set through --device cuda --precision f32 with the golden tests themselves
#      (logits within 1e-4, ids identical), and in bf16 mode the largest logit error and argmax
#      agreement per set;
#   3. a 2-rank pipeline on the one GPU (hidden states host-staged through MPI) against one rank;
#   4. how far outputs depend on packing and layout on the GPU (--max-rows, ranks; f32 and bf16,
#      per-shape and fixed cuBLASLt algorithms); the state cache's device tier (3b: questions after a
#      document loaded from GPU memory, against no cache);
#   5. the GPU benchmarks (bench_gpu: the card's ceilings, 7B-shaped beacon prefill and decode).
# NCCL cases need two GPUs: they skip on one, saying so.
# Here first: tests/gpu/pack.sh (builds and packs .gpu/bundle.tar.xz); then the device tool:
#   run command "bash tests/gpu/check.sh", carry [".gpu"], timeout_s 560
# BRT_CHECK_DEVICE=cpu runs the same script on the CPU backend (a dry run of its plumbing here).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/out/gpu-check}
mkdir -p "$OUT"
SUM=$OUT/summary.txt
: >"$SUM"
T0=$(date +%s)
log() { echo "$*" | tee -a "$SUM"; }
stamp() { log "== [$(($(date +%s) - T0))s] $*"; }
finish() { echo; echo "----- summary -----"; cat "$SUM"; }
trap finish EXIT

B=$(mktemp -d)
if ! tar -C "$B" -xJf .gpu/bundle.tar.xz 2>"$OUT/untar.err"; then
    log "FAIL: no usable .gpu/bundle.tar.xz (run tests/gpu/pack.sh on the build machine and carry .gpu)"
    exit 1
fi
# the CUDA libraries beaconrt loads when it starts a GPU (cuBLASLt; NCCL for links)
CUDA_LIBS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
         $(python3 -c 'import glob, os, nvidia; print(" ".join(glob.glob(os.path.dirname(nvidia.__path__[0]) + "/nvidia/*/lib")))' 2>/dev/null); do
    [ -d "$d" ] && CUDA_LIBS="$CUDA_LIBS:$d"
done
export LD_LIBRARY_PATH="$B/lib${CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# a python3 with numpy (the GPU image's python3 has it)
PY=python3
for p in python3 /usr/bin/python3; do
    if $p -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
export BRT_PYTHON=$PY BRT_TOOLS_DIR=$B/bin BRT_SOURCE_DIR=$ROOT
BRT=$B/bin/beaconrt
log "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2 | tr '\n' ' ')"
log "bundle: $(ls -la .gpu/bundle.tar.xz | awk '{print $5}') bytes; cuBLASLt: $(ls $(echo "$CUDA_LIBS" | tr ':' ' ') 2>/dev/null | grep -m1 'libcublasLt.so' || echo missing)"
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
FAILS=0
fail() { log "FAIL: $*"; FAILS=$((FAILS + 1)); }

# a beaconrt that always runs on the GPU in one precision: the golden scripts call it as BRT_BIN
DEV=${BRT_CHECK_DEVICE:-cuda}
devflags() { [ "$DEV" = cuda ] && echo "--device cuda --precision $1" || echo "--device cpu"; }
wrap() { # wrap NAME PRECISION
    cat >"$B/$1" <<W
#!/bin/bash
sub=\$1; shift
exec "$BRT" "\$sub" $(devflags "$2") "\$@"
W
    chmod +x "$B/$1"
}
wrap brt-f32 f32
wrap brt-bf16 bf16

stamp "1. op suite on CUDA"
for p in f32 bf16; do
    if [ "$DEV" = cuda ]; then
        timeout 120 "$B/bin/test_backend_ops" --backend cuda --precision $p >"$OUT/ops-$p.txt" 2>&1
    else
        timeout 120 "$B/bin/test_backend_ops" --backend cpu --quick >"$OUT/ops-$p.txt" 2>&1
    fi
    rc=$?
    log "ops $p: exit $rc: $(tail -n 1 "$OUT/ops-$p.txt")"
    grep '^FAIL' "$OUT/ops-$p.txt" | head -20 | tee -a "$SUM"
    [ $rc -eq 0 ] || fail "op suite ($p)"
done

stamp "2. golden sets, f32 mode (the golden tests themselves)"
for t in tests/golden/*.sh; do
    s=$(basename "$t" .sh)
    if BRT_BIN=$B/brt-f32 timeout 120 bash "$t" >"$OUT/golden-$s.txt" 2>&1; then
        log "golden f32 $s: PASS"
    else
        fail "golden f32 $s: $(grep -m1 FAIL "$OUT/golden-$s.txt")"
    fi
done
stamp "2b. golden sets, bf16 mode (reported)"
G=tests/data/golden
for d in $G/*/; do
    s=$(basename "$d")
    for p in "" short_; do
        if "$B/brt-bf16" logits --model "$d" --input-ids "$d/golden.safetensors:${p}input_ids" --out "$OUT/bf16.st" --quiet 2>"$OUT/bf16.err"; then
            log "golden bf16 $s ${p:-long_}input: $($PY tests/gpu/compare.py logits "$OUT/bf16.st:logits" "$d/golden.safetensors:${p}logits")"
        else
            fail "golden bf16 $s: $(head -c 300 "$OUT/bf16.err")"
        fi
    done
done
rm -f "$OUT/bf16.st"

stamp "3. 2-rank pipeline on one GPU (host-staged) and layouts"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
MPIRUN=""
if mpirun --version >/dev/null 2>&1; then
    MPIRUN=mpirun
elif [ -x "$B/ompi/usr/bin/orterun" ]; then
    export OPAL_PREFIX=$B/ompi/usr PATH=$B/ompi/usr/bin:$PATH
    export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$B/ompi/usr/lib/x86_64-linux-gnu/openmpi/lib:$B/ompi/usr/lib/x86_64-linux-gnu/pmix2/lib
    MPIRUN=orterun
fi
M=$OUT/m
mkdir -p "$M"
for s in beacon-tiny llama-tiny longllama-tiny; do
    mkdir -p "$M/$s"
    for f in $G/$s/*; do ln -sf "$ROOT/$f" "$M/$s/"; done
    ln -sf "$ROOT/models/stories260K/tokenizer.model" "$M/$s/tokenizer.model"
    $PY tests/tools/make_batch.py "$OUT/in-$s.jsonl" golden "$M/$s" >/dev/null
    for p in f32 bf16; do
        ref=$OUT/$s-$p-1.jsonl
        rm -f "$ref"
        if ! timeout 120 "$B/brt-$p" run --model "$M/$s" --input "$OUT/in-$s.jsonl" --output "$ref" --quiet 2>"$ref.err"; then
            fail "$s $p one rank: $(head -c 300 "$ref.err")"
            continue
        fi
        for alt in "--max-rows 128 --prefill-chunk 96" "--max-jobs 1"; do
            o=$OUT/$s-$p-alt.jsonl
            rm -f "$o"
            if timeout 120 "$B/brt-$p" run --model "$M/$s" --input "$OUT/in-$s.jsonl" --output "$o" --quiet $alt 2>"$o.err"; then
                log "layout $s $p [$alt] vs default: $($PY tests/gpu/compare.py batches "$ref" "$o")"
            else
                fail "$s $p [$alt]: $(head -c 300 "$o.err")"
            fi
            o2=$OUT/$s-$p-fixed.jsonl
            rm -f "$o2" "$o2.ref"
            BRT_GEMM_ALGO=fixed timeout 120 "$B/brt-$p" run --model "$M/$s" --input "$OUT/in-$s.jsonl" --output "$o2.ref" --quiet 2>/dev/null &&
                BRT_GEMM_ALGO=fixed timeout 120 "$B/brt-$p" run --model "$M/$s" --input "$OUT/in-$s.jsonl" --output "$o2" --quiet $alt 2>/dev/null &&
                log "layout $s $p [$alt] with BRT_GEMM_ALGO=fixed: $($PY tests/gpu/compare.py batches "$o2.ref" "$o2")"
        done
        if [ -n "$MPIRUN" ]; then
            o=$OUT/$s-$p-2.jsonl
            rm -f "$o"
            if BRT_NCCL=0 timeout 180 $MPIRUN -np 2 "$BRT" run $(devflags $p) --model "$M/$s" \
                   --input "$OUT/in-$s.jsonl" --output "$o" --quiet >"$o.err" 2>&1; then
                log "2 ranks on 1 GPU (pp 2, MPI staging) $s $p vs 1 rank: $($PY tests/gpu/compare.py batches "$ref" "$o")"
            else
                fail "2 ranks on 1 GPU $s $p: $(grep -v -i 'help file\|sorry\|^---\|unavailable\|^ *$' "$o.err" | head -c 400)"
            fi
        fi
    done
done
[ -n "$MPIRUN" ] || log "SKIP: 2-rank pipeline: no mpirun here and none in the bundle"
if [ "$NGPU" -ge 2 ] && [ -n "$MPIRUN" ]; then
    o=$OUT/nccl.jsonl
    rm -f "$o"
    if timeout 180 $MPIRUN -np 2 "$BRT" run --device cuda --precision f32 --model "$M/beacon-tiny" \
           --input "$OUT/in-beacon-tiny.jsonl" --output "$o" >"$o.err" 2>&1 && ! grep -q "through MPI" "$o.err"; then
        log "NCCL 2 GPUs beacon-tiny f32 vs 1 rank: $($PY tests/gpu/compare.py batches "$OUT/beacon-tiny-f32-1.jsonl" "$o")"
    else
        fail "NCCL 2 GPUs: $(head -c 400 "$o.err")"
    fi
else
    log "SKIP: NCCL link cases need two GPUs; this machine has $NGPU"
fi

stamp "3b. state cache: the device tier (GPU memory) against no cache"
$PY - "$OUT/in-cache.jsonl" <<'PY'
import json, sys
w = "once upon a time there was a little girl named Lily who loved to play in the park with her dog Max".split()
doc = " ".join(w[(i * 7) % len(w)] for i in range(600))
rows = [("doc", doc, 4, 0)] + [("q%d" % i, doc + " " + q, 10, i + 1) for i, q in enumerate(["Who was the girl?", "Max"])]
with open(sys.argv[1], "w") as f:
    for cid, prompt, n, seed in rows:
        body = {"prompt": prompt, "max_tokens": n, "temperature": 0.8 if seed else 0, "seed": seed, "logprobs": 2}
        f.write(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/completions", "body": body}) + "\n")
PY
for p in f32 bf16; do
    ref=$OUT/cache-$p-none.jsonl o=$OUT/cache-$p-dev.jsonl
    rm -f "$ref" "$o"
    if timeout 120 "$B/brt-$p" run --model "$M/beacon-tiny" --input "$OUT/in-cache.jsonl" --output "$ref" --max-jobs 1 \
           --quiet 2>"$ref.err" &&
       timeout 120 "$B/brt-$p" run --model "$M/beacon-tiny" --input "$OUT/in-cache.jsonl" --output "$o" --max-jobs 1 \
           --state-cache-device-mb 64 2>"$o.err"; then
        cmp=$($PY tests/gpu/compare.py batches "$ref" "$o")
        log "device tier $p: $(grep -o '[0-9]* hits of [0-9]* lookups ([0-9]* from device memory' "$o.err"); vs no cache: $cmp"
        grep -q "2 hits of 3 lookups (2 from device memory" "$o.err" || fail "device tier $p: want 2 hits from device memory"
        case "$cmp" in *"texts differing 0"*) ;; *) fail "device tier $p: answers differ from no cache" ;; esac
    else
        fail "device tier $p: $(cat "$ref.err" "$o.err" 2>/dev/null | head -c 400)"
    fi
done

stamp "4. benchmarks"
left=$((470 - ($(date +%s) - T0)))
if [ $left -gt 60 ]; then
    timeout $left "$B/bin/bench_gpu" ${BENCH_ARGS:---lengths 32768,131072 --docs 1,8 --decode-jobs 64} 2>&1 | tee "$OUT/bench_gpu.txt" | tail -n 20 >>"$SUM"
    log "bench_gpu: exit ${PIPESTATUS[0]} (124: stopped at the time limit; figures printed so far are above)"
else
    log "SKIP: bench_gpu: only ${left}s left"
fi
stamp "done: $FAILS failures"
[ $FAILS -eq 0 ]
