#!/usr/bin/env python3
"""Test helper: writes PyTorch checkpoints in torch.save's zip format without torch, plus the
reference safetensors the converter's output is checked against. Standard library only.

usage:
  write_torch_zip.py golden-bin SRC_DIR OUT_DIR [--shards N] [--inv-freq] [--views]
      SRC_DIR/model.safetensors (F32) -> OUT_DIR/pytorch_model.bin in bf16 (values rounded to
      nearest-even, as tensor.to(torch.bfloat16)), or N shards pytorch_model-0000i-of-0000N.bin
      + pytorch_model.bin.index.json; config.json is copied. --inv-freq adds the f32 buffers
      model.layers.{i}.self_attn.rotary_emb.inv_freq; --views stores some weights as views
      (shared storage at an offset, a transposed storage, a column slice, a padded storage).
  write_torch_zip.py rounded SRC_DIR OUT_DIR --dtype float32|bfloat16
      the same bf16-rounded weights written directly as safetensors (the reference).
  write_torch_zip.py synthetic OUT.bin EXPECTED_PREFIX
      small tensors of every dtype, views and special values; writes EXPECTED_PREFIX.{keep,
      float32,bfloat16,float16}.safetensors with what each --dtype must give.
  write_torch_zip.py legacy OUT.bin       the start of the legacy (non-zip) torch format
  write_torch_zip.py foreign OUT.bin      a zip checkpoint whose pickle also names another class
  write_torch_zip.py compare A B          tensors of two safetensors files or model folders are
                                          equal (names, dtype, shape, bytes)
  write_torch_zip.py opcodes FILE.bin N   the first N pickle opcodes of data.pkl
  write_torch_zip.py records FILE.bin     the zip records, their data offsets and sizes

How torch.save lays out a file (torch/serialization.py _save, caffe2/serialize/inline_container.cc
PyTorchStreamWriter), and what this writer reproduces:
  * a zip archive whose entries are all stored (no compression) under one folder, the archive
    name: the file's basename without its extension for a path ('pytorch_model' for
    pytorch_model.bin; torch < 2.x cut at the first dot), 'archive' for a file object;
  * each record's data starts at a multiple of 64 bytes: the local header carries an extra field
    'FB' <u16 len> of 'Z' padding;
  * <archive>/data.pkl: the object pickled with protocol 2 by the stock Python pickler, whose
    persistent_id turns each storage into ('storage', torch.<Type>Storage, key, location, numel),
    key = str(order of first appearance); a tensor reduces to
    torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), stride, requires_grad,
    OrderedDict()); a module's state_dict() is an OrderedDict with a _metadata attribute (BUILD);
  * <archive>/byteorder 'little' (torch >= 2.1), <archive>/data/<key> for each storage in sorted
    key order (string order: 0, 1, 10, 11, ..., 2), the storage's raw little-endian bytes (its
    full numel, whatever part the tensors view);
  * <archive>/version '3\\n' (written first by torch 1.x, at the end since), and
    <archive>/.data/serialization_id (torch >= 2.2).
The pickle is produced by the real pickle.Pickler (as torch.save does) with stand-in 'torch' and
'torch._utils' modules registered only while dumping, so the opcodes are those torch emits.
Layouts: torch2.1 (data descriptors, zip64 end record, byteorder, serialization id), torch2.0
(data descriptors, zip64 end record), torch1.6 (version first, sizes in the local headers).
"""
import collections
import contextlib
import json
import os
import pickle
import pickletools
import shutil
import struct
import sys
import types
import zipfile
import zlib
from array import array

STORAGE_NAME = {"F64": "DoubleStorage", "F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
                "I64": "LongStorage", "I32": "IntStorage", "I16": "ShortStorage", "I8": "CharStorage",
                "U8": "ByteStorage", "BOOL": "BoolStorage"}
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FMT = {"F64": "d", "F32": "f", "F16": "e", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B", "BOOL": "?"}


# ---------------------------------------------------------------------------------------------
# torch stand-ins

class Storage:
    """A CPU storage: numel elements of dtype (raw little-endian bytes)."""

    def __init__(self, dtype, data):
        assert len(data) % ITEMSIZE[dtype] == 0
        self.dtype, self.data = dtype, bytes(data)
        self.numel = len(data) // ITEMSIZE[dtype]


class _TypedStorage:
    """What tensor.storage() returns: a fresh wrapper of the shared storage at every call."""

    def __init__(self, storage):
        self.storage = storage


_FAKE = {}


def _fake_modules():
    if not _FAKE:
        torch = types.ModuleType("torch")
        utils = types.ModuleType("torch._utils")

        def _rebuild_tensor_v2(*args):
            raise RuntimeError("stand-in")
        _rebuild_tensor_v2.__module__ = "torch._utils"
        _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
        utils._rebuild_tensor_v2 = _rebuild_tensor_v2
        torch._utils = utils
        for name in STORAGE_NAME.values():
            setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
        _FAKE.update(torch=torch, utils=utils)
    return _FAKE["torch"], _FAKE["utils"]


@contextlib.contextmanager
def _torch_registered():
    torch, utils = _fake_modules()
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Tensor:
    def __init__(self, storage, offset, size, stride=None):
        self.storage_, self.offset, self.size = storage, offset, tuple(size)
        if stride is None:
            stride, acc = [], 1
            for s in reversed(self.size):
                stride.insert(0, acc)
                acc *= s
        self.stride = tuple(stride)

    def __reduce_ex__(self, proto):
        # torch/_tensor.py _reduce_ex_internal, plain CPU tensor
        _, utils = _fake_modules()
        args = (_TypedStorage(self.storage_), self.offset, tuple(self.size), self.stride, False,
                collections.OrderedDict())
        return (utils._rebuild_tensor_v2, args)


def state_dict(items, version_metadata=True):
    """An OrderedDict like nn.Module.state_dict(), with its _metadata attribute."""
    d = collections.OrderedDict(items)
    if version_metadata:
        d._metadata = collections.OrderedDict([("", {"version": 1})])
    return d


# ---------------------------------------------------------------------------------------------
# torch.save

class _Pickler(pickle.Pickler):
    def __init__(self, f, torch):
        super().__init__(f, protocol=2)  # torch.serialization.DEFAULT_PROTOCOL
        self.torch, self.id_map, self.storages = torch, {}, {}

    def persistent_id(self, obj):
        if isinstance(obj, _TypedStorage):
            s = obj.storage
            key = self.id_map.setdefault(id(s), str(len(self.id_map)))
            self.storages[key] = s
            return ("storage", getattr(self.torch, STORAGE_NAME[s.dtype]), key, "cpu", s.numel)
        return None


def archive_name(path, layout):
    base = os.path.basename(path)
    if layout == "torch1.6":
        return base.split(".", 1)[0]
    return base.rsplit(".", 1)[0] if "." in base[1:] else base


class ZipWriter:
    """The records of a PyTorchStreamWriter (miniz, stored, 64-byte aligned data)."""

    def __init__(self, path, name, descriptors, zip64):
        self.f = open(path, "wb")
        self.name, self.descriptors, self.zip64 = name, descriptors, zip64
        self.central = []

    def write_record(self, rec, data):
        full = f"{self.name}/{rec}".encode()
        cursor = self.f.tell()
        start = cursor + 30 + len(full) + 4  # detail::getPadding, kFieldAlignment 64
        pad = (-start) % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        crc = zlib.crc32(data)
        flags = 0x08 if self.descriptors else 0
        fields = (0, 0) if self.descriptors else (len(data), len(data))
        self.f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 0, 0, 0x21,
                                 0 if self.descriptors else crc, *fields, len(full), len(extra)))
        self.f.write(full + extra)
        assert self.f.tell() % 64 == 0
        self.f.write(data)
        if self.descriptors:
            if self.zip64:
                self.f.write(struct.pack("<IIQQ", 0x08074B50, crc, len(data), len(data)))
            else:
                self.f.write(struct.pack("<IIII", 0x08074B50, crc, len(data), len(data)))
        self.central.append((full, crc, len(data), cursor, flags))

    def close(self):
        cd_start = self.f.tell()
        for full, crc, size, off, flags in self.central:
            self.f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, flags, 0, 0, 0x21, crc, size,
                                     size, len(full), 0, 0, 0, 0, 0, off))
            self.f.write(full)
        cd_end = self.f.tell()
        n = len(self.central)
        if self.zip64:
            self.f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, n, n, cd_end - cd_start,
                                     cd_start))
            self.f.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        self.f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_end - cd_start, cd_start, 0))
        self.f.close()


def torch_save(obj, path, layout="torch2.1", name=None):
    """Write obj the way torch.save(obj, path) does (see the module comment)."""
    import io
    with _torch_registered() as torch:
        buf = io.BytesIO()
        p = _Pickler(buf, torch)
        p.dump(obj)
    z = ZipWriter(path, name or archive_name(path, layout), descriptors=layout != "torch1.6",
                  zip64=layout != "torch1.6")
    if layout == "torch1.6":
        z.write_record("version", b"3\n")
    z.write_record("data.pkl", buf.getvalue())
    if layout == "torch2.1":
        z.write_record("byteorder", b"little")
    for key in sorted(p.storages):
        z.write_record(f"data/{key}", p.storages[key].data)
    if layout != "torch1.6":
        z.write_record("version", b"3\n")
    if layout == "torch2.1":
        z.write_record(".data/serialization_id", b"%040d" % (zlib.crc32(buf.getvalue()) * 7919))
    z.close()


# ---------------------------------------------------------------------------------------------
# safetensors (independent of the converter)

def st_read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = collections.OrderedDict()
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            f.seek(base + b)
            out[name] = (info["dtype"], list(info["shape"]), f.read(e - b))
    return out


def st_read_dir(path):
    if os.path.isfile(path):
        return st_read(path)
    idx = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        out.update(st_read(os.path.join(path, fn)))
    return out


def st_write(path, tensors):
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        dt, shape, data = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------------
# values

def f32_to_bf16_bits(u):
    if (u & 0x7F800000) == 0x7F800000 and (u & 0x7FFFFF):
        return 0x7FC0  # c10::detail::round_to_nearest_even
    lsb = (u >> 16) & 1
    return ((u + 0x7FFF + lsb) >> 16) & 0xFFFF


def f32_bytes_to_bf16(b):
    u = array("I")
    u.frombytes(b)
    return array("H", [f32_to_bf16_bits(x) for x in u]).tobytes()


def bf16_to_f32_bytes(b):
    h = array("H")
    h.frombytes(b)
    return array("I", [x << 16 for x in h]).tobytes()


def f32_to_f16_bytes(b):
    u = array("I")
    u.frombytes(b)
    out = bytearray()
    for x in u:
        if (x & 0x7F800000) == 0x7F800000 and (x & 0x7FFFFF):
            out += struct.pack("<H", 0xFE00 if x >> 31 else 0x7E00)
            continue
        v = struct.unpack("<f", struct.pack("<I", x))[0]
        try:
            out += struct.pack("<e", v)  # round half to even
        except OverflowError:
            out += struct.pack("<H", 0xFC00 if v < 0 else 0x7C00)
    return bytes(out)


def pack(dtype, values):
    if dtype == "BF16":
        return f32_bytes_to_bf16(struct.pack(f"<{len(values)}f", *values))
    return struct.pack(f"<{len(values)}{FMT[dtype]}", *values)


def contiguous_bytes(storage, offset, size, stride):
    es = ITEMSIZE[storage.dtype]
    out = bytearray()

    def rec(d, base):
        if d == len(size):
            out.extend(storage.data[base * es:(base + 1) * es])
            return
        for i in range(size[d]):
            rec(d + 1, base + i * stride[d])
    if all(s > 0 for s in size):
        rec(0, offset)
    return bytes(out)


def transpose_bytes(b, rows, cols, es):
    out = bytearray(len(b))
    for r in range(rows):
        for c in range(cols):
            out[(c * rows + r) * es:(c * rows + r + 1) * es] = b[(r * cols + c) * es:(r * cols + c + 1) * es]
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# commands

def inv_freq(head_dim, theta=10000.0):
    # 1 / theta ** (arange(0, d, 2).float() / d), in float32 as transformers builds it
    f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]
    return [f32(1.0 / f32(theta ** f32(i / head_dim))) for i in range(0, head_dim, 2)]


def golden_tensors(src_dir, views, with_inv_freq):
    """(name, Tensor) in state-dict order with bf16 storages."""
    src = st_read(os.path.join(src_dir, "model.safetensors"))
    with open(os.path.join(src_dir, "config.json")) as f:
        cfg = json.load(f)
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]

    def order(name):
        if name == "model.embed_tokens.weight":
            return (0, 0, name)
        if name.startswith("model.layers."):
            return (1, int(name.split(".")[2]), name)
        return (2, 0 if name == "model.norm.weight" else 1, name)
    items = []
    for name in sorted(src, key=order):
        dt, shape, data = src[name]
        assert dt == "F32", name
        items.append((name, shape, f32_bytes_to_bf16(data)))
    by = {n: (s, b) for n, s, b in items}
    out = []
    if views:
        # q and k of layer 0 share one storage, k at a non-zero offset
        (qs, qb), (ks, kb) = by["model.layers.0.self_attn.q_proj.weight"], by["model.layers.0.self_attn.k_proj.weight"]
        shared = Storage("BF16", qb + kb)
        special = {"model.layers.0.self_attn.q_proj.weight": Tensor(shared, 0, qs),
                   "model.layers.0.self_attn.k_proj.weight": Tensor(shared, len(qb) // 2, ks)}
        # v stored transposed: the tensor is a view with stride (1, rows)
        vs, vb = by["model.layers.0.self_attn.v_proj.weight"]
        special["model.layers.0.self_attn.v_proj.weight"] = Tensor(
            Storage("BF16", transpose_bytes(vb, vs[0], vs[1], 2)), 0, vs, (1, vs[0]))
        # down_proj [H, I] as columns 3..3+I of a wider [H, I+5] storage: row stride I+5, offset 3
        ds, db = by["model.layers.1.mlp.down_proj.weight"]
        rows, cols = ds
        wide = bytearray()
        for r in range(rows):
            wide += b"\x80\x7f" * 3 + db[r * cols * 2:(r + 1) * cols * 2] + b"\x80\x7f" * 2  # padding: bf16 inf
        special["model.layers.1.mlp.down_proj.weight"] = Tensor(Storage("BF16", wide), 3, ds, (cols + 5, 1))
        # lm_head inside a padded storage (offset 100, 7 trailing elements)
        ls, lb = by["lm_head.weight"]
        special["lm_head.weight"] = Tensor(Storage("BF16", b"\xc0\x7f" * 100 + lb + b"\xc0\x7f" * 7), 100, ls)
    for name, shape, data in items:
        t = special.get(name) if views else None
        out.append((name, t or Tensor(Storage("BF16", data), 0, shape)))
        if with_inv_freq and name.endswith("self_attn.k_proj.weight"):
            layer = name.split(".")[2]
            vals = inv_freq(head_dim, cfg.get("rope_theta") or 10000.0)
            out.append((f"model.layers.{layer}.self_attn.rotary_emb.inv_freq",
                        Tensor(Storage("F32", pack("F32", vals)), 0, [len(vals)])))
    return out


def cmd_golden_bin(args):
    src_dir, out_dir = args[0], args[1]
    shards = int(args[args.index("--shards") + 1]) if "--shards" in args else 1
    tensors = golden_tensors(src_dir, "--views" in args, "--inv-freq" in args)
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(os.path.join(src_dir, "config.json"), os.path.join(out_dir, "config.json"))
    if shards == 1:
        torch_save(state_dict(tensors), os.path.join(out_dir, "pytorch_model.bin"), "torch2.1")
        return 0
    per = -(-len(tensors) // shards)
    weight_map, total = {}, 0
    layouts = ["torch2.0", "torch1.6", "torch2.1"]
    for i in range(shards):
        part = tensors[i * per:(i + 1) * per]
        fn = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        # transformers' shard_checkpoint builds plain dicts
        torch_save(dict(part), os.path.join(out_dir, fn), layouts[i % len(layouts)])
        for name, t in part:
            if not name.endswith("inv_freq"):
                weight_map[name] = fn
                total += len(contiguous_bytes(t.storage_, t.offset, t.size, t.stride))
    with open(os.path.join(out_dir, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return 0


def cmd_rounded(args):
    src_dir, out_dir = args[0], args[1]
    dtype = args[args.index("--dtype") + 1]
    src = st_read(os.path.join(src_dir, "model.safetensors"))
    out = {}
    for name, (dt, shape, data) in src.items():
        bf = f32_bytes_to_bf16(data)
        out[name] = ("BF16", shape, bf) if dtype == "bfloat16" else ("F32", shape, bf16_to_f32_bytes(bf))
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(os.path.join(src_dir, "config.json"), os.path.join(out_dir, "config.json"))
    st_write(os.path.join(out_dir, "model.safetensors"), out)
    return 0


def cmd_synthetic(args):
    out_bin, prefix = args[0], args[1]
    T = collections.OrderedDict()
    expect = {}  # name -> (dtype, shape, contiguous bytes in the source dtype)

    def add(name, storage, offset, size, stride=None):
        t = Tensor(storage, offset, size, stride)
        T[name] = t
        expect[name] = (storage.dtype, list(t.size), contiguous_bytes(storage, offset, t.size, t.stride))
    bf = Storage("BF16", pack("BF16", [float(i) - 7.5 for i in range(20)]))
    add("a.bf16_offset", bf, 5, [2, 3])
    add("b.bf16_shared", bf, 12, [4])
    m = Storage("F32", pack("F32", [0.1 * i for i in range(12)]))
    add("c.f32_transposed", m, 0, [4, 3], [1, 4])
    h = Storage("F16", pack("F16", [0.25 * i - 3 for i in range(24)]))
    add("d.f16_permuted", h, 0, [4, 2, 3], [1, 12, 4])
    special = [0.0, -0.0, 1.0, 3.4e38, 1e-40, 70000.0, -70000.0, 65519.0]
    sp = bytearray(pack("F32", special))
    sp += struct.pack("<IIIIII", 0x3F808000, 0x3F818000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000)
    add("e.f32_special", Storage("F32", bytes(sp)), 0, [14])
    add("f.i64", Storage("I64", pack("I64", [-1, 0, 2**40])), 0, [3])
    add("g.f64", Storage("F64", pack("F64", [1.0000001192092896, -2.5e-50])), 0, [2])
    add("h.scalar", Storage("F32", pack("F32", [9.0, 2.5])), 1, [])
    add("i.empty", Storage("BF16", b""), 0, [0, 4])
    add("j.expand", Storage("F32", pack("F32", [1.5, -2.0, 3.25])), 0, [2, 3], [0, 1])
    add("k.bool", Storage("BOOL", pack("BOOL", [True, False, True])), 0, [3])
    wide = Storage("F32", pack("F32", [float(i) for i in range(24)]))
    add("l.f32_sliced", wide, 1, [4, 3], [6, 1])
    add("m.f16_row1", h, 4, [1, 4], [99, 1])  # size-1 dimension with an arbitrary stride
    T["model.layers.0.self_attn.rotary_emb.inv_freq"] = Tensor(Storage("F32", pack("F32", inv_freq(8))), 0, [4])
    os.makedirs(os.path.dirname(os.path.abspath(out_bin)), exist_ok=True)
    torch_save(state_dict(T.items()), out_bin, "torch2.1", name="archive")

    def to_f32(dt, b):
        if dt == "F32":
            return b
        if dt == "BF16":
            return bf16_to_f32_bytes(b)
        n = len(b) // ITEMSIZE[dt]
        return struct.pack(f"<{n}f", *struct.unpack(f"<{n}{FMT[dt]}", b))
    for mode in ("keep", "float32", "bfloat16", "float16"):
        res = {}
        for name, (dt, shape, b) in expect.items():
            if mode == "keep" or dt not in ("F64", "F32", "F16", "BF16"):
                res[name] = (dt, shape, b)
            elif mode == "float32":
                res[name] = ("F32", shape, to_f32(dt, b))
            elif mode == "bfloat16":
                res[name] = ("BF16", shape, b if dt == "BF16" else f32_bytes_to_bf16(to_f32(dt, b)))
            else:
                res[name] = ("F16", shape, b if dt == "F16" else f32_to_f16_bytes(to_f32(dt, b)))
        st_write(f"{prefix}.{mode}.safetensors", res)
    return 0


def cmd_legacy(args):
    # torch/serialization.py _legacy_save: magic number, protocol version, sys_info, then the
    # pickled object and the storages
    with open(args[0], "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001,
                    dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=8))):
            pickle.dump(obj, f, protocol=2)
        pickle.dump(collections.OrderedDict(), f, protocol=2)
        pickle.dump([], f, protocol=2)
    return 0


def cmd_foreign(args):
    """a state dict that also pickles an object of another class (collections.Counter): a real
    torch.load would construct it; the converter must refuse to"""
    d = {"w": Tensor(Storage("F32", pack("F32", [1.0, 2.0])), 0, [2]), "extra": collections.Counter(a=1)}
    torch_save(d, args[0], "torch2.1")
    return 0


def cmd_compare(args):
    a, b = st_read_dir(args[0]), st_read_dir(args[1])
    bad = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            bad.append(f"{name}: only in {args[0] if name in a else args[1]}")
        elif a[name] != b[name]:
            (da, sa, xa), (db, sb, xb) = a[name], b[name]
            bad.append(f"{name}: {da}{sa} ({len(xa)} B) vs {db}{sb} ({len(xb)} B)"
                       f"{'' if (da, sa) != (db, sb) else ' differ in data'}")
    if bad:
        print("\n".join(bad[:20]))
        print(f"compare: {len(bad)} of {len(set(a) | set(b))} tensors differ")
        return 1
    print(f"compare: {len(a)} tensors identical ({args[0]} vs {args[1]})")
    return 0


def _records(path):
    with zipfile.ZipFile(path) as z:
        for i in z.infolist():
            with open(path, "rb") as f:
                f.seek(i.header_offset)
                h = f.read(30)
            nlen, elen = struct.unpack("<HH", h[26:30])
            yield i, i.header_offset + 30 + nlen + elen


def cmd_opcodes(args):
    with zipfile.ZipFile(args[0]) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(pkl)
    for k, (op, arg, pos) in enumerate(pickletools.genops(data)):
        if k >= int(args[1]):
            break
        print(op.name if arg is None else f"{op.name} {arg!r}")
    return 0


def cmd_records(args):
    for i, off in _records(args[0]):
        print(f"{i.filename} offset={off} size={i.file_size} stored={i.compress_type == 0} align64={off % 64 == 0}")
    return 0


def main(argv):
    cmds = {"golden-bin": cmd_golden_bin, "rounded": cmd_rounded, "synthetic": cmd_synthetic,
            "legacy": cmd_legacy, "foreign": cmd_foreign, "compare": cmd_compare, "opcodes": cmd_opcodes, "records": cmd_records}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
