"""Reading and writing weight files without torch.

:func:`read_checkpoint` turns a weights file into a flat ``{key: numpy array}``:

* PyTorch ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` files written by ``torch.save``, in the zip
  format (the default since torch 1.6) and in the legacy non-zip format
  (``_use_new_zipfile_serialization=False``). The pickle inside is read by an *allow-listed*
  unpickler: it only knows how to rebuild tensors, storages, dtypes and ``OrderedDict``; any
  other global (``os.system``, ``builtins.eval``, a ``torch.nn.Module`` class, ...) raises
  :class:`UnsafeCheckpointError` before anything is called, so a malicious file cannot run code.
* ``.safetensors`` files (via ``safetensors.numpy``; bfloat16 comes back as ``ml_dtypes.bfloat16``).
* ``.npz`` archives (``np.load(..., allow_pickle=False)``).

The format is recognized from the file's content, so the extension does not matter.

Training checkpoints are unwrapped: a top-level ``{"state_dict": {...}, "epoch": 3}`` (also
``model_state_dict``, ``model``, ``params``, ...) yields the inner state dict, nested dicts of
tensors are flattened with ``.`` joins, non-tensor leaves are dropped and a ``module.`` prefix
shared by every key (``nn.DataParallel``) is removed.

:func:`save_params` / :func:`load_params` write and read lucidax's own layout: the parameter
pytree flattened with ``/``-joined keys, as ``.safetensors`` or ``.npz``.
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from .._files import atomic_write
from ._base import flatten_params, unflatten_params

__all__ = ["UnsafeCheckpointError", "load_params", "read_checkpoint", "save_params"]

SUPPORTED_FORMATS = (
    "PyTorch checkpoint (.pth/.pt/.bin/.ckpt from torch.save, zip or legacy format)",
    ".safetensors",
    ".npz",
)
_TORCH_EXTS = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle")
_SAVE_EXTS = (".safetensors", ".npz")

# Top-level keys of training checkpoints that hold the actual state dict, by priority.
_WRAPPER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "params",
    "module",
    "net",
    "network",
    "weights",
)

_MAX_NODES = 1_000_000  # entries visited when flattening a checkpoint (pickles can nest deep)
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_PROTOCOL = 1001


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A pickle asks for a global outside the allow-list; nothing from it was executed.

    Raised by :func:`read_checkpoint` (so by :func:`load` and :func:`load_params`) for a
    PyTorch checkpoint whose pickle names anything but tensors, storages, dtypes and
    ``OrderedDict``.

    Args:
      message: the error message.
      global_name: the refused ``"module.name"`` (kept as the ``global_name`` attribute).

    Example:
      >>> import os, pickle
      >>> import lucidax.models as lm
      >>> with open("evil.pth", "wb") as f:
      ...     pickle.dump(os.getcwd, f)  # a pickle that would call os.getcwd
      >>> lm.read_checkpoint("evil.pth")
      Traceback (most recent call last):
      ...
      lucidax.models.io.UnsafeCheckpointError: ...
    """

    def __init__(self, message: str, global_name: str | None = None):
        super().__init__(message)
        self.global_name = global_name


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------

_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint64": np.dtype(np.uint64),
    "uint32": np.dtype(np.uint32),
    "uint16": np.dtype(np.uint16),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
}
# torch's aliases (``torch.float`` is ``torch.float32``; dtypes pickle by their canonical name,
# but aliases cost nothing).
_DTYPE_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}


class _Placeholder:
    """Stands in for a torch global (a dtype, a storage type, ``torch.Tensor``) in a pickle.

    Not callable and immutable: a pickle can only pass it around as an argument.
    """

    __slots__ = ("kind", "name", "dtype")

    def __init__(self, kind: str, name: str, dtype: np.dtype | None = None):
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{self!r} is read-only")

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"pickle tried to modify {self!r}")

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}>"


_TENSOR_TYPES = {
    ("torch", "Tensor"): _Placeholder("tensor type", "torch.Tensor"),
    ("torch._tensor", "Tensor"): _Placeholder("tensor type", "torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _Placeholder("tensor type", "torch.nn.Parameter"),
    ("torch.nn", "Parameter"): _Placeholder("tensor type", "torch.nn.Parameter"),
}


# ---------------------------------------------------------------------------------------------
# storages and tensors as plain data (materialized into numpy after unpickling)
# ---------------------------------------------------------------------------------------------


class _Storage:
    """One serialized torch storage: ``numel`` elements of ``dtype``; bytes filled in later."""

    __slots__ = ("key", "dtype", "numel", "data", "base", "byte_offset")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None  # 1-d uint8
        self.base: _Storage | None = None  # legacy storage views
        self.byte_offset = 0

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError("pickle tried to modify a storage")

    def raw(self) -> np.ndarray:
        if self.base is not None:
            nbytes = self.numel * self.dtype.itemsize
            raw = self.base.raw()[self.byte_offset : self.byte_offset + nbytes]
            if raw.size != nbytes:
                raise ValueError(f"storage view {self.key!r} runs past its base storage")
            return raw
        if self.data is None:
            raise ValueError(f"storage {self.key!r} has no data in the file")
        return self.data


class _TensorRef:
    """What the allow-listed ``_rebuild_tensor*`` functions return: a view into a storage."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype", "neg", "conj")

    def __init__(self, storage, offset, size, stride, dtype=None, metadata=None):
        if not isinstance(storage, _Storage):
            raise ValueError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
        self.storage = storage
        self.offset = _as_int(offset, "storage offset")
        self.size = _as_int_tuple(size, "size")
        self.stride = _as_int_tuple(stride, "stride")
        if len(self.size) != len(self.stride):
            raise ValueError(f"tensor size {self.size} and stride {self.stride} differ in length")
        if dtype is None:
            self.dtype = storage.dtype
        elif isinstance(dtype, _Placeholder) and dtype.kind == "dtype":
            self.dtype = dtype.dtype
        else:
            raise ValueError(f"expected a torch dtype, got {dtype!r}")
        meta = metadata if isinstance(metadata, Mapping) else {}
        self.neg = bool(meta.get("neg", False))
        self.conj = bool(meta.get("conj", False))

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError("pickle tried to modify a tensor")

    def materialize(self, byteorder: str) -> np.ndarray:
        dtype = self.dtype
        raw = self.storage.raw()
        n_avail = raw.size // dtype.itemsize
        buf = raw[: n_avail * dtype.itemsize].view(dtype)
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise ValueError(
                f"negative size/stride/offset in tensor (size {self.size}, stride "
                f"{self.stride}, offset {self.offset})"
            )
        numel = math.prod(self.size)
        if numel == 0:
            return np.zeros(self.size, dtype=dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= n_avail:
            raise ValueError(
                f"tensor (size {self.size}, stride {self.stride}, offset {self.offset}) reads "
                f"past the end of storage {self.storage.key!r} ({n_avail} elements)"
            )
        if numel > max(n_avail, 1) and numel > 1 << 28:
            raise ValueError(f"tensor of {numel} elements expanded from {n_avail}: refusing")
        view = np.lib.stride_tricks.as_strided(
            buf[self.offset :],
            shape=self.size,
            strides=tuple(s * dtype.itemsize for s in self.stride),
            writeable=False,
        )
        out = np.array(view, copy=True)
        if byteorder != sys.byteorder and dtype.itemsize > 1:
            out = _byteswap(out)
        if self.conj:
            out = np.conj(out)
        if self.neg:
            out = -out
        return out


def _byteswap(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "biufc":
        return arr.byteswap()
    # ml_dtypes (bfloat16, float8): swap the bytes of the same-size unsigned int view.
    as_uint = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
    return as_uint.byteswap().view(arr.dtype)


def _as_int(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"tensor {what} must be an int, got {type(x).__name__}")
    return int(x)


def _as_int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)):
        raise ValueError(f"tensor {what} must be a tuple, got {type(x).__name__}")
    return tuple(_as_int(v, what) for v in x)


# The allow-listed reconstructors (our own; torch's are never imported).


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _TensorRef(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    return _TensorRef(storage, storage_offset, size, stride, dtype=dtype, metadata=metadata)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None):
    if not isinstance(data, _TensorRef):
        raise ValueError(f"parameter rebuilt from {type(data).__name__}, not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data)


_REBUILDERS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


def _rebuild_from_type_v2(func, new_type, args, state):
    """Tensors carrying Python attributes: ``func(*args)``, type and state ignored."""
    if func not in _REBUILDERS.values():
        raise UnsafeCheckpointError(f"_rebuild_from_type_v2 called with {func!r}")
    if not (isinstance(new_type, _Placeholder) and new_type.kind == "tensor type"):
        raise UnsafeCheckpointError(f"_rebuild_from_type_v2 asked for type {new_type!r}")
    if not isinstance(args, tuple):
        raise ValueError("_rebuild_from_type_v2 arguments must be a tuple")
    return func(*args)


def _torch_size(dims=()):
    return _as_int_tuple(tuple(dims), "size")


def _lookup_global(module: str, name: str) -> Any:
    """The allow-list: returns our stand-in for ``module.name`` or None."""
    if (module, name) in _REBUILDERS:
        return _REBUILDERS[(module, name)]
    if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
        return _rebuild_from_type_v2
    if (module, name) == ("collections", "OrderedDict"):
        return OrderedDict
    if (module, name) == ("torch", "Size"):
        return _torch_size
    if (module, name) in _TENSOR_TYPES:
        return _TENSOR_TYPES[(module, name)]
    if module in ("torch", "torch.storage", "torch.cuda") and name in _STORAGE_DTYPES:
        return _Placeholder("storage type", f"{module}.{name}", _DTYPES[_STORAGE_DTYPES[name]])
    if module == "torch":
        canonical = _DTYPE_ALIASES.get(name, name)
        if canonical in _DTYPES:
            return _Placeholder("dtype", f"torch.{canonical}", _DTYPES[canonical])
    return None


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` only knows tensor reconstruction (see module docstring)."""

    def __init__(self, file, storage_loader=None):
        super().__init__(file, encoding="utf-8")
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str) -> Any:
        found = _lookup_global(module, name)
        if found is None:
            hint = ""
            if module.startswith("torch.nn") or module.startswith("__torch__"):
                hint = (
                    " The file holds a pickled torch.nn.Module or TorchScript code rather than "
                    "a state dict: save it with torch.save(model.state_dict(), path)."
                )
            raise UnsafeCheckpointError(
                f"refused to load global '{module}.{name}': it is not one of the tensor "
                "reconstructors lucidax allows, and unpickling it could execute arbitrary "
                f"code. Nothing from the file was executed.{hint}",
                global_name=f"{module}.{name}",
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_loader is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in plain pickle")
        return self._storage_loader(pid)


def _storage_from_pid(pid: Any, storages: dict[str, _Storage]) -> _Storage:
    """``('storage', storage_type, key, location, numel[, view_metadata])`` -> storage."""
    if not isinstance(pid, tuple) or len(pid) < 5:
        raise ValueError(f"unsupported persistent id {pid!r}")
    typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if typename != "storage":
        raise ValueError(f"unsupported persistent id type {typename!r}")
    storage_type, key, _location, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    if not (isinstance(storage_type, _Placeholder) and storage_type.kind == "storage type"):
        raise ValueError(f"expected a storage type in persistent id, got {storage_type!r}")
    key = str(key)
    numel = _as_int(numel, "storage size")
    root = storages.get(key)
    if root is None:
        root = storages[key] = _Storage(key, storage_type.dtype, numel)
    if view is None:
        return root
    view_key, offset, view_size = view
    view_key = str(view_key)
    if view_key not in storages:
        sub = _Storage(view_key, root.dtype, _as_int(view_size, "view size"))
        sub.base = root
        sub.byte_offset = _as_int(offset, "view offset") * root.dtype.itemsize
        storages[view_key] = sub
    return storages[view_key]


# ---------------------------------------------------------------------------------------------
# PyTorch files
# ---------------------------------------------------------------------------------------------


def _read_torch_zip(path: str, zf: zipfile.ZipFile) -> tuple[Any, str]:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if not pkl:
        raise ValueError(f"{path}: zip archive without data.pkl; not a torch.save checkpoint")
    pkl_name = min(pkl, key=len)
    prefix = pkl_name[: -len("data.pkl")]
    if f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names):
        raise ValueError(
            f"{path} is a TorchScript archive (torch.jit.save), which lucidax cannot read. "
            "Save the weights with torch.save(model.state_dict(), path) instead."
        )
    byteorder = "little"
    if f"{prefix}byteorder" in names:
        byteorder = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder record {byteorder!r}")
    storages: dict[str, _Storage] = {}
    with zf.open(pkl_name) as f:
        obj = _SafeUnpickler(f, lambda pid: _storage_from_pid(pid, storages)).load()
    for key, storage in storages.items():
        if storage.base is not None:
            continue
        record = f"{prefix}data/{key}"
        if record not in names:
            raise ValueError(f"{path}: storage record {record!r} is missing")
        nbytes = storage.numel * storage.dtype.itemsize
        have = zf.getinfo(record).file_size
        if have < nbytes:
            raise ValueError(
                f"{path}: storage {key!r} has {have} bytes, expected {nbytes} (truncated?)"
            )
        if have == nbytes:
            data = zf.read(record)  # checks the CRC
        else:
            with zf.open(record) as f:
                data = f.read(nbytes)
        storage.data = np.frombuffer(data, dtype=np.uint8, count=nbytes)
    return obj, byteorder


def _read_torch_legacy(path: str) -> tuple[Any, str]:
    storages: dict[str, _Storage] = {}
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        magic = _SafeUnpickler(f).load()
        if magic != _TORCH_MAGIC:
            raise ValueError(
                f"{path} is a pickle but not a PyTorch checkpoint (no torch.save magic number)"
            )
        protocol = _SafeUnpickler(f).load()
        if protocol != _TORCH_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy torch protocol version {protocol!r}")
        _SafeUnpickler(f).load()  # sys_info; storages are always little-endian on disk
        obj = _SafeUnpickler(f, lambda pid: _storage_from_pid(pid, storages)).load()
        keys = _SafeUnpickler(f).load()
        if not isinstance(keys, list):
            raise ValueError(f"{path}: malformed storage key list")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise ValueError(f"{path}: data for unknown storage {key!r}")
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{path}: file ends before storage {key!r} (truncated?)")
            numel = int.from_bytes(head, "little", signed=True)
            nbytes = numel * storage.dtype.itemsize
            if numel < 0 or numel < storage.numel:
                raise ValueError(f"{path}: storage {key!r} has a bad size {numel}")
            if nbytes > file_size - f.tell():
                raise ValueError(f"{path}: file ends inside storage {key!r} (truncated?)")
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"{path}: file ends inside storage {key!r} (truncated?)")
            storage.data = np.frombuffer(data, dtype=np.uint8)
    return obj, "little"


def _has_tensor(obj: Any) -> bool:
    stack, seen = [obj], set()
    while stack:
        node = stack.pop()
        if isinstance(node, _TensorRef):
            return True
        if id(node) in seen or len(seen) > _MAX_NODES:
            continue
        seen.add(id(node))
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return False


def _unwrap(obj: Any) -> Any:
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _has_tensor(inner):
                obj = inner
                break
        else:
            break
    return obj


def _collect(obj: Any) -> dict[str, _TensorRef]:
    out: dict[str, _TensorRef] = {}
    active: set[int] = set()  # containers on the current path (a pickle can build cycles)
    visits = [0]

    def rec(prefix: str, node: Any) -> None:
        visits[0] += 1
        if visits[0] > _MAX_NODES:
            raise ValueError(f"checkpoint object has more than {_MAX_NODES} nested entries")
        if isinstance(node, _TensorRef):
            out[prefix] = node
            return
        if isinstance(node, Mapping):
            items = list(node.items())
        elif isinstance(node, (list, tuple)):
            items = list(enumerate(node))
        else:
            return  # non-tensor leaf: dropped
        if id(node) in active or len(active) > 64:
            return
        active.add(id(node))
        for k, v in items:
            k = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            rec(f"{prefix}.{k}" if prefix else k, v)
        active.discard(id(node))

    rec("", obj)
    return out


def _read_torch(path: str, kind: str) -> dict[str, np.ndarray]:
    try:
        if kind == "torch-zip":
            with zipfile.ZipFile(path) as zf:
                obj, byteorder = _read_torch_zip(path, zf)
        else:
            obj, byteorder = _read_torch_legacy(path)
        refs = _collect(_unwrap(obj))
        if not refs:
            what = type(obj).__name__
            if isinstance(obj, Mapping):
                what += " with keys " + ", ".join(repr(str(k)) for k in list(obj)[:20])
            raise ValueError(f"{path} holds no tensors (top-level object: {what})")
        if "" in refs:
            refs = {"tensor" if k == "" else k: v for k, v in refs.items()}
        return {k: ref.materialize(byteorder) for k, ref in refs.items()}
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}", global_name=e.global_name) from None
    except ValueError as e:
        if path in str(e):
            raise
        raise ValueError(f"Could not read PyTorch checkpoint {path}: {e}") from e
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise ValueError(
            f"Could not read PyTorch checkpoint {path}: the file is truncated or corrupt "
            f"({type(e).__name__}: {e})"
        ) from e
    except (TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as e:
        raise ValueError(
            f"Could not read PyTorch checkpoint {path}: malformed pickle ({type(e).__name__}: {e})"
        ) from e


# ---------------------------------------------------------------------------------------------
# safetensors / npz
# ---------------------------------------------------------------------------------------------


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # SafetensorError and friends
        raise ValueError(
            f"Could not read safetensors file {path}: {type(e).__name__}: {e} "
            "(truncated or corrupt?)"
        ) from e


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError(f"{path} is a single .npy array, not an .npz archive")
            return {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise ValueError(
                f"{path} contains object arrays, which need pickle; refusing to load them"
            ) from e
        raise ValueError(f"Could not read .npz file {path}: {e}") from e
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(
            f"Could not read .npz file {path}: truncated or corrupt ({type(e).__name__}: {e})"
        ) from e


# ---------------------------------------------------------------------------------------------
# format detection and the public readers
# ---------------------------------------------------------------------------------------------


def _sniff(path: str) -> str | None:
    """The file's format from its content: torch-zip, torch-legacy, safetensors, npz, or None."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return "zip-corrupt"
        if any(n.endswith("data.pkl") and n.count("/") <= 1 for n in names):
            return "torch-zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch-legacy"
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _read_flat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Checkpoint path is a directory, not a file: {path}")
    kind = _sniff(path)
    ext = os.path.splitext(path)[1].lower()
    if kind in ("torch-zip", "torch-legacy"):
        return _read_torch(path, kind)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "npz":
        return _read_npz(path)
    if kind == "tar":
        raise ValueError(
            f"{path} uses PyTorch's pre-1.0 tar format, which lucidax does not read; re-save it "
            "with a recent torch: torch.save(torch.load(path), new_path)"
        )
    if kind == "zip-corrupt":
        raise ValueError(f"Could not read {path}: zip archive is truncated or corrupt")
    formats = "; ".join(SUPPORTED_FORMATS)
    if ext in _TORCH_EXTS or ext in _SAVE_EXTS:
        raise ValueError(
            f"Could not read {path}: its content is not a valid {ext} file (truncated or "
            f"corrupt?). Supported formats: {formats}"
        )
    raise ValueError(f"Unrecognized checkpoint format for {path}. Supported formats: {formats}")


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weights file into a flat ``{key: numpy array}`` without importing torch.

    Args:
      path: a PyTorch checkpoint (``torch.save``, zip or legacy format), a ``.safetensors``
        file or an ``.npz`` archive; the format is detected from the content.

    Returns:
      Flat dict of arrays (copies, in the stored dtype; bfloat16 as ``ml_dtypes.bfloat16``).
      PyTorch checkpoints are unwrapped (``{"state_dict": ...}`` and similar), nested dicts
      joined with ``.``, non-tensor entries dropped; a ``module.`` prefix common to every key
      is removed.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      UnsafeCheckpointError: the pickle references a global outside the allow-list (nothing
        from it is executed).
      ValueError: unknown format (the message lists the supported ones), a truncated or
        corrupt file, or a file without tensors.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> np.savez("w.npz", **{"conv1.weight": np.zeros((8, 3, 3, 3), np.float32)})
      >>> flat = lm.read_checkpoint("w.npz")
      >>> {key: (a.shape, str(a.dtype)) for key, a in flat.items()}
      {'conv1.weight': ((8, 3, 3, 3), 'float32')}
    """
    flat = _read_flat(path)
    prefix = "module."
    if flat and all(k.startswith(prefix) for k in flat):
        flat = {k[len(prefix) :]: v for k, v in flat.items()}
    return flat


def _check_save_ext(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _SAVE_EXTS:
        raise ValueError(
            f"Cannot save parameters to {path!r}: unsupported extension {ext or '(none)'!r}. "
            f"Valid extensions: {', '.join(_SAVE_EXTS)}"
        )
    return ext


def _write_npz(flat: Mapping[str, np.ndarray], f) -> None:
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in flat.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def save_params(params: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a parameter pytree (nested dict of arrays) to ``.safetensors`` or ``.npz``.

    Keys are the ``/``-joined paths of the pytree (``"conv1/kernel"``). The file is written to
    a temporary file in the same folder and moved into place, so a crash never leaves a
    half-written file at ``path``. ``.npz`` has no bfloat16/float8: such arrays are stored as
    float32 there (use ``.safetensors`` to keep them).

    Args:
      params: the parameter pytree (e.g. ``model.params``): nested dicts of arrays.
      path: the file to write; its extension (``.safetensors`` or ``.npz``) picks the format.

    Raises:
      ValueError: another extension.
      TypeError: ``params`` is not a mapping, or holds a non-numeric leaf.

    Example:
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> lm.save_params(model.params, "starter.safetensors")
      >>> lm.load("starter", weights="starter.safetensors").weights_source
      'starter.safetensors sha256:...'
    """
    path = os.fspath(path)
    ext = _check_save_ext(path)
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a nested dict of arrays, got {type(params).__name__}")
    flat = {}
    for key, value in flatten_params(params).items():
        arr = np.asarray(value)
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
        if arr.dtype.kind == "O":
            raise TypeError(f"parameter {key!r} is not a numeric array (dtype object)")
        if ext == ".npz" and arr.dtype.kind == "V":
            arr = arr.astype(np.float32)
        flat[key] = arr
    if ext == ".safetensors":
        from safetensors.numpy import save as _st_save

        atomic_write(path, _st_save(flat))
    else:
        atomic_write(path, lambda f: _write_npz(flat, f))


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """Inverse of :func:`save_params`: a nested dict of numpy arrays (keys split on ``/``).

    Reads every format :func:`read_checkpoint` does; keys are kept exactly as stored.

    Args:
      path: a ``.safetensors`` / ``.npz`` file written by :func:`save_params` (or any file
        :func:`read_checkpoint` reads).

    Returns:
      The parameter pytree: nested dicts of numpy arrays.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: an unrecognized or corrupt file.

    Example:
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> lm.save_params(model.params, "starter.npz")
      >>> params = lm.load_params("starter.npz")
      >>> params["conv1"]["kernel"].shape
      (3, 3, 3, 24)
      >>> model = model.with_params(params)
    """
    return unflatten_params(_read_flat(path))
