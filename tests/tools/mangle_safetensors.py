#!/usr/bin/env python3
"""Make broken copies of safetensors files and config.json for the error tests (Python stdlib only).

    mangle_safetensors.py truncate-data IN OUT          cut the file in the middle of its data
    mangle_safetensors.py truncate-header IN OUT        cut the file in the middle of its JSON header
    mangle_safetensors.py header-not-json IN OUT        overwrite the header's first bytes with non-JSON
    mangle_safetensors.py header-len-big IN OUT         header length field > file size
    mangle_safetensors.py offsets-past-end IN OUT T     move tensor T's data_offsets past the end of the data
                                                        (byte count kept right)
    mangle_safetensors.py bytecount IN OUT T            T's data_offsets hold 4 bytes less than dtype x shape
    mangle_safetensors.py overlap IN OUT A B            B's range starts inside A's (same length as before)
    mangle_safetensors.py dtype IN OUT T DTYPE          T's dtype string replaced (e.g. an unknown one)
    mangle_safetensors.py drop IN OUT T                 T removed (file rewritten consistently)
    mangle_safetensors.py shape IN OUT T D0,D1,...      T's shape replaced (same element count required)
    mangle_safetensors.py header-unaligned IN OUT       a VALID file whose header length is 2 mod 4, so every
                                                        tensor's data is misaligned in the mapping
    mangle_safetensors.py ids-f32 OUT ID [ID ...]       token ids stored as F32 [1, L] 'input_ids'
    mangle_safetensors.py ids-i32 OUT ID [ID ...]       token ids stored as I32 [1, L] (valid)
    mangle_safetensors.py ids-shape OUT D0,D1 ID ...    I64 ids with the given shape ("" = [0]...)
    mangle_safetensors.py config IN OUT KEY=JSON ...    config.json with fields set (KEY=JSON) or
                                                        removed (-KEY)
The header is rewritten with the original key order; the data bytes are kept unless stated.
"""
import json
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_util  # noqa: E402


def die(msg):
    print("mangle_safetensors: " + msg, file=sys.stderr)
    sys.exit(2)


def need(header, name):
    if name not in header or name == "__metadata__":
        die("no tensor %s" % name)
    return header[name]


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, a = argv[1], argv[2:]
    if cmd == "ids-shape":  # ids-shape OUT D0,D1 ID...: I64 ids with any shape
        shape = [int(x) for x in a[1].split(",") if x]
        ids = [int(x) for x in a[2:]]
        st_util.write_tensors(a[0], [("input_ids", "I64", shape, struct.pack("<%dq" % len(ids), *ids))])
        return 0
    if cmd == "ids-i32":
        ids = [int(x) for x in a[1:]]
        st_util.write_tensors(a[0], [("input_ids", "I32", [1, len(ids)], struct.pack("<%di" % len(ids), *ids))])
        return 0
    if cmd == "ids-f32":
        ids = [float(x) for x in a[1:]]
        st_util.write_tensors(a[0], [("input_ids", "F32", [1, len(ids)], struct.pack("<%df" % len(ids), *ids))])
        return 0
    if cmd == "config":
        with open(a[0], encoding="utf-8") as f:
            cfg = json.load(f)
        for kv in a[2:]:
            if kv.startswith("-"):
                cfg.pop(kv[1:], None)
            else:
                k, _, v = kv.partition("=")
                cfg[k] = json.loads(v)
        with open(a[1], "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
        return 0

    src, dst = a[0], a[1]
    with open(src, "rb") as f:
        blob = f.read()
    header, data, hlen = st_util.read_raw(src)
    if cmd == "truncate-data":
        with open(dst, "wb") as f:
            f.write(blob[:8 + hlen + len(data) // 2])
    elif cmd == "truncate-header":
        with open(dst, "wb") as f:
            f.write(blob[:8 + hlen // 2])
    elif cmd == "header-not-json":
        bad = b"this is not JSON{{"
        with open(dst, "wb") as f:
            f.write(blob[:8] + bad + blob[8 + len(bad):])
    elif cmd == "header-len-big":
        with open(dst, "wb") as f:
            f.write(struct.pack("<Q", len(blob) + 1000) + blob[8:])
    elif cmd == "header-unaligned":
        h = json.dumps(header, separators=(",", ":")).encode("utf-8")
        h += b" " * ((2 - len(h)) % 4)
        with open(dst, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)
    elif cmd == "offsets-past-end":
        e = need(header, a[2])
        b, end = e["data_offsets"]
        e["data_offsets"] = [b + len(data), end + len(data)]
        st_util.write_raw(dst, header, data)
    elif cmd == "bytecount":
        e = need(header, a[2])
        e["data_offsets"][1] -= 4
        st_util.write_raw(dst, header, data)
    elif cmd == "overlap":
        ea, eb = need(header, a[2]), need(header, a[3])
        n = eb["data_offsets"][1] - eb["data_offsets"][0]
        start = ea["data_offsets"][0] + 8
        eb["data_offsets"] = [start, start + n]
        st_util.write_raw(dst, header, data)
    elif cmd == "dtype":
        need(header, a[2])["dtype"] = a[3]
        st_util.write_raw(dst, header, data)
    elif cmd == "drop":
        need(header, a[2])
        tensors = []
        for name, e in header.items():
            if name == "__metadata__" or name == a[2]:
                continue
            b, end = e["data_offsets"]
            tensors.append((name, e["dtype"], e["shape"], data[b:end]))
        st_util.write_tensors(dst, tensors, header.get("__metadata__"))
    elif cmd == "shape":
        e = need(header, a[2])
        shape = [int(x) for x in a[3].split(",")]
        old = 1
        for s in e["shape"]:
            old *= s
        new = 1
        for s in shape:
            new *= s
        if old != new:
            die("shape %s has %d elements, %s has %d" % (shape, new, a[2], old))
        e["shape"] = shape
        st_util.write_raw(dst, header, data)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
