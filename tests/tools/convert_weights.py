#!/usr/bin/env python3
"""Re-encode or re-shard a Hugging Face model folder's weights for the model-loading tests (numpy).

    convert_weights.py dtype IN_DIR OUT_DIR KIND [--drop SUBSTRING]
        KIND  bf16       every floating tensor stored as BF16 (float32 rounded to nearest even)
              f16        every floating tensor stored as F16 (IEEE half, numpy's rounding: nearest even)
              f32r-bf16  F32, with the values of the bf16 model (f32 -> bf16 -> f32), so that a runtime
                         that computes in f32 must give bit-identical results for 'bf16' and 'f32r-bf16'
              f32r-f16   the same for f16
    convert_weights.py shard IN_DIR OUT_DIR N
        the tensors split over N files model-0000i-of-0000N.safetensors (sorted names, contiguous
        slices) plus model.safetensors.index.json (HF layout: metadata.total_size, weight_map)
    convert_weights.py index-missing-shard DIR
        the index's last tensor is listed for a shard file that does not exist
    convert_weights.py index-wrong-shard DIR TENSOR
        the index lists TENSOR for another shard than the one that holds it
config.json and tokenizer files are copied (not reparsed); OUT_DIR is created.
"""
import json
import os
import shutil
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_util  # noqa: E402

NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def load(path):
    """list of (name, dtype, shape, ndarray or raw bytes) in file order, metadata."""
    header, data, _ = st_util.read_raw(path)
    out = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] in NP:
            arr = np.frombuffer(raw, dtype=NP[e["dtype"]]).reshape(e["shape"])
        else:
            arr = raw
        out.append((name, e["dtype"], e["shape"], arr))
    return out, header.get("__metadata__", {"format": "pt"})


def to_bf16_bits(x):
    """float32 -> bf16 bit patterns (uint16), round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def copy_side_files(src, dst):
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if (f.endswith(".json") and f != "model.safetensors.index.json") or f == "tokenizer.model":
            shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))


def convert_dtype(src, dst, kind, drop=None):
    tensors, meta = load(os.path.join(src, "model.safetensors"))
    out = []
    for name, dtype, shape, arr in tensors:
        if drop and drop in name:
            continue
        if dtype != "F32" or kind == "f32":
            out.append((name, dtype, shape, arr.tobytes() if isinstance(arr, np.ndarray) else arr))
            continue
        if kind == "bf16":
            out.append((name, "BF16", shape, to_bf16_bits(arr).tobytes()))
        elif kind == "f32r-bf16":
            out.append((name, "F32", shape, bf16_bits_to_f32(to_bf16_bits(arr)).tobytes()))
        elif kind == "f16":
            out.append((name, "F16", shape, arr.astype(np.float16).tobytes()))
        elif kind == "f32r-f16":
            out.append((name, "F32", shape, arr.astype(np.float16).astype(np.float32).tobytes()))
        else:
            raise SystemExit("convert_weights: unknown kind " + kind)
    copy_side_files(src, dst)
    st_util.write_tensors(os.path.join(dst, "model.safetensors"), out, meta)


def shard(src, dst, n):
    tensors, meta = load(os.path.join(src, "model.safetensors"))
    tensors.sort(key=lambda t: t[0])
    copy_side_files(src, dst)
    per = (len(tensors) + n - 1) // n
    weight_map, total = {}, 0
    for i in range(n):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, n)
        part = [(nm, dt, sh, a.tobytes() if isinstance(a, np.ndarray) else a)
                for nm, dt, sh, a in tensors[i * per:(i + 1) * per]]
        st_util.write_tensors(os.path.join(dst, fname), part, meta)
        for nm, _, _, raw in part:
            weight_map[nm] = fname
            total += len(raw)
    with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def edit_index(d, fn):
    p = os.path.join(d, "model.safetensors.index.json")
    with open(p) as f:
        idx = json.load(f)
    fn(idx["weight_map"])
    with open(p, "w") as f:
        json.dump(idx, f, indent=2)


def main(argv):
    if len(argv) in (5, 7) and argv[1] == "dtype" and (len(argv) == 5 or argv[5] == "--drop"):
        convert_dtype(argv[2], argv[3], argv[4], argv[6] if len(argv) == 7 else None)
    elif len(argv) == 5 and argv[1] == "shard":
        shard(argv[2], argv[3], int(argv[4]))
    elif len(argv) == 3 and argv[1] == "index-missing-shard":
        def f(wm):
            last = sorted(wm)[-1]
            wm[last] = "model-00009-of-00009.safetensors"
        edit_index(argv[2], f)
    elif len(argv) == 4 and argv[1] == "index-wrong-shard":
        def f(wm):
            if argv[3] not in wm:
                raise SystemExit("convert_weights: %s not in the index" % argv[3])
            other = sorted(set(wm.values()) - {wm[argv[3]]})
            wm[argv[3]] = other[0]
        edit_index(argv[2], f)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
