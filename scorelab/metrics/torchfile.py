"""Tensors from a file of torch.save, read with numpy alone (torch need not be installed).

torch writes two formats, and both are read:

- zip (the default since torch 1.6): `<stem>/data.pkl` is a pickle whose storages are
  persistent ids ('storage', type, key, location, numel); each storage's raw bytes are the
  member `<stem>/data/<key>`.
- legacy (before 1.6, or `_use_new_zipfile_serialization=False`): pickles of a magic number,
  the protocol version and system information, then the object pickled the same way (its
  storage ids carry a sixth field, a view of a root storage or None), then the list of storage
  keys, then each storage as an int64 element count followed by its raw bytes, in that order.

In both, a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
Only the names a state dict uses are resolved: the unpickler refuses any other global, so a
file cannot run code on loading.
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
DTYPES = {"DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
          "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
          "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class Storage:
    """A storage's dtype and element count, until its bytes are read."""

    def __init__(self, dtype, numel: int):
        self.dtype, self.numel, self.array = np.dtype(dtype), numel, None


class Tensor:
    """A tensor as pickled: its storage, offset, size and stride; `array()` once the storage's
    bytes are read (the legacy format stores them after the pickle)."""

    def __init__(self, storage: Storage, offset: int, size, stride, *_):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self) -> np.ndarray:
        data, item = self.storage.array, self.storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], tuple(self.size),
                                               tuple(s * item for s in self.stride))
        return np.array(view)


def _arrays(obj):
    """`obj` with every `Tensor` in its dicts, lists and tuples turned into a numpy array."""
    if isinstance(obj, Tensor):
        return obj.array()
    if isinstance(obj, dict):
        out = type(obj)((k, _arrays(v)) for k, v in obj.items())
        if hasattr(obj, "__dict__"):  # an OrderedDict state dict's _metadata
            out.__dict__.update(obj.__dict__)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_arrays(v) for v in obj)
    return obj


def _rebuild_parameter(data, requires_grad, backward_hooks, *_):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return Tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in DTYPES:
            return DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a tensor state dict")

    def persistent_load(self, saved_id):
        kind, dtype, key, _location, numel, *view = saved_id
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        storage = self.storages.setdefault(key, Storage(dtype, numel))
        if view and view[0] is not None:
            raise pickle.UnpicklingError("storage views (torch < 0.4 files) are not supported")
        return storage


def load(path) -> dict:
    """The object saved in `path` (a state dict: names -> numpy arrays)."""
    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            return _load_zip(f, path)
        f.seek(0)
        return _load_legacy(f, path)


def _load_zip(f, path):
    with zipfile.ZipFile(f) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{path}: a zip file without one data.pkl: not a torch.save file")
        stem = pkl[0][:-len("data.pkl")]
        storages = {}
        obj = _Unpickler(io.BytesIO(archive.read(pkl[0])), storages).load()
        order = archive.read(stem + "byteorder").decode() if stem + "byteorder" in names \
            else "little"
        for key, storage in storages.items():
            raw = archive.read(f"{stem}data/{key}")
            storage.array = _from_bytes(raw, storage, order, path, key)
    return _arrays(obj)


def _load_legacy(f, path):
    try:
        magic = pickle.load(f)
    except Exception:
        magic = None
    if magic != MAGIC_NUMBER:
        raise ValueError(f"{path}: not a torch.save file (neither a zip archive nor the legacy "
                         f"format's magic number)")
    if pickle.load(f) != PROTOCOL_VERSION:
        raise ValueError(f"{path}: unknown legacy torch protocol version")
    sys_info = pickle.load(f)
    order = "little" if sys_info.get("little_endian", True) else "big"
    storages = {}
    obj = _Unpickler(f, storages).load()
    for key in pickle.load(f):
        storage = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        raw = f.read(numel * storage.dtype.itemsize)
        storage.array = _from_bytes(raw, storage, order, path, key)
    return _arrays(obj)


def _from_bytes(raw: bytes, storage: Storage, order: str, path, key) -> np.ndarray:
    if len(raw) != storage.numel * storage.dtype.itemsize:
        raise ValueError(f"{path}: storage {key} holds {len(raw)} bytes, expected "
                         f"{storage.numel * storage.dtype.itemsize}: a truncated file")
    return np.frombuffer(raw, storage.dtype.newbyteorder("<" if order == "little" else ">"))
