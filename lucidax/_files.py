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
    "IMAGE_EXTENSIONS", "atomic_write", "image_grid", "json_default", "load_image", "save_json",
    "save_plot", "save_png", "to_uint8",
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


# ---------------------------------------------------------------------------------------------
# reading images
# ---------------------------------------------------------------------------------------------
#: File extensions read as images (folders of images, CLI arguments).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _to_unit_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.integer):
        top = 255.0 if arr.max(initial=0) <= 255 else 65535.0
        return np.clip(arr.astype(np.float32) / top, 0.0, 1.0)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise ValueError("image has NaN or infinite pixel values")
        return np.clip(out / 255.0 if out.max(initial=0.0) > 1.0 else out, 0.0, 1.0)
    raise ValueError(f"unsupported pixel type {arr.dtype}")


def _match_channels(img: np.ndarray, channels: int) -> np.ndarray:
    ch = img.shape[-1]
    if ch == channels:
        return img
    if ch in (2, 4):  # drop alpha (LA -> L, RGBA -> RGB)
        img, ch = img[..., :-1], ch - 1
        if ch == channels:
            return img
    if ch == 1 and channels == 3:
        return np.repeat(img, 3, axis=-1)
    if ch == 3 and channels == 1:
        return (img @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]
    raise ValueError(f"image has {img.shape[-1]} channel(s); the model takes {channels}")


def _resize_np(img: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (antialiased bilinear), then center crop to size x size."""
    from PIL import Image

    h, w, c = img.shape
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        chans = [
            np.asarray(Image.fromarray(img[..., i], mode="F").resize((nw, nh), Image.BILINEAR))
            for i in range(c)
        ]
        img = np.stack(chans, axis=-1)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top : top + size, left : left + size]
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def load_image(path: str | os.PathLike, *, size: int, channels: int = 3) -> np.ndarray:
    """Read an image file as float32 ``[size, size, channels]`` in [0, 1].

    Raises ValueError/OSError for files that cannot be decoded or converted.
    """
    import imageio.v3 as iio

    arr = np.asarray(iio.imread(os.fspath(path), plugin="pillow"))
    if arr.ndim == 4:  # animated GIF / multi-page TIFF: first frame
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"not a 2-D image (decoded shape {arr.shape})")
    img = _match_channels(_to_unit_float(arr), channels)
    return _resize_np(img, size)
