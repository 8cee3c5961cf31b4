#!/usr/bin/env python3
"""Copy the golden sets from ../shared/golden into tests/data/golden, dropping the tensors the
tests never read (ref_full_attn_logits: a debugging aid, not a target) so that the repository
stays small. Tensor bytes are copied unchanged. Standard library only.

usage: scripts/vendor-golden.py SHARED_GOLDEN_DIR OUT_DIR
"""
import json, os, shutil, struct, sys

DROP = ("ref_full_attn_logits",)

def rewrite(src, dst):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        meta = header.pop("__metadata__", None)
        keep = {k: v for k, v in header.items() if not k.endswith(DROP)}
        out_hdr, blobs, off = {}, [], 0
        if meta is not None:
            out_hdr["__metadata__"] = meta
        for name in sorted(keep):
            info = keep[name]
            b, e = info["data_offsets"]
            f.seek(base + b)
            data = f.read(e - b)
            out_hdr[name] = {"dtype": info["dtype"], "shape": info["shape"],
                             "data_offsets": [off, off + len(data)]}
            blobs.append(data)
            off += len(data)
    hb = json.dumps(out_hdr, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)

def main():
    src_root, out_root = sys.argv[1], sys.argv[2]
    for name in sorted(os.listdir(src_root)):
        d = os.path.join(src_root, name)
        if not os.path.isdir(d):
            continue
        o = os.path.join(out_root, name)
        os.makedirs(o, exist_ok=True)
        for fn in ("config.json", "model.safetensors", "oracle.json"):
            shutil.copyfile(os.path.join(d, fn), os.path.join(o, fn))
        rewrite(os.path.join(d, "golden.safetensors"), os.path.join(o, "golden.safetensors"))
    shutil.copyfile(os.path.join(src_root, "README.md"), os.path.join(out_root, "README.md"))

if __name__ == "__main__":
    main()
