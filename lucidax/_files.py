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
    "IMAGE_EXTENSIONS", "SkippedFilesWarning", "UnreadableImageError", "atomic_write",
    "check_array_file", "check_image", "check_int", "error_reason", "image_grid", "json_default",
    "load_array", "load_image", "match_channels", "none_left", "png_bytes", "prepare_out_dir",
    "read_images", "readable_images", "resize_np", "save_json", "save_plot", "save_png",
    "to_uint8", "warn_skipped",
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


def to_uint8(image: Any, *, nan: float | None = None, rgb: bool = False) -> np.ndarray:
    """Float image(s) in [0, 1] -> uint8, the one conversion of lucidax.

    ``image`` is ``HW`` or ``[..., H, W, C]`` (channels last). Values are clipped to [0, 1]
    and rounded. Channels: with ``rgb=False`` C in {3, 4} is kept, C = 1 becomes a
    grayscale ``HW`` image, C = 2 gets a zero third channel and C > 4 keeps the first 3;
    with ``rgb=True`` the result always has 3 channels (grayscale repeated, extra channels
    such as alpha dropped).

    NaN / inf policy: by default a non-finite pixel is an error (ValueError): a file that
    a user asked for is never silently filled. ``nan=v`` replaces non-finite pixels by ``v``
    instead: the gallery passes 0.5, because a unit whose render diverged is recorded as
    ``failed`` in its manifest and still shown, as a grey tile, so every page keeps its
    layout.
    """
    arr = np.asarray(image, dtype=np.float32)
    if nan is None:
        if not np.all(np.isfinite(arr)):
            raise ValueError("image contains NaN or inf; refusing to write it")
    else:
        arr = np.where(np.isfinite(arr), arr, np.float32(nan))
    if arr.ndim >= 3:
        c = arr.shape[-1]
        if c == 1:
            arr = np.repeat(arr, 3, axis=-1) if rgb else arr[..., 0]
        elif c == 2:
            arr = np.concatenate([arr, np.zeros_like(arr[..., :1])], axis=-1)
        elif c > 3 and (rgb or c != 4):
            arr = arr[..., :3]
    elif rgb:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(image: Any) -> bytes:
    """PNG file content of a uint8 image (a float [0, 1] one goes through :func:`to_uint8`)."""
    import imageio.v3 as iio

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = to_uint8(arr)
    buf = io.BytesIO()
    iio.imwrite(buf, arr, extension=".png")
    return buf.getvalue()


def save_png(path: str | os.PathLike, image: Any) -> None:
    """Atomically write a float [0, 1] (or uint8) image as PNG with imageio."""
    atomic_write(path, png_bytes(image))


def image_grid(
    images: Sequence[Any] | np.ndarray, *, cols: int | None = None, pad: int = 2,
    fill: float = 1.0,
) -> np.ndarray:
    """Tile same-sized images [N, H, W, C] into one image (row-major), ``pad`` px apart and
    around, on ``fill``; the one grid builder of lucidax. uint8 images give a uint8 grid
    (``fill`` then in 0..255), anything else a float32 one."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"image_grid needs a non-empty [N, H, W, C] stack, got {arr.shape}")
    n, h, w, c = arr.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c), fill, arr.dtype)
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


def match_channels(img: np.ndarray, channels: int) -> np.ndarray:
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


def resize_np(img: np.ndarray, size: int) -> np.ndarray:
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


class UnreadableImageError(ValueError):
    """An image file that exists but cannot be decoded; the message names the file and the
    reason in one line (``cannot read image 'x.png': ...``)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"cannot read image {self.path!r}: {reason}")


class SkippedFilesWarning(UserWarning):
    """Unreadable files of a folder were skipped (the message counts and names them)."""


def error_reason(e: BaseException) -> str:
    """One line saying why a file could not be decoded (the innermost cause, shortened)."""
    chain: list[BaseException] = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for err in chain:
        if type(err).__name__ == "UnidentifiedImageError" or "can not handle" in str(err):
            return "not a readable image (corrupt, or not an image file)"
    inner = chain[-1]
    if isinstance(inner, ValueError) and type(inner) is ValueError:
        lines = str(inner).strip().splitlines()  # ours: shape, channels, pixel values
        return lines[0] if lines else "cannot be converted"
    lines = str(inner).strip().splitlines()
    text = lines[0] if lines else type(inner).__name__
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"corrupt or truncated image data ({text})"


def _check_file(path: str, what: str = "image file") -> None:
    if os.path.isdir(path):
        raise UnreadableImageError(path, "it is a folder, not an image file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such {what}: {path!r}")


def load_image(path: str | os.PathLike, *, size: int, channels: int = 3) -> np.ndarray:
    """Read an image file as float32 ``[size, size, channels]`` in [0, 1].

    Args:
      path: an image file (PNG, JPEG, ... anything Pillow decodes).
      size: the side of the returned square (resized and centre-cropped).
      channels: 3 (RGB) or 1 (grayscale); the image is converted.

    Raises FileNotFoundError for a missing file and ``UnreadableImageError`` (a
    ValueError naming the file and the reason in one line) for one that cannot be decoded or
    converted.

    Example:
      >>> import numpy as np
      >>> import imageio.v3 as iio
      >>> from lucidax.probes import load_image
      >>> iio.imwrite("red.png", np.full((20, 30, 3), (255, 0, 0), np.uint8))
      >>> image = load_image("red.png", size=16)
      >>> image.shape, image.dtype, image[0, 0].tolist()
      ((16, 16, 3), dtype('float32'), [1.0, 0.0, 0.0])
    """
    import imageio.v3 as iio

    path = os.fspath(path)
    _check_file(path)
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableImageError(path, "empty file")
        arr = np.asarray(iio.imread(path, plugin="pillow"))
        if arr.ndim == 4:  # animated GIF / multi-page TIFF: first frame
            arr = arr[0]
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
            raise ValueError(f"not a 2-D image (decoded shape {arr.shape})")
        img = match_channels(_to_unit_float(arr), channels)
    except UnreadableImageError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure: one line naming the file
        raise UnreadableImageError(path, error_reason(e)) from None
    return resize_np(img, size)


def check_image(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a readable image (one line), or None when it looks fine.

    Cheap: Pillow reads the header and verifies the file's structure (PNG chunk checksums,
    ...) without decoding the pixels; :func:`load_image` can still fail on a file that
    passes."""
    from PIL import Image

    path = os.fspath(path)
    try:
        _check_file(path)
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as im:
            im.verify()
    except UnreadableImageError as e:
        return e.reason
    except Exception as e:  # noqa: BLE001 - any failure means "not readable"
        return error_reason(e)
    return None


def _names(bad: Sequence[tuple[str, str]], limit: int = 5, root: str | None = None) -> str:
    """``a.png, b.jpg (why)`` (files with the same reason share it), at most ``limit``; names
    relative to ``root`` (default: the file names)."""
    shown = list(bad[:limit])
    parts = []
    for i, (p, r) in enumerate(shown):
        same_next = i + 1 < len(shown) and shown[i + 1][1] == r
        name = os.path.relpath(p, root) if root else os.path.basename(p)
        parts.append(name + ("" if same_next else f" ({r})"))
    more = f", ... and {len(bad) - limit} more" if len(bad) > limit else ""
    return ", ".join(parts) + more


def warn_skipped(bad: Sequence[tuple[str, str]], where: str, *,
                 root: str | None = None) -> None:
    """Warn (:class:`SkippedFilesWarning`, one line) that the unreadable files ``bad``
    (``(path, reason)`` pairs) of ``where`` were skipped (named relative to ``root``, default:
    by file name)."""
    if bad:
        import warnings

        warnings.warn(f"skipped {len(bad)} unreadable image file(s) in {where}: "
                      f"{_names(bad, root=root)}", SkippedFilesWarning, stacklevel=3)


def none_left(bad: Sequence[tuple[str, str]], where: str) -> ValueError:
    return ValueError(f"no readable image in {where}: all {len(bad)} image file(s) failed: "
                      f"{_names(bad)}")


def readable_images(paths: Sequence[str | os.PathLike], where: str, *,
                    limit: int | None = None) -> list[str]:
    """The paths that pass :func:`check_image` (a cheap header check, before any expensive
    work), the first ``limit`` of them when given; the others are skipped with a
    :class:`SkippedFilesWarning` counting and naming them. ValueError (one line) when none is
    left."""
    good, bad = [], []
    for p in paths:
        if limit is not None and len(good) >= limit:
            break
        why = check_image(p)
        if why is None:
            good.append(os.fspath(p))
        else:
            bad.append((os.fspath(p), why))
    if paths and not good:
        raise none_left(bad, where)
    warn_skipped(bad, where)
    return good


def read_images(paths: Sequence[str | os.PathLike], *, size: int, channels: int = 3,
                where: str) -> tuple[np.ndarray, list[str]]:
    """Decode the image files of a folder (``where`` names it in messages) with
    :func:`load_image`: ``(images [N, size, size, channels], paths read)``. Unreadable files
    are skipped with a :class:`SkippedFilesWarning` that counts and names them; ValueError
    (one line) when none is readable."""
    imgs, good, bad = [], [], []
    for p in paths:
        try:
            imgs.append(load_image(p, size=size, channels=channels))
            good.append(os.fspath(p))
        except UnreadableImageError as e:
            bad.append((e.path, e.reason))
    if not imgs:
        if bad:
            raise none_left(bad, where)
        raise ValueError(f"no image files in {where}")
    warn_skipped(bad, where)
    return np.stack(imgs), good


# ---------------------------------------------------------------------------------------------
# user paths: output folders and arrays
# ---------------------------------------------------------------------------------------------
def prepare_out_dir(path: str | os.PathLike, *, flag: str = "--out") -> str:
    """Check, before any work, that ``path`` can be an output folder: an existing folder, or
    a path whose nearest existing parent is a writable folder. Nothing is created. Raises a
    one-line ValueError naming ``flag`` otherwise; returns ``os.fspath(path)``."""
    p = os.fspath(path)
    if not p:
        raise ValueError(f"{flag} is empty; give a folder path")
    full = os.path.abspath(p)
    probe = full
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.isdir(probe):
        if not os.access(probe, os.W_OK | os.X_OK):
            where = "the folder" if probe == full else f"its parent folder {probe!r}"
            raise ValueError(f"{flag} {p!r}: {where} is not writable; give another folder")
        return p
    if probe == full:
        raise ValueError(f"{flag} {p!r} is an existing file, not a folder; give a folder path "
                         "(new or existing)")
    raise ValueError(f"{flag} {p!r} cannot be created: {probe!r} is a file, not a folder")


def load_array(path: str | os.PathLike, *, expect: str = "an array [N, H, W, C] in [0, 1]",
               ) -> np.ndarray | dict[str, np.ndarray]:
    """Read a user's ``.npy`` (an array) or ``.npz`` (``{name: array}``, read whole) safely
    (``allow_pickle=False``). Any failure is one ValueError line: ``cannot read <path> as
    .npz/.npy: <why> (expected <expect>)``; a missing file is FileNotFoundError."""
    import zipfile

    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
    try:
        obj = np.load(p, allow_pickle=False)
        if isinstance(obj, np.lib.npyio.NpzFile):
            with obj:
                return {k: obj[k] for k in obj.files}
        return np.asarray(obj)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "pickle" in why or "Failed to interpret" in why:
            why = "not a NumPy .npy/.npz file"
        raise ValueError(f"cannot read {p!r} as .npz/.npy: {why} (expected {expect})") from None


def check_int(value: Any, flag: str, *, minimum: int = 1, optional: bool = False) -> None:
    """Refuse (one ValueError line naming ``flag``) a ``value`` that is not an int >=
    ``minimum`` (None is fine with ``optional``). For sizes and counts, checked before work."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{flag} must be an integer >= {minimum}; got {value!r}")


def check_array_file(path: str | os.PathLike, *,
                     expect: str = "an array [N, H, W, C] in [0, 1]") -> None:
    """A cheap look (the header only) at a user's ``.npy`` / ``.npz`` before any work: the
    same one-line ValueError as :func:`load_array` when it is not a NumPy file."""
    import zipfile

    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
    try:
        if zipfile.is_zipfile(p):
            return
        with open(p, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            if major == 1:
                np.lib.format.read_array_header_1_0(f)
            else:
                np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "magic" in why or "pickle" in why or "header" in why.lower():
            why = "not a NumPy .npy/.npz file"
        raise ValueError(f"cannot read {p!r} as .npz/.npy: {why} (expected {expect})") from None
