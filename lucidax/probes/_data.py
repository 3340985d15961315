"""Where the probes' images come from: folder listings with their labels (class sub-folders
or a labels CSV), :class:`ImageSet` (a lazy, cache-identified pool of images for TCAV), and
:func:`load_data` (what ``--data`` names for ``lucidax probe``)."""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from lucidax._files import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    load_image,
    readable_images,
)
from lucidax.models import photos as builtin_photos
from lucidax.models import suggest

from ._cache import _array_key

BUILTIN_DATA = builtin_photos.BUILTIN_DATA

# ----------------------------------------------------------------------------------------------
# folder listing + labels
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Listing:
    root: str
    paths: tuple[str, ...]
    labels: dict[str, np.ndarray]
    label_names: dict[str, tuple[str, ...]]
    extra_key: str  # hash of the label source (CSV content)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _walk_images(folder: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return out


def _encode_column(values: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Categorical codes (sorted names; numbers sort numerically) or floats for continuous."""
    try:
        nums = [float(v) for v in values]
    except ValueError:
        nums = None
    if nums is not None and any(not float(v).is_integer() for v in nums):
        return np.asarray(nums, np.float64), ()
    if nums is not None:
        names = sorted(set(values), key=lambda v: float(v))
    else:
        names = sorted(set(values))
    lookup = {v: i for i, v in enumerate(names)}
    return np.asarray([lookup[v] for v in values], np.int64), tuple(names)


def _read_csv_listing(csv_path: str) -> _Listing:
    root = os.path.dirname(os.path.abspath(csv_path))
    with open(csv_path, "rb") as f:
        raw = f.read()
    rows = [r for r in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) if r and any(r)]
    if not rows:
        raise ValueError(f"label CSV {csv_path} is empty")
    head = [c.strip() for c in rows[0]]
    has_header = head[0].lower() in ("filename", "file", "path", "image", "name", "fname")
    if has_header:
        families = [h or f"label{i}" for i, h in enumerate(head[1:], 1)]
        rows = rows[1:]
    else:
        families = ["label"] + [f"label{i}" for i in range(2, len(head))]
    paths, cols = [], [[] for _ in families]
    for lineno, r in enumerate(rows, 2 if has_header else 1):
        if len(r) < 1 + len(families):
            raise ValueError(
                f"{csv_path} line {lineno}: expected filename + {len(families)} label "
                f"column(s) ({', '.join(families)}); got {r!r}"
            )
        name = r[0].strip()
        paths.append(name if os.path.isabs(name) else os.path.join(root, name))
        for c, v in zip(cols, r[1:], strict=False):
            c.append(v.strip())
    labels, names = {}, {}
    for fam, values in zip(families, cols, strict=True):
        labels[fam], names[fam] = _encode_column(values)
    return _Listing(root, tuple(paths), labels, names, hashlib.sha256(raw).hexdigest())


def list_image_folder(path: str | os.PathLike) -> tuple[tuple[str, ...], dict, dict]:
    """Image paths and labels of a folder source: ``(paths, labels, label_names)``.

    ``path`` is a folder with one sub-folder per class (family ``"label"``), a folder with
    ``labels.csv`` at its top, a CSV file (``filename,label[,...]``, file names relative to
    the CSV), or a flat folder of images (no labels).

    Example:
      >>> import numpy as np
      >>> import imageio.v3 as iio
      >>> from pathlib import Path
      >>> from lucidax.probes import list_image_folder
      >>> for label in ("cat", "dog"):
      ...     Path("pets", label).mkdir(parents=True, exist_ok=True)
      ...     iio.imwrite(f"pets/{label}/a.png", np.zeros((8, 8, 3), np.uint8))
      >>> paths, labels, names = list_image_folder("pets")
      >>> len(paths), labels["label"].tolist(), names["label"]
      (2, [0, 1], ('cat', 'dog'))
    """
    lst = _listing(os.fspath(path))
    return lst.paths, lst.labels, lst.label_names


def _listing(path: str) -> _Listing:
    if os.path.isfile(path):
        if path.lower().endswith(".csv"):
            return _read_csv_listing(path)
        raise ValueError(f"{path} is a file; data must be a folder of images or a .csv listing")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data folder not found: {path}")
    csv_path = os.path.join(path, "labels.csv")
    if os.path.isfile(csv_path):
        return _read_csv_listing(csv_path)
    subdirs = sorted(
        d for d in os.listdir(path)
        if not d.startswith(".") and os.path.isdir(os.path.join(path, d))
    )
    per_class = [(d, _walk_images(os.path.join(path, d))) for d in subdirs]
    per_class = [(d, files) for d, files in per_class if files]
    if per_class:
        paths = [f for _, files in per_class for f in files]
        codes = [i for i, (_, files) in enumerate(per_class) for _ in files]
        names = tuple(d for d, _ in per_class)
        return _Listing(path, tuple(paths), {"label": np.asarray(codes, np.int64)},
                        {"label": names}, "subfolders")
    paths = [os.path.join(path, f) for f in sorted(os.listdir(path)) if _is_image(f)
             and os.path.isfile(os.path.join(path, f))]
    if not paths:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {path} or its sub-folders"
        )
    return _Listing(path, tuple(paths), {}, {}, "flat")


def _listing_key(lst: _Listing) -> str:
    h = hashlib.sha256(lst.extra_key.encode())
    for p in lst.paths:
        try:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{os.path.abspath(p)}\0missing\n".encode())
    return h.hexdigest()

# ----------------------------------------------------------------------------------------------
# image sets (lazy: a warm cache never builds or reads the images)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class ImageSet:
    """A named pool of images with a cache identity; the pixels are produced only on demand.

    Build with ``ImageSet.from_array``, ``ImageSet.from_folder``,
    ``ImageSet.starter`` or ``ImageSet.photos``.

    Attributes:
      name: a readable name (for messages and reports).
      key: the cache identity (a digest of the source and its settings).
      n: number of images.
      load: ``load() -> [n, H, W, C]`` float32 pixels, called only when needed.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import ImageSet
      >>> pool = ImageSet.from_array(np.zeros((5, 32, 32, 3), np.float32), name="noise")
      >>> pool.name, pool.n, pool.load().shape
      ('noise', 5, (5, 32, 32, 3))
    """

    name: str
    key: str
    n: int
    load: Callable[[], np.ndarray] = dataclasses.field(repr=False)

    @functools.cached_property
    def images(self) -> np.ndarray:
        """float32 ``[n, H, W, C]`` in [0, 1]."""
        arr = np.asarray(self.load(), np.float32)
        if arr.ndim != 4 or len(arr) != self.n:
            raise ValueError(f"image set {self.name!r}: expected [{self.n}, H, W, C] images; "
                             f"got shape {arr.shape}")
        return arr

    @classmethod
    def from_array(cls, images: Any, name: str = "array") -> ImageSet:
        arr = np.asarray(images)
        if arr.ndim != 4:
            raise ValueError(f"image set {name!r}: images must be [N, H, W, C]; got shape "
                             f"{arr.shape}")
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        return cls(name, "array:" + _array_key(arr), len(arr), lambda: arr)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, *, size: int, channels: int = 3,
                    name: str | None = None) -> ImageSet:
        """Every readable image under ``path`` (recursively; class sub-folders are merged),
        resized so its shorter side is ``size`` and center-cropped."""
        path = os.fspath(path)
        lst = _listing(path)
        if not lst.paths:
            raise ValueError(f"no images found in {path!r}")
        # checked now (a cheap header check), before any expensive work; unreadable files
        # are skipped with a warning naming them
        paths = tuple(readable_images(lst.paths, f"image folder {path!r}"))

        def load() -> np.ndarray:
            imgs, bad = [], []
            for p in paths:
                try:
                    imgs.append(load_image(p, size=size, channels=channels))
                except UnreadableImageError as e:
                    bad.append(f"{os.path.basename(e.path)} ({e.reason})")
            if bad:
                raise ValueError(f"{len(bad)} image file(s) in {path!r} cannot be decoded: "
                                 f"{', '.join(bad[:5])}; remove them")
            return np.stack(imgs)

        key = f"folder:{_listing_key(lst)}:{size}:{channels}"
        return cls(name or os.path.basename(os.path.normpath(path)), key, len(paths), load)

    @classmethod
    def starter(cls, n: int, *, split: str = "test", seed: int = 0,
                fixed: Mapping[str, int | str] | None = None,
                name: str | None = None) -> ImageSet:
        """``n`` images of the starter dataset (``lucidax.models.starter.dataset``), with
        the label families in ``fixed`` held fixed (a concept) and the others random."""
        from lucidax.models import starter

        fixed = dict(fixed or {})
        for fam, val in fixed.items():  # validate now, not when the pixels are needed
            if fam not in starter.FAMILIES:
                raise ValueError(f"Unknown starter label family {fam!r}. Valid families: "
                                 f"{', '.join(starter.FAMILIES)}")
            names = starter.LABEL_NAMES[fam]
            if isinstance(val, str) and val not in names:
                raise ValueError(suggest(val, names, what=f"{fam} value"))
            if not isinstance(val, str) and not (isinstance(val, int | np.integer)
                                                 and 0 <= int(val) < len(names)):
                raise ValueError(f"{fam} value {val!r}: give a name or an index 0.."
                                 f"{len(names) - 1}; valid {fam} values: {', '.join(names)}")
        if split not in starter.SPLITS:
            raise ValueError(suggest(split, starter.SPLITS, what="split"))
        spec = ",".join(f"{k}={v}" for k, v in sorted(fixed.items()))
        label = name or (spec or "random")

        def load() -> np.ndarray:
            return starter.dataset(n, split=split, seed=seed, fixed=fixed).images

        return cls(label, f"starter-{_starter_version()}:{split}:{n}:{seed}:{spec}", int(n),
                   load)


    @classmethod
    def photos(cls, n: int, *, side: int | None = None, channels: int = 3, seed: int = 0,
               sources: Sequence[str] | None = None, name: str | None = None) -> ImageSet:
        """``n`` crops of the photos shipped in installed packages
        (``lucidax.models.photos.photos``, at ``side`` px, default 224), of every source
        or of ``sources`` only."""
        from lucidax.models import photos as ph

        side = int(side or ph.DEFAULT_SIDE)
        if sources is not None:  # validate now, not when the pixels are needed
            sources = tuple(ph.resolve_sources(sources))
        # the resolved list: the sources available differ between installs
        spec = ",".join(sources if sources is not None else ph.available_sources())

        def load() -> np.ndarray:
            return ph.photos(int(n), side=side, seed=seed, sources=sources,
                             channels=channels).images

        return cls(name or "photos", f"photos-{_module_version(ph.__file__)}:{spec}:{n}:"
                   f"{side}:{channels}:{seed}", int(n), load)


@functools.cache
def _module_version(path: str) -> str:
    """Hash of a data module's code: a cached entry built by other code is not reused."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def _starter_version() -> str:
    """Hash of the starter dataset's code: a cached entry built by other code is not reused."""
    from lucidax.models.starter import data

    return _module_version(data.__file__)


class _Batches:
    """An iterable over an ImageSet's batches for :func:`extract` (consumed only on a miss)."""

    def __init__(self, images: ImageSet, batch: int):
        self.images, self.batch = images, batch

    def __iter__(self) -> Iterator[np.ndarray]:
        arr = self.images.images
        for i in range(0, len(arr), self.batch):
            yield arr[i : i + self.batch]

# ----------------------------------------------------------------------------------------------
# --data of lucidax probe
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Data:
    data: Any
    labels: dict[str, np.ndarray] | None
    label_names: dict[str, tuple[str, ...]]
    description: str

def load_data(data: str | os.PathLike, *, n: int = 2000, seed: int = 0,
              side: int | None = None, channels: int = 3, progress: bool = False) -> _Data:
    """Resolve a ``--data`` argument: ``builtin:starter[:train|:test]`` (the starter model's
    dataset, default split ``test``: images the model was not trained on),
    ``builtin:photos[:<source>]`` (``n`` crops of the photos shipped in installed packages,
    ``lucidax.models.photos``, at ``side`` px, default 224, with one label family
    ``source``: the photo each crop comes from) or a folder / CSV.

    Args:
      data: the ``--data`` string or a folder / CSV path.
      n: number of images (built-in sources; a folder gives all of its images).
      seed: the draw of built-in images and crops.
      side: image side (built-in photos: default 224; folders: resized to it).
      channels: image channels (folders are converted).
      progress: show a tqdm progress bar while decoding folders.

    Returns:
      An object with ``data`` (``[N, H, W, C]`` float32 in [0, 1]), ``labels``
      (``{family: [N]}``), ``label_names`` (``{family: class names}``) and ``description``.

    Example:
      >>> from lucidax.probes import load_data
      >>> d = load_data("builtin:starter:test", n=50)
      >>> d.data.shape, sorted(d.labels)[:2]
      ((50, 64, 64, 3), ['background', 'color'])
      >>> load_data("builtin:photos", n=4, side=96).data.shape
      (4, 96, 96, 3)
    """
    from lucidax.models import starter

    spec = os.fspath(data)
    builtin = builtin_photos.parse_builtin(spec)
    if builtin is not None and builtin.kind == "photos":
        ph = builtin_photos.photos(int(n), side=side or builtin_photos.DEFAULT_SIDE, seed=seed,
                                   sources=builtin.sources, channels=channels,
                                   progress=progress)
        return _Data(ph.images, {"source": ph.labels}, {"source": ph.label_names},
                     f"{spec} (n={n}, side={ph.side}, seed={seed})")
    if builtin is not None:
        ds = starter.dataset(int(n), split=builtin.split, seed=seed)
        labels = {k: np.asarray(v) for k, v in ds.labels.items()}
        return _Data(ds.images, labels, dict(ds.label_names),
                     f"builtin:starter:{builtin.split} (n={n}, seed={seed})")
    if not os.path.exists(spec):
        raise FileNotFoundError(
            f"data not found: {spec!r} (an image folder, a labels CSV, or one of "
            f"{', '.join(BUILTIN_DATA)})"
        )
    return _Data(spec, None, {}, spec)
