"""The on-disk caches of the probes package (shared by extraction and TCAV's gradients):
identities (hashes of parameters, arrays and JSON keys), file names, and ``.npy`` files
streamed row by row and renamed into place when complete."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from .._files import atomic_write

_HEADER_BYTES = 128  # fixed-size .npy header, rewritten with the final row count

def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
         "shape": tuple(int(s) for s in shape)}
    body = repr(d).encode("latin1")
    room = _HEADER_BYTES - 10
    if len(body) + 1 > room:  # pragma: no cover - shapes are [N, D]
        raise ValueError(f"shape {shape} too large for the fixed .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + body + b" " * (room - len(body) - 1) \
        + b"\n"


class _NpyWriter:
    """Appends rows to a ``.npy`` file; the header gets the final row count on close."""

    def __init__(self, path: str, dtype: np.dtype, ncols: int):
        self.path, self.dtype, self.ncols, self.rows = path, np.dtype(dtype), ncols, 0
        self._f = open(path, "wb")  # noqa: SIM115 - closed in finish()/abort()
        self._f.write(_npy_header(self.dtype, (0, ncols)))

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.ndim != 2 or block.shape[1] != self.ncols:
            raise ValueError(f"expected rows of {self.ncols} values; got {block.shape}")
        self._f.write(block.tobytes())
        self.rows += block.shape[0]

    def finish(self) -> None:
        self._f.seek(0)
        self._f.write(_npy_header(self.dtype, (self.rows, self.ncols)))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def abort(self) -> None:
        self._f.close()
        if os.path.exists(self.path):
            os.remove(self.path)


def _open_npy(path: str) -> np.ndarray:
    arr = np.load(path, mmap_mode="r")
    return arr if arr.shape[0] else np.load(path)  # numpy can't memory-map 0 rows


def _atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))

def _array_key(arr: np.ndarray) -> str:
    h = hashlib.sha256(f"{arr.shape}{arr.dtype.str}".encode())
    step = max(1, (64 << 20) // max(1, arr[:1].nbytes))
    for i in range(0, len(arr), step):
        h.update(memoryview(np.ascontiguousarray(arr[i : i + step])).cast("B"))
    return h.hexdigest()

def _params_hash(params: Any) -> str:
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in leaves:
        a = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


def _digest(obj: Mapping[str, Any]) -> str:
    """sha256 hex digest of ``obj`` as sorted JSON (cache file names; not a PRNG key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

def _valid_entry(npy: str, meta: str, rows: int) -> bool:
    if not (os.path.isfile(npy) and os.path.isfile(meta)):
        return False
    try:
        shape = np.load(npy, mmap_mode="r").shape if rows else np.load(npy).shape
    except (OSError, ValueError):
        return False
    return len(shape) == 2 and shape[0] == rows
