"""Safe file names, paths that cannot leave the output folder, atomic writes, PNG check.

Pixels become PNG bytes through :func:`lucidax._files.to_uint8` / ``png_bytes`` (the one
conversion of lucidax; the gallery passes ``nan=0.5``: failed units show as grey tiles)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import imageio.v3 as iio

from .._files import atomic_write, json_default

__all__ = [
    "UnsafePathError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "clean_stale_tmp",
    "decodable_png",
    "read_json",
    "safe_name",
    "safe_path",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 100


class UnsafePathError(ValueError):
    """A path that would be written outside the gallery's output folder.

    A ``ValueError``, raised by :func:`safe_path`.

    Example:
      >>> from lucidax.gallery import safe_path
      >>> safe_path("gallery", "..", "etc")
      Traceback (most recent call last):
      ...
      lucidax.gallery._io.UnsafePathError: Refusing path component '..': ...
    """


def safe_name(name: str) -> str:
    """A file-name component for a user-provided string (a layer name, say).

    Letters, digits, ``.``, ``_`` and ``-`` are kept (``"layer3.5"`` stays ``"layer3.5"``);
    anything else becomes ``_``; a leading dot is prefixed with ``_`` so that ``"."``,
    ``".."`` and hidden names cannot come out (``"../x"`` -> ``"_.._x"``).

    Args:
      name: the string to turn into a file name (cut to 100 characters).

    Returns:
      The file-name component.

    Raises:
      TypeError: ``name`` is not a string.

    Example:
      >>> from lucidax.gallery import safe_name
      >>> safe_name("blocks.4/conv"), safe_name("../x"), safe_name("layer3.5")
      ('blocks.4_conv', '_.._x', 'layer3.5')
    """
    if not isinstance(name, str):
        raise TypeError(f"expected a string name, got {type(name).__name__}: {name!r}")
    out = _UNSAFE.sub("_", name)[:_MAX_NAME]
    if not out or out.startswith("."):
        out = "_" + out
    return out


def safe_path(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts...``, refusing any part that is not a plain name or that resolves
    (symlinks included) outside ``root``.

    Args:
      root: the folder every path must stay in (resolved, symlinks included).
      *parts: the path components below ``root``, each a plain name (see :func:`safe_name`).

    Returns:
      ``Path(resolved root, *parts)``.

    Raises:
      UnsafePathError: for ``".."``, absolute parts, separators, NUL, or an escape via a link.

    Example:
      >>> from lucidax.gallery import safe_path
      >>> safe_path("gallery", "conv1", "0.png").parts[-3:]
      ('gallery', 'conv1', '0.png')
    """
    root_path = Path(root).resolve()
    path = root_path
    for part in parts:
        part = str(part)
        if (
            not part
            or part in (".", "..")
            or "/" in part
            or "\\" in part
            or "\x00" in part
            or os.path.isabs(part)
        ):
            raise UnsafePathError(
                f"Refusing path component {part!r}: gallery files must be plain names inside "
                f"{root_path}"
            )
        path = path / part
    resolved = path.resolve()
    if resolved != root_path and root_path not in resolved.parents:
        raise UnsafePathError(f"Refusing to write {resolved}: it is outside {root_path}")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, tag: str = "p0") -> None:
    """:func:`lucidax._files.atomic_write` with this process's ``tag`` in the temp name
    (``.<name>.<tag>.<random>.tmp``), so :func:`clean_stale_tmp` can remove leftovers of a
    killed run of the same process without touching other processes' files."""
    atomic_write(path, data, tag=tag)


def atomic_write_text(path: str | os.PathLike, text: str, *, tag: str = "p0") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), tag=tag)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, tag: str = "p0") -> None:
    text = json.dumps(obj, indent=1, sort_keys=False, allow_nan=False, default=json_default)
    atomic_write_text(path, text + "\n", tag=tag)


def read_json(path: str | os.PathLike) -> Any | None:
    """Parsed JSON, or None when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def clean_stale_tmp(root: str | os.PathLike, *, tag: str = "p0") -> int:
    """Delete temp files a killed run of process ``tag`` left under ``root``; returns count."""
    root = Path(root)
    if not root.is_dir():
        return 0
    n = 0
    for p in root.rglob(f".*.{tag}.*.tmp"):
        try:
            p.unlink()
            n += 1
        except OSError:
            pass
    return n


def decodable_png(path: str | os.PathLike) -> bool:
    """True when ``path`` exists and decodes as a non-empty image."""
    try:
        arr = iio.imread(path, plugin="pillow")
    except Exception:  # noqa: BLE001 - any decoder failure means "not usable"
        return False
    return arr.ndim >= 2 and arr.size > 0
