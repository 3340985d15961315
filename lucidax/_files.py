"""Atomic file writes and image grids shared by every part of lucidax (private)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "atomic_write", "image_grid", "json_default", "save_json", "save_plot", "save_png", "to_uint8",
]


def atomic_write(
    path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None], *, tag: str | None = None
) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    The content goes to a temporary file in the same folder, is flushed and fsync'ed, and
    replaces ``path`` with ``os.replace``: readers (and a later resume) never see a partial file.
    With ``tag`` the temporary file is named ``.<name>.<tag>.<random>.tmp``, so a process can
    find (and remove) what a killed run of itself left behind without touching the temporary
    files of other processes writing to the same folder.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = f".{os.path.basename(path)}.{tag}." if tag is not None else "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_json(path: str | os.PathLike, obj: Any, *, allow_nan: bool = True) -> None:
    """Atomically write ``obj`` as indented JSON (numpy scalars/arrays and paths allowed)."""
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=allow_nan, default=json_default)
    atomic_write(path, (text + "\n").encode())


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays and ``os.PathLike``."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def to_uint8(image: Any) -> np.ndarray:
    """Float image in [0, 1] (HW, HWC with C in {1, 3, 4}) -> uint8; other C -> first 3 channels."""
    arr = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or inf; refusing to write it")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        arr = arr[..., :3] if arr.shape[-1] > 3 else np.concatenate(
            [arr, np.zeros(arr.shape[:2] + (3 - arr.shape[-1],), arr.dtype)], axis=-1)
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | os.PathLike, image: Any) -> None:
    """Atomically write a float [0, 1] (or uint8) image as PNG with imageio."""
    import imageio.v3 as iio

    arr = image if np.asarray(image).dtype == np.uint8 else to_uint8(image)
    buf = io.BytesIO()
    iio.imwrite(buf, np.asarray(arr), extension=".png")
    atomic_write(path, buf.getvalue())


def image_grid(
    images: Sequence[Any] | np.ndarray, *, cols: int | None = None, pad: int = 2,
    fill: float = 1.0,
) -> np.ndarray:
    """Tile same-sized float images [N, H, W, C] into one image (row-major), ``pad`` px apart."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"image_grid needs a non-empty [N, H, W, C] stack, got {arr.shape}")
    n, h, w, c = arr.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c), fill, np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y : y + h, x : x + w] = arr[i]
    return out


def save_plot(path: str | os.PathLike, fig: Any, **savefig_kw: Any) -> None:
    """Write a matplotlib figure atomically, in the format its extension names (png, svg,
    pdf; png when there is none)."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **savefig_kw)
    atomic_write(path, buf.getvalue())
