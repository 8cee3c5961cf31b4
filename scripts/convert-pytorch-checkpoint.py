#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (torch.save zip format) into safetensors, without torch.

usage:
  scripts/convert-pytorch-checkpoint.py SRC OUT_DIR [--dtype keep|float32|float16|bfloat16]
                                        [--max-shard-size 5GB] [--force] [--dry-run] [--quiet]

SRC is a Hugging Face model folder holding pytorch_model.bin, or pytorch_model.bin.index.json and
the shards it names (pytorch_model-0000x-of-0000y.bin), or one .bin file. OUT_DIR (created if
needed, may be SRC itself) receives model.safetensors, or model-0000x-of-0000y.safetensors plus
model.safetensors.index.json when the weights are larger than --max-shard-size (default 5GB;
KB/MB/GB are powers of 10, KiB/MiB/GiB powers of 2, a bare number is bytes). Every non-weight
file of a SRC folder (config.json, generation_config.json, tokenizer.model, tokenizer*.json, ...)
is copied too; a file that already exists in OUT_DIR is kept unless --force.

  --dtype keep      (default) every tensor keeps its dtype: a bf16 checkpoint stays BF16 (beaconrt
                    computes in f32 from BF16/F16/F32 weights, so nothing is gained by widening)
  --dtype float32   floating tensors (BF16/F16/F64) become F32 (exact from BF16 and F16)
  --dtype float16 / bfloat16
                    floating tensors are rounded to nearest-even, like torch's .to(dtype)
                    (bf16 NaN -> 0x7FC0 as torch does)
  --max-shard-size  largest output file; tensors are never split
  --force           replace safetensors weights (and copied files) already in OUT_DIR
  --dry-run         print what would be written, write nothing
  --quiet           no progress lines

What it does:
  * Reads the zip archive torch.save writes (since torch 1.6): <archive>/data.pkl, a protocol-2
    pickle whose tensors are torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
    calls and whose storages are persistent ids ('storage', torch.<Type>Storage, key, location,
    numel), with the raw little-endian bytes of storage <key> in <archive>/data/<key>. The pickle
    is read with a restricted unpickler that resolves only those names (collections.OrderedDict,
    the torch._utils rebuild functions, the torch storage classes and dtypes): nothing in the
    file is executed, and any other global is an error.
  * Honours storage offset, size and stride: contiguous tensors are copied straight from the
    archive; views (a transposed or sliced tensor, a broadcast) are made contiguous.
  * Drops the rotary buffers '*.rotary_emb.inv_freq' (beaconrt computes RoPE itself).
  * Streams: the safetensors header is written first from the pickle's metadata, then each
    tensor is copied (and converted) in chunks of --chunk-mb, so memory stays at a few chunks
    (one whole tensor for a non-contiguous view) whatever the checkpoint size. Outputs are
    written to *.partial and renamed when complete.
  * Refuses the legacy non-zip torch format (torch < 1.6, or _use_new_zipfile_serialization=
    False) and TorchScript archives with a message saying so.

Python standard library only; numpy, when importable, only speeds up --dtype conversions and
non-contiguous copies (BRT_CONVERT_NO_NUMPY=1 forces the pure-Python path; the results are
identical).
"""
import argparse
import collections
import io
import itertools
import json
import os
import pickle
import re
import shutil
import struct
import sys
import zipfile
import zlib
from array import array

if os.environ.get("BRT_CONVERT_NO_NUMPY"):
    np = None
else:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - depends on the machine
        np = None

PROG = "convert-pytorch-checkpoint"


class ConvertError(Exception):
    pass


ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U8": 1, "BOOL": 1}
FLOATS = ("F64", "F32", "F16", "BF16")

# torch.<Name>Storage -> safetensors dtype (the legacy typed-storage classes torch pickles)
STORAGE_DTYPES = {
    "DoubleStorage": "F64", "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL", "UntypedStorage": "U8",
}
# torch.<dtype> (pickled by _rebuild_tensor_v3) -> safetensors dtype
TORCH_DTYPES = {
    "float64": "F64", "double": "F64", "float32": "F32", "float": "F32", "float16": "F16",
    "half": "F16", "bfloat16": "BF16", "int64": "I64", "long": "I64", "int32": "I32", "int": "I32",
    "int16": "I16", "short": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}
DTYPE_ARGS = {"keep": None, "float32": "F32", "fp32": "F32", "f32": "F32", "float16": "F16",
              "fp16": "F16", "f16": "F16", "half": "F16", "bfloat16": "BF16", "bf16": "BF16"}

# the legacy format starts with pickle.dumps(MAGIC_NUMBER, protocol=2): PROTO 2, LONG1 10 bytes
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

WEIGHT_FILE = re.compile(r"(\.bin|\.bin\.index\.json|\.safetensors|\.safetensors\.index\.json|\.pt|\.pth|"
                         r"\.ckpt|\.h5|\.msgpack|\.onnx|\.gguf|\.partial)$")
OUT_WEIGHTS = re.compile(r"^(model\.safetensors|model\.safetensors\.index\.json|"
                         r"model-\d{5}-of-\d{5}\.safetensors)$")


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Restricted unpickling of data.pkl

class StorageType:
    """Stands for the class torch.<Name>Storage named in a persistent id."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class TorchDtype:
    def __init__(self, name):
        self.name = name
        self.dtype = TORCH_DTYPES[name]


class StorageRef:
    """One storage record <archive>/data/<key>: numel elements of dtype."""

    def __init__(self, archive, key, dtype, numel, location):
        self.archive, self.key, self.dtype, self.numel, self.location = archive, key, dtype, numel, location
        self.record = archive.record_name(key)
        try:
            self.info = archive.zf.getinfo(self.record)
        except KeyError:
            raise ConvertError(f"{archive.path}: data.pkl refers to storage '{key}' but the archive has no "
                               f"record {self.record} (truncated or not written by torch.save?)") from None
        self.nbytes = numel * ITEMSIZE[dtype]
        if self.info.file_size < self.nbytes:
            raise ConvertError(f"{archive.path}: record {self.record} holds {self.info.file_size} bytes, but "
                               f"data.pkl declares {numel} {dtype} elements ({self.nbytes} bytes)")

    def read(self, start, n):
        return self.archive.read_record(self.info, start, n)


class TensorRef:
    def __init__(self, storage, offset, size, stride, dtype=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype = dtype or storage.dtype


class _TensorClass:
    """Stands for torch.Tensor / torch.nn.Parameter when a pickle names the type."""


def _check_storage(storage, what):
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError(f"{what}: the storage argument is not a persistent storage id")
    return storage


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return TensorRef(_check_storage(storage, "_rebuild_tensor_v2"), storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(_check_storage(storage, "_rebuild_tensor"), storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    if not isinstance(dtype, TorchDtype):
        raise pickle.UnpicklingError("_rebuild_tensor_v3: the dtype argument is not a torch dtype")
    return TensorRef(_check_storage(storage, "_rebuild_tensor_v3"), storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


REBUILD = {"_rebuild_tensor_v2": _rebuild_tensor_v2, "_rebuild_tensor": _rebuild_tensor,
           "_rebuild_tensor_v3": _rebuild_tensor_v3, "_rebuild_parameter": _rebuild_parameter,
           "_rebuild_parameter_with_state": _rebuild_parameter}


class TorchUnpickler(pickle.Unpickler):
    def __init__(self, f, archive):
        super().__init__(f, encoding="utf-8")
        self.archive = archive
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in REBUILD:
            return REBUILD[name]
        if module in ("torch._tensor", "torch.tensor") and name == "_rebuild_from_type_v2":
            return _rebuild_from_type_v2
        if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
            return StorageType(name)
        if module == "torch" and name in TORCH_DTYPES:
            return TorchDtype(name)
        if (module, name) in (("torch._tensor", "Tensor"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter")):
            return _TensorClass
        if "Storage" in name:
            raise pickle.UnpicklingError(f"storage type {module}.{name} is not supported "
                                         f"(supported: {', '.join(sorted(STORAGE_DTYPES))})")
        raise pickle.UnpicklingError(f"data.pkl needs {module}.{name}; a weights file (state dict of tensors) "
                                     "does not, so it is not loaded")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id type {typename!r} (expected 'storage')")
        storage_type, key, location, numel = pid[1:5]
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"persistent id {pid!r}: no storage type")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        location = location.decode("ascii") if isinstance(location, bytes) else location
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"storage '{key}': bad element count {numel!r}")
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = StorageRef(self.archive, key, storage_type.dtype, numel, location)
        elif ref.dtype != storage_type.dtype:
            raise pickle.UnpicklingError(f"storage '{key}' is used as {ref.dtype} and {storage_type.dtype}")
        return ref


# ---------------------------------------------------------------------------------------------
# The archive

def refuse_non_zip(path, head):
    if head.startswith(LEGACY_MAGIC):
        raise ConvertError(
            f"{path}: legacy PyTorch serialization format (torch < 1.6, or torch.save(..., "
            "_use_new_zipfile_serialization=False)); this converter reads only the zip format that torch.save "
            "writes by default since 1.6. Re-save the file once with a recent torch: "
            "torch.save(torch.load(PATH, map_location='cpu'), NEW_PATH), then convert NEW_PATH")
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise ConvertError(f"{path}: a tar archive (the torch < 0.4 'tar' checkpoint format) is not supported; "
                           "re-save it with a recent torch")
    raise ConvertError(f"{path}: not a PyTorch zip checkpoint (no zip signature at the start of the file)")


class Archive:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            head = f.read(512)
        if not head.startswith(b"PK\x03\x04"):
            refuse_non_zip(path, head)
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise ConvertError(f"{path}: unreadable zip archive: {e}") from None
        names = self.zf.namelist()
        pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not pkls:
            if any(n.endswith("/constants.pkl") for n in names):
                raise ConvertError(f"{path}: a TorchScript archive (torch.jit.save), not a state dict")
            raise ConvertError(f"{path}: zip archive without <archive>/data.pkl; not written by torch.save")
        if len(pkls) > 1:
            raise ConvertError(f"{path}: several pickles in one archive: {', '.join(pkls)}")
        self.prefix = pkls[0][: -len("data.pkl")]
        bo = self.prefix + "byteorder"
        if bo in names:
            order = self.zf.read(bo)
            if order != b"little":
                raise ConvertError(f"{path}: saved on a {order.decode(errors='replace')}-endian machine; only "
                                   "little-endian checkpoints are supported")
        self.fd = os.open(path, os.O_RDONLY)
        self._data_offsets = {}
        self._ext = {}
        try:
            data = self.zf.read(pkls[0])
        except zipfile.BadZipFile as e:
            raise ConvertError(f"{path}: {pkls[0]}: {e}") from None
        up = TorchUnpickler(io.BytesIO(data), self)
        try:
            self.obj = up.load()
        except ConvertError:
            raise
        except Exception as e:
            raise ConvertError(f"{path}: cannot read {pkls[0]}: {e}") from None
        self.storages = up.storages

    def record_name(self, key):
        return f"{self.prefix}data/{key}"

    def _data_offset(self, info):
        off = self._data_offsets.get(info.filename)
        if off is None:
            h = os.pread(self.fd, 30, info.header_offset)
            if len(h) != 30 or h[:4] != b"PK\x03\x04":
                raise ConvertError(f"{self.path}: bad local header for {info.filename}")
            nlen, elen = struct.unpack("<HH", h[26:30])
            off = self._data_offsets[info.filename] = info.header_offset + 30 + nlen + elen
        return off

    def read_record(self, info, start, n):
        if start < 0 or start + n > info.file_size:
            raise ConvertError(f"{self.path}: read past the end of {info.filename}")
        if info.compress_type != zipfile.ZIP_STORED:  # torch never compresses; a re-zipped file might
            f = self._ext.get(info.filename)
            if f is None:
                f = self._ext[info.filename] = self.zf.open(info)
            f.seek(start)
            b = f.read(n)
        else:
            base = self._data_offset(info) + start
            parts, got = [], 0
            while got < n:
                b = os.pread(self.fd, min(n - got, 1 << 30), base + got)
                if not b:
                    break
                parts.append(b)
                got += len(b)
            b = b"".join(parts) if len(parts) != 1 else parts[0]
        if len(b) != n:
            raise ConvertError(f"{self.path}: {info.filename} is truncated")
        return b

    def close(self):
        for f in self._ext.values():
            f.close()
        os.close(self.fd)
        self.zf.close()


# ---------------------------------------------------------------------------------------------
# Tensors: layout checks, byte streams, dtype conversion

def tensor_numel(t):
    n = 1
    for s in t.size:
        n *= s
    return n


def is_contiguous(size, stride):
    expected = 1
    for s, st in zip(reversed(size), reversed(stride)):
        if s != 1 and st != expected:
            return False
        expected *= s
    return True


def check_tensor(name, t):
    where = f"{t.storage.archive.path}: tensor '{name}'"
    if not (isinstance(t.size, (tuple, list)) and isinstance(t.stride, (tuple, list)) and isinstance(t.offset, int)
            and all(isinstance(x, int) for x in t.size) and all(isinstance(x, int) for x in t.stride)):
        raise ConvertError(f"{where}: malformed size/stride/offset {t.size!r} {t.stride!r} {t.offset!r}")
    t.size, t.stride = tuple(t.size), tuple(t.stride)
    if len(t.size) != len(t.stride):
        raise ConvertError(f"{where}: size {list(t.size)} and stride {list(t.stride)} differ in rank")
    if any(s < 0 for s in t.size) or any(st < 0 for st in t.stride) or t.offset < 0:
        raise ConvertError(f"{where}: negative size, stride or offset")
    if t.dtype != t.storage.dtype and t.storage.dtype != "U8":
        raise ConvertError(f"{where}: {t.dtype} view of a {t.storage.dtype} storage is not supported")
    numel = tensor_numel(t)
    if numel == 0:
        return
    last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride))
    es = ITEMSIZE[t.dtype]
    if (last + 1) * es > t.storage.nbytes:
        raise ConvertError(f"{where}: size {list(t.size)}, stride {list(t.stride)} and offset {t.offset} reach "
                           f"element {last}, past the end of its storage '{t.storage.key}' "
                           f"({t.storage.nbytes // es} elements)")


NP_DT = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
         "I8": "i1", "U8": "u1", "BOOL": "u1"}


def gather(t):
    """Bytes of a non-contiguous tensor, in C order."""
    es = ITEMSIZE[t.dtype]
    lo = t.offset
    hi = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride)) + 1
    raw = t.storage.read(lo * es, (hi - lo) * es)
    if np is not None:
        a = np.frombuffer(raw, dtype=NP_DT[t.dtype])
        v = np.lib.stride_tricks.as_strided(a, shape=t.size, strides=tuple(st * es for st in t.stride))
        return np.ascontiguousarray(v).tobytes()
    mv = memoryview(raw)
    out = bytearray()
    inner, inner_st = t.size[-1], t.stride[-1]
    for idx in itertools.product(*(range(s) for s in t.size[:-1])):
        base = t.offset - lo + sum(i * st for i, st in zip(idx, t.stride[:-1]))
        if inner_st == 1:
            out += mv[base * es:(base + inner) * es]
        else:
            for j in range(inner):
                p = (base + j * inner_st) * es
                out += mv[p:p + es]
    return bytes(out)


def source_chunks(t, chunk_bytes):
    """The tensor's bytes in C order, in chunks of at most chunk_bytes (a multiple of 8).
    Returns (iterator, crc_check): crc_check() verifies the zip CRC when the tensor is its
    whole storage record, read in full."""
    es = ITEMSIZE[t.dtype]
    total = tensor_numel(t) * es
    if total == 0:
        return iter(()), lambda: None
    if is_contiguous(t.size, t.stride):
        start = t.offset * es
        whole = start == 0 and total == t.storage.info.file_size and t.storage.info.compress_type == zipfile.ZIP_STORED
        state = {"crc": 0}

        def gen():
            for pos in range(0, total, chunk_bytes):
                b = t.storage.read(start + pos, min(chunk_bytes, total - pos))
                if whole:
                    state["crc"] = zlib.crc32(b, state["crc"])
                yield b

        def check():
            if whole and state["crc"] != t.storage.info.CRC:
                raise ConvertError(f"{t.storage.archive.path}: CRC mismatch in {t.storage.record} (corrupt file)")
        return gen(), check
    buf = gather(t)
    return (buf[p:p + chunk_bytes] for p in range(0, total, chunk_bytes)), lambda: None


def _bf16_bits(u):
    """round-to-nearest-even of one float32 bit pattern to bfloat16 (torch: NaN -> 0x7FC0)"""
    if (u & 0x7F800000) == 0x7F800000 and (u & 0x007FFFFF):
        return 0x7FC0
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def _f16_pack(values):
    try:
        return struct.pack(f"<{len(values)}e", *values)
    except OverflowError:
        out = bytearray()
        for x in values:
            try:
                out += struct.pack("<e", x)
            except OverflowError:  # rounds past the f16 range: infinity, as torch and numpy give
                out += b"\x00\xfc" if x < 0 else b"\x00\x7c"
        return bytes(out)


def _to_f32_std(src, b):
    if src == "F32":
        return b
    if src == "BF16":  # exact: the bf16 bits are the high half of the f32 bits
        out = bytearray(len(b) * 2)
        out[2::4] = b[0::2]
        out[3::4] = b[1::2]
        return bytes(out)
    if src == "F16":
        return array("f", struct.unpack(f"<{len(b) // 2}e", b)).tobytes()
    if src == "F64":
        d = array("d")
        d.frombytes(b)
        return array("f", d).tobytes()
    raise AssertionError(src)


def _from_f32_std(dst, b):
    if dst == "F32":
        return b
    if dst == "BF16":
        u = array("I")
        u.frombytes(b)
        return array("H", [_bf16_bits(x) for x in u]).tobytes()
    if dst == "F16":
        f = array("f")
        f.frombytes(b)
        out = bytearray(_f16_pack(f))
        u = array("I")
        u.frombytes(b)
        for i, x in enumerate(u):  # NaN -> the canonical quiet NaN with its sign, as torch converts
            if (x & 0x7F800000) == 0x7F800000 and (x & 0x007FFFFF):
                out[2 * i:2 * i + 2] = b"\x00\xfe" if x >> 31 else b"\x00\x7e"
        return bytes(out)
    raise AssertionError(dst)


def _convert_np(src, dst, b):
    a = np.frombuffer(b, dtype=NP_DT[src])
    if src == "BF16":
        f = (a.astype("<u4") << 16).view("<f4")
    else:
        with np.errstate(over="ignore"):
            f = a.astype("<f4")  # F64 -> F32 -> narrower, as torch converts through float
    if dst == "F32":
        return f.tobytes()
    nan = np.isnan(f)
    if dst == "BF16":
        u = f.view("<u4").astype("<u8")
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
        r[nan] = 0x7FC0
        return r.tobytes()
    if dst == "F16":
        with np.errstate(over="ignore"):
            h = f.astype("<f2").view("<u2").copy()
        if nan.any():
            h[nan] = np.where(np.signbit(f[nan]), 0xFE00, 0x7E00).astype("<u2")
        return h.tobytes()
    raise AssertionError(dst)


def convert_bytes(src, dst, b):
    if src == dst:
        return b
    if np is not None:
        return _convert_np(src, dst, b)
    return _from_f32_std(dst, _to_f32_std(src, b))


# ---------------------------------------------------------------------------------------------
# Inputs, plan, outputs

class Entry:
    def __init__(self, name, t, out_dtype):
        self.name, self.t, self.out_dtype = name, t, out_dtype
        self.shape = list(t.size)
        self.nbytes = tensor_numel(t) * ITEMSIZE[out_dtype]


def find_inputs(src):
    """-> (list of .bin paths, weight_map or None, source folder or None)"""
    if os.path.isfile(src):
        return [src], None, None
    if not os.path.isdir(src):
        raise ConvertError(f"{src}: no such file or folder")
    single = os.path.join(src, "pytorch_model.bin")
    index = os.path.join(src, "pytorch_model.bin.index.json")
    if os.path.isfile(single):
        return [single], None, src
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                wm = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConvertError(f"{index}: not a weight index ({e})") from None
        if not isinstance(wm, dict) or not wm:
            raise ConvertError(f"{index}: \"weight_map\" must be a non-empty object")
        files = []
        for name, fn in wm.items():
            if not isinstance(fn, str) or "/" in fn or fn in (".", ".."):
                raise ConvertError(f"{index}: tensor '{name}': bad shard name {fn!r}")
            if fn not in files:
                files.append(fn)
        missing = [fn for fn in files if not os.path.isfile(os.path.join(src, fn))]
        if missing:
            raise ConvertError(f"{index}: shard(s) missing from {src}: {', '.join(missing)}")
        return [os.path.join(src, fn) for fn in sorted(files)], wm, src
    have_st = [n for n in os.listdir(src) if n.endswith(".safetensors")]
    hint = f" (it already has {have_st[0]}: nothing to convert)" if have_st else ""
    raise ConvertError(f"{src}: no pytorch_model.bin or pytorch_model.bin.index.json{hint}")


def load_tensors(paths, weight_map):
    """-> (archives, ordered list of (name, TensorRef), dropped names)"""
    archives, tensors, dropped, seen = [], [], [], {}
    for path in paths:
        a = Archive(path)
        archives.append(a)
        obj = a.obj
        if not isinstance(obj, dict):
            raise ConvertError(f"{path}: the pickle holds a {type(obj).__name__}, not a state dict (name -> tensor)")
        nested = [k for k, v in obj.items() if isinstance(v, dict)]
        if nested:
            raise ConvertError(f"{path}: entry '{nested[0]}' is a dict, not a tensor (a training checkpoint? save "
                               f"the model's state_dict, e.g. torch.save(ckpt['{nested[0]}'], ...))")
        fn = os.path.basename(path)
        for name, t in obj.items():
            if not isinstance(name, str):
                raise ConvertError(f"{path}: key {name!r} is not a string")
            if not isinstance(t, TensorRef):
                raise ConvertError(f"{path}: '{name}' is a {type(t).__name__}, not a tensor")
            if name in seen:
                raise ConvertError(f"tensor '{name}' is in both {seen[name]} and {path}")
            seen[name] = path
            if weight_map is not None:
                want = weight_map.get(name)
                if want is None and not name.endswith("rotary_emb.inv_freq"):
                    log(f"warning: {fn} holds '{name}', which the index does not list; converting it anyway")
                elif want is not None and want != fn:
                    raise ConvertError(f"{path}: holds '{name}', which the index places in {want}")
            check_tensor(name, t)
            if name.endswith("rotary_emb.inv_freq"):
                dropped.append(name)
                continue
            tensors.append((name, t))
    if weight_map is not None:
        absent = [n for n in weight_map if n not in seen]
        if absent:
            raise ConvertError(f"the index lists {len(absent)} tensor(s) that no shard holds, e.g. '{absent[0]}' "
                               f"in {weight_map[absent[0]]}")
    return archives, tensors, dropped


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", s, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (e.g. 5GB, 500MB, 2GiB, 1000000)")
    unit = (m.group(2) or "B").upper()
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
            "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    v = int(float(m.group(1)) * mult)
    if v <= 0:
        raise argparse.ArgumentTypeError("the shard size must be positive")
    return v


def plan_shards(entries, max_size):
    shards, cur, cur_size = [], [], 0
    for e in entries:  # as transformers does: a new shard when the next tensor would not fit
        if cur and cur_size + e.nbytes > max_size:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append(e)
        cur_size += e.nbytes
    if cur or not shards:
        shards.append(cur)
    return shards


def header_bytes(entries):
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for e in entries:
        header[e.name] = {"dtype": e.out_dtype, "shape": e.shape, "data_offsets": [off, off + e.nbytes]}
        off += e.nbytes
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return hb + b" " * (-len(hb) % 8), off


def human(n):
    return f"{n / 1e9:.2f} GB" if n >= 10**8 else f"{n / 1e6:.2f} MB"


class Progress:
    """a line every 5% (at least every 256 MiB) of the data written"""

    def __init__(self, total, quiet):
        self.total, self.done, self.quiet = total, 0, quiet
        self.step = max(total // 20, 1 << 28)
        self.next = self.step

    def add(self, n):
        self.done += n
        if not self.quiet and self.done >= self.next and self.done < self.total:
            log(f"  {human(self.done)} of {human(self.total)}")
            self.next = self.done + self.step


def write_safetensors(path, entries, chunk_bytes, progress):
    # aligned like the safetensors library: larger elements first, then by name
    order = sorted(entries, key=lambda e: (-ITEMSIZE[e.out_dtype], e.name))
    hb, data_size = header_bytes(order)
    tmp = path + ".partial"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for e in order:
                # a conversion holds a few widened copies of its chunk: read less at a time
                step = chunk_bytes if e.t.dtype == e.out_dtype else max(chunk_bytes // 4, 1 << 20)
                chunks, check = source_chunks(e.t, step)
                written = 0
                for c in chunks:
                    out = convert_bytes(e.t.dtype, e.out_dtype, c)
                    f.write(out)
                    written += len(out)
                    progress.add(len(out))
                check()
                if written != e.nbytes:
                    raise ConvertError(f"internal error: '{e.name}' gave {written} bytes, expected {e.nbytes}")
            if f.tell() != 8 + len(hb) + data_size:
                raise ConvertError(f"internal error: {tmp} has the wrong size")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="Convert a PyTorch checkpoint (pytorch_model.bin or shards "
                                 "+ index) to safetensors without torch.")
    ap.add_argument("src", help="model folder, or one .bin file")
    ap.add_argument("out", help="output folder")
    ap.add_argument("--dtype", default="keep", choices=sorted(DTYPE_ARGS), metavar="{keep,float32,float16,bfloat16}",
                    help="output dtype of floating tensors (default keep; aliases f32 fp32 f16 fp16 half bf16)")
    ap.add_argument("--max-shard-size", type=parse_size, default=parse_size("5GB"), metavar="SIZE",
                    help="largest output file, e.g. 5GB (default), 500MB, 2GiB")
    ap.add_argument("--chunk-mb", type=int, default=64, help="copy buffer (default 64 MiB)")
    ap.add_argument("--force", action="store_true", help="replace weights and copied files already in OUT")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    if sys.byteorder != "little":
        raise ConvertError("this converter runs on little-endian machines only")
    target = DTYPE_ARGS[args.dtype]
    chunk = max(args.chunk_mb, 1) << 20

    paths, weight_map, src_dir = find_inputs(args.src)
    archives, tensors, dropped = load_tensors(paths, weight_map)
    try:
        entries = [Entry(n, t, target if (target and t.dtype in FLOATS) else t.dtype) for n, t in tensors]
        if not entries:
            raise ConvertError(f"{args.src}: no tensors to convert")
        for e in entries:
            if e.out_dtype in ("F64",):
                log(f"warning: '{e.name}' stays {e.out_dtype}; beaconrt reads F32/F16/BF16 weights "
                    "(use --dtype float32)")
        total = sum(e.nbytes for e in entries)
        shards = plan_shards(entries, args.max_shard_size)
        n = len(shards)
        names = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        counts = collections.Counter(f"{t.dtype}->{e.out_dtype}" if t.dtype != e.out_dtype else t.dtype
                                     for (_, t), e in zip(tensors, entries))
        if not args.quiet or args.dry_run:
            log(f"{len(paths)} input file(s), {len(entries)} tensors ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}), "
                f"{human(total)} -> {n} file(s) in {args.out}")
            if dropped:
                log(f"dropping {len(dropped)} rotary_emb.inv_freq buffer(s) (beaconrt computes RoPE itself)")
        if args.dry_run:
            for name, shard in zip(names, shards):
                print(f"{name}: {sum(e.nbytes for e in shard)} bytes")
                for e in shard:
                    print(f"  {e.name} {e.t.dtype}->{e.out_dtype} {e.shape}"
                          f"{'' if is_contiguous(e.t.size, e.t.stride) else ' (view, made contiguous)'}")
            return 0

        os.makedirs(args.out, exist_ok=True)
        existing = [f for f in os.listdir(args.out) if OUT_WEIGHTS.match(f)]
        if existing and not args.force:
            raise ConvertError(f"{args.out} already has safetensors weights ({', '.join(sorted(existing))}); "
                               "use --force to replace them")
        progress = Progress(total, args.quiet)
        for i, (name, shard) in enumerate(zip(names, shards)):
            if not args.quiet:
                log(f"writing {name} ({len(shard)} tensors, {human(sum(e.nbytes for e in shard))})")
            write_safetensors(os.path.join(args.out, name), shard, chunk, progress)
        index_path = os.path.join(args.out, "model.safetensors.index.json")
        if n > 1:
            wm = {e.name: names[i] for i, shard in enumerate(shards) for e in shard}
            idx = {"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}
            with open(index_path + ".partial", "w", encoding="utf-8") as f:
                json.dump(idx, f, indent=2)
                f.write("\n")
            os.replace(index_path + ".partial", index_path)
        for f in existing:  # stale weights of an earlier conversion (--force)
            if f not in names and not (n > 1 and f == "model.safetensors.index.json"):
                os.unlink(os.path.join(args.out, f))
    finally:
        for a in archives:
            a.close()

    if src_dir and os.path.realpath(src_dir) != os.path.realpath(args.out):
        for fn in sorted(os.listdir(src_dir)):
            p = os.path.join(src_dir, fn)
            if fn.startswith(".") or not os.path.isfile(p) or WEIGHT_FILE.search(fn):
                continue
            dst = os.path.join(args.out, fn)
            if os.path.exists(dst) and not args.force:
                if not args.quiet:
                    log(f"kept the existing {dst}")
                continue
            shutil.copyfile(p, dst)
            if not args.quiet:
                log(f"copied {fn}")
    if not args.quiet:
        log(f"done: {human(total)} in {n} file(s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConvertError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
