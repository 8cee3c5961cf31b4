#!/usr/bin/env python3
"""Small safetensors utilities for the shell tests (Python stdlib only; importable as a module).

    st_util.py ids OUT.safetensors ID [ID ...]            write I64 [1, L] 'input_ids'
    st_util.py ids-json OUT.safetensors FILE.json KEY.PATH   same, ids from a JSON list
                                                            (KEY.PATH: dotted keys, e.g. long_prompt.input_ids)
    st_util.py concat-ids OUT A.st:NAME B.st:NAME [N]     'input_ids' = A ++ first N of B (default all)
    st_util.py row IN.st:NAME OUT.st:NAME ROW              row ROW (negative counts from the end) of a
                                                            [.., R, V] F32 tensor, written as F32 [1, 1, V]
    st_util.py vec-json OUT.st:NAME FILE.json KEY.PATH     a JSON float list written as F32 [1, 1, V]
    st_util.py topk IN.st:NAME FILE.json KEY.PATH TOL      the last row's top-k (k = length of the JSON
                                                            list of [id, logit, piece]) has the same ids in
                                                            the same order and logits within TOL
    st_util.py dim FILE.st:NAME AXIS                       print shape[AXIS] of a tensor, 0 if it is absent
    st_util.py json-get FILE.json KEY.PATH                 print a JSON value (strings raw, else JSON)
Exit status: 0 ok, 1 mismatch, 2 usage or I/O error.
"""
import json
import struct
import sys

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
              "BOOL": 1}
STRUCT_CODE = {"F64": "d", "F32": "f", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B"}


def read_raw(path):
    """(header dict in file order, data bytes after the header, header length field)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return header, blob[8 + n:], n


def write_raw(path, header, data, pad=True):
    """Write a header dict (order kept) and raw data; the header is padded with spaces to 8 bytes."""
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if pad:
        h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def write_tensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes); stored in sorted-name order like the official
    writers."""
    header = {"__metadata__": metadata if metadata is not None else {"format": "pt"}}
    off, blobs = 0, []
    for name, dtype, shape, raw in sorted(tensors, key=lambda t: t[0]):
        n = 1
        for s in shape:
            n *= s
        assert len(raw) == n * DTYPE_SIZE[dtype], (name, len(raw), n, dtype)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    write_raw(path, header, b"".join(blobs))


def tensor(path, name):
    """(dtype, shape, list of values) of one tensor (F32/F64/integer dtypes)."""
    header, data, _ = read_raw(path)
    if name not in header:
        raise KeyError("%s: no tensor %s" % (path, name))
    e = header[name]
    b, end = e["data_offsets"]
    raw = data[b:end]
    code = STRUCT_CODE[e["dtype"]]
    return e["dtype"], e["shape"], list(struct.unpack("<%d%s" % (len(raw) // DTYPE_SIZE[e["dtype"]], code), raw))


def split_spec(spec):
    path, _, name = spec.rpartition(":")
    if not path:
        raise SystemExit("st_util: %s: want FILE:TENSOR" % spec)
    return path, name


def json_path(path, keys):
    with open(path, encoding="utf-8") as f:
        v = json.load(f)
    for k in keys.split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    return v


def write_ids(path, ids, name="input_ids"):
    write_tensors(path, [(name, "I64", [1, len(ids)], struct.pack("<%dq" % len(ids), *ids))])


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, a = argv[1], argv[2:]
    if cmd == "ids" and len(a) >= 2:
        write_ids(a[0], [int(x) for x in a[1:]])
        return 0
    if cmd == "ids-json" and len(a) == 3:
        write_ids(a[0], [int(x) for x in json_path(a[1], a[2])])
        return 0
    if cmd == "concat-ids" and len(a) in (3, 4):
        ia = tensor(*split_spec(a[1]))[2]
        ib = tensor(*split_spec(a[2]))[2]
        if len(a) == 4:
            ib = ib[:int(a[3])]
        write_ids(a[0], ia + ib)
        return 0
    if cmd == "row" and len(a) == 3:
        dtype, shape, vals = tensor(*split_spec(a[0]))
        width, rows = shape[-1], len(vals) // shape[-1]
        r = int(a[2])
        r = r + rows if r < 0 else r
        if not 0 <= r < rows:
            print("st_util: row %s out of %d rows" % (a[2], rows), file=sys.stderr)
            return 2
        out, name = split_spec(a[1])
        write_tensors(out, [(name, "F32", [1, 1, width], struct.pack("<%df" % width, *vals[r * width:(r + 1) * width]))])
        return 0
    if cmd == "vec-json" and len(a) == 3:
        vals = [float(x) for x in json_path(a[1], a[2])]
        out, name = split_spec(a[0])
        write_tensors(out, [(name, "F32", [1, 1, len(vals)], struct.pack("<%df" % len(vals), *vals))])
        return 0
    if cmd == "topk" and len(a) == 4:
        _, shape, vals = tensor(*split_spec(a[0]))
        ref = json_path(a[1], a[2])
        tol = float(a[3])
        width = shape[-1]
        last = vals[-width:]
        k = len(ref)
        order = sorted(range(width), key=lambda i: -last[i])[:k]
        want = [int(r[0]) for r in ref]
        worst = max(abs(last[int(r[0])] - float(r[1])) for r in ref)
        ok = order == want and worst <= tol
        print("top-%d of %s vs %s %s: ids %s, max |logit diff| %.3g (tolerance %g): %s"
              % (k, a[0], a[1], a[2], "identical" if order == want else "DIFFERENT", worst, tol,
                 "ok" if ok else "MISMATCH"))
        if order != want:
            print("  got:    %s\n  expect: %s" % (order, want))
        return 0 if ok else 1
    if cmd == "dim" and len(a) == 2:
        path, name = split_spec(a[0])
        header = read_raw(path)[0]
        print(header[name]["shape"][int(a[1])] if name in header else 0)
        return 0
    if cmd == "json-get" and len(a) == 2:
        v = json_path(a[0], a[1])
        sys.stdout.write(v if isinstance(v, str) else json.dumps(v))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
