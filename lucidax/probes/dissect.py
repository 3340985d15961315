"""Network dissection (Bau et al., CVPR 2017): which units are detectors of which concepts?

For every unit ``k`` of the dissected (convolutional) layers:

1. **Threshold.** ``T_k`` is the top-``quantile`` level of the unit's activations over every
   (image, spatial position) of the dataset, *before* upsampling (as NetDissect):
   ``T_k = np.quantile(a_k, 1 - quantile, method="inverted_cdf")``, so
   ``P(a_k > T_k) <= quantile`` (default 0.5%).
2. **Unit mask.** The activation map ``S_k(x)`` is upsampled (bilinear, half-pixel centres:
   ``jax.image.resize(..., "linear")``) to the size of the concept masks and thresholded:
   ``M_k(x) = S_k(x) >= T_k`` (the paper's rule), except when ``T_k`` is the unit's smallest
   activation over the dataset -- a sparse ReLU unit silent on more than ``1 - quantile`` of
   all positions has ``T_k = 0 = min`` -- where ``M_k(x) = S_k(x) > T_k``, so a unit's resting
   level never counts as firing (and a constant unit never fires). Both comparisons allow a
   relative slack of 1e-6 (a few float32 ulps) for the rounding of the interpolation, so a
   plateau of activations equal to ``T_k`` stays in (or out of) the mask after upsampling.
3. **Dataset-level IoU.** For each concept ``c`` with per-pixel masks ``L_c(x)``::

       IoU_{k,c} = sum_x |M_k(x) & L_c(x)| / sum_x |M_k(x) | L_c(x)|

   where, as in NetDissect, the sums run over the images *labeled for c's category*: the
   images that carry at least one concept of the same category (an image annotated with no
   colour at all says nothing about colour units). Images that are labeled but where ``c`` is
   absent still count: there ``L_c(x)`` is empty and the unit's firing there adds to the union.
   For the builtin starter data every image is labeled for every category (every image has a
   digit, a colour and a background), so every image counts for every concept.
4. **Detector.** Unit ``k`` is reported with its best concept ``argmax_c IoU_{k,c}``; it is a
   detector when that IoU is ``>= iou_threshold`` (default 0.04).

Memory stays bounded by one batch whatever the dataset size: the images are streamed through
jitted passes. The thresholds are found by an exact streamed *radix select* on the float32
bit patterns of the activations (mapped to order-preserving uint32 keys): pass 1 histograms
the top 12 bits of every key per unit (4096 bins), pass 2 the next 12 bits inside the bin
that holds the target rank, pass 3 the last 8 bits. After 3 passes ``T_k`` is exactly the
order statistic above; with ``quantile_passes=2`` it is the lower edge of a bin of relative
width < 2^-15 (``T_approx <= T_k``, ``T_k - T_approx < 2^-15 |T_k|``); with 1 pass the
relative width is < 2^-3. Histogram memory: ``units x 4096`` int32 per layer. A last pass
accumulates the intersection and union pixel counts per (unit, concept).

Concept sources (``source=`` of :func:`dissect`):

* :class:`StarterConcepts`: the builtin starter composites (concepts
  :func:`starter_concepts`: ``stroke``, ``digit=<k>``, ``color=<c>``, ``background=<b>``).
* :class:`FolderConcepts`: your own images with binary masks, laid out as::

      root/images/<name>.<ext>                 the images (any imageio-readable format)
      root/masks/<concept>/<name>.<ext>        a mask of <concept> for image <name>

  A mask pixel is in the concept when any of its channels is non-zero. Concept folders named
  ``<category>=<value>`` (e.g. ``color=red``) form the category ``<category>``; any other
  folder name is its own category. An image is labeled for a category when it has a mask
  file for at least one of the category's concepts (an all-black mask file means "labeled,
  concept absent"; a missing file means "not labeled"). Images and masks are resized (shorter
  side) and centre-cropped to ``size`` (default: the model's input side); masks are resized
  bilinearly and kept where >= 0.5.
* :class:`ArrayConcepts`: in-memory arrays ``images [N,H,W,C]``, ``masks [N,H,W,n_concepts]``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models.base import Model, normalize_layers, suggest
from lucidax.models.fastgrad import apply as fast_apply
from lucidax.models.starter import data as starter_data

from .._files import atomic_write, save_json, save_plot

__all__ = [
    "BUILTIN_DISSECT_DATA",
    "DEFAULT_IOU_THRESHOLD",
    "DEFAULT_QUANTILE",
    "ArrayConcepts",
    "ConceptBatch",
    "DissectRun",
    "Dissection",
    "FolderConcepts",
    "StarterConcepts",
    "UnitDissection",
    "concept_category",
    "dissect",
    "format_dissection",
    "iou_counts",
    "concept_colors",
    "plot_dissection",
    "run_dissect_cli",
    "starter_concept_masks",
    "starter_concepts",
    "unit_thresholds",
    "write_dissection",
]

DEFAULT_QUANTILE = 0.005
DEFAULT_IOU_THRESHOLD = 0.04
BUILTIN_DISSECT_DATA = starter_data.BUILTIN_DATA
# radix-select schedule over the 32 key bits: (shift, bits) per pass
_RADIX = ((20, 12), (8, 12), (0, 8))
_SIGN = 0x80000000
_REL_TOL = 1e-6  # comparisons of upsampled maps with T_k: a few float32 ulps of slack


# ----------------------------------------------------------------------------------------------
# concept sources
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ConceptBatch:
    """One batch of a concept source.

    Attributes:
      images: float32 ``[B, H, W, C]`` in the model's value range.
      masks: bool ``[B, Hm, Wm, n_concepts]`` (None when masks were not asked for).
      labeled: bool ``[B, n_concepts]``: image b counts for concept c (see module docs).
    """

    images: np.ndarray
    masks: np.ndarray | None
    labeled: np.ndarray | None


def concept_category(concept: str) -> str:
    """``"color=red"`` -> ``"color"``; a name without ``=`` is its own category."""
    return concept.split("=", 1)[0] if "=" in concept else concept


def _check_concepts(concepts: Sequence[str], categories: Sequence[str] | None) -> tuple:
    concepts = tuple(str(c) for c in concepts)
    if not concepts:
        raise ValueError("no concepts: a concept source needs at least one concept mask")
    if len(set(concepts)) != len(concepts):
        dup = sorted({c for c in concepts if concepts.count(c) > 1})
        raise ValueError(f"duplicate concept names: {dup}")
    cats = tuple(concept_category(c) for c in concepts) if categories is None else tuple(
        str(c) for c in categories)
    if len(cats) != len(concepts):
        raise ValueError(f"{len(cats)} categories for {len(concepts)} concepts")
    return concepts, cats


def _labeled_from_presence(has_file: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """[N, C] 'a mask file exists' -> [N, C] 'image labeled for c's category'."""
    cats = np.asarray(categories)
    out = np.zeros_like(has_file, dtype=bool)
    for cat in np.unique(cats):
        cols = cats == cat
        out[:, cols] = has_file[:, cols].any(axis=1, keepdims=True)
    return out


class ArrayConcepts:
    """In-memory images with per-pixel concept masks.

    Args:
      images: ``[N, H, W, C]`` float in the model's value range.
      masks: bool-like ``[N, Hm, Wm, n_concepts]`` (any size; unit maps are upsampled to it).
      concepts: one name per mask channel.
      categories: one category per concept (default: :func:`concept_category` of the name).
      labeled: bool ``[N, n_concepts]``: which images count for each concept (default: all).
    """

    def __init__(self, images: Any, masks: Any, concepts: Sequence[str], *,
                 categories: Sequence[str] | None = None, labeled: Any = None,
                 description: str = "arrays"):
        self.images = np.asarray(images, np.float32)
        self.masks = np.asarray(masks).astype(bool)
        self.concepts, self.categories = _check_concepts(concepts, categories)
        if self.images.ndim != 4:
            raise ValueError(f"images must be [N, H, W, C]; got shape {self.images.shape}")
        if self.masks.ndim != 4 or self.masks.shape[0] != self.images.shape[0] or \
                self.masks.shape[-1] != len(self.concepts):
            raise ValueError(
                f"masks must be [N={self.images.shape[0]}, H, W, n_concepts="
                f"{len(self.concepts)}]; got shape {self.masks.shape}")
        n = self.images.shape[0]
        self.labeled = np.ones((n, len(self.concepts)), bool) if labeled is None else \
            np.asarray(labeled).astype(bool)
        if self.labeled.shape != (n, len(self.concepts)):
            raise ValueError(f"labeled must be [{n}, {len(self.concepts)}]; got "
                             f"{self.labeled.shape}")
        self.n = n
        self.mask_size = tuple(self.masks.shape[1:3])
        self.description = description

    def batches(self, batch_size: int, *, masks: bool = True) -> Iterator[ConceptBatch]:
        for i in range(0, self.n, batch_size):
            s = slice(i, i + batch_size)
            yield ConceptBatch(self.images[s], self.masks[s] if masks else None,
                               self.labeled[s] if masks else None)


# -- builtin starter data ----------------------------------------------------------------------
def starter_concepts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(concepts, categories)`` of the builtin starter data.

    * ``stroke`` (category ``stroke``): the digit stroke pixels of every image (alpha > 0.5);
    * ``digit=<k>`` (``digit``): the stroke pixels of images whose digit is k (10 concepts);
    * ``color=<c>`` (``color``): the stroke pixels of images painted in colour c (8);
    * ``background=<b>`` (``background``): the background (non-stroke) pixels of images whose
      background crop comes from source b (8: brick, grass, gravel, astronaut, coffee,
      chelsea, rocket, hubble).
    """
    from lucidax.models.starter import data as sd

    concepts = ["stroke"]
    concepts += [f"digit={d}" for d in sd.LABEL_NAMES["digit"]]
    concepts += [f"color={c}" for c in sd.COLORS]
    concepts += [f"background={b}" for b in sd.BACKGROUNDS]
    return tuple(concepts), tuple(concept_category(c) for c in concepts)


def starter_concept_masks(data: Any) -> np.ndarray:
    """bool ``[N, 64, 64, 27]`` masks of :func:`starter_concepts` for a ``StarterData``."""
    stroke = np.asarray(data.digit_mask, bool)
    back = np.asarray(data.background_mask, bool)
    chans = [stroke]
    for family, region in (("digit", stroke), ("color", stroke), ("background", back)):
        lab = np.asarray(data.labels[family])
        for v in range(len(data.label_names[family])):
            chans.append(region & (lab == v)[:, None, None])
    return np.stack(chans, axis=-1)


class StarterConcepts:
    """The builtin starter composites, generated chunk by chunk (bounded memory).

    Chunk ``i`` is ``starter.dataset(chunk, split=split, seed=(seed, i))`` (the last one
    shorter), so the same arguments always give the same ``n`` images.
    """

    def __init__(self, n: int = 2000, *, split: str = "test", seed: int = 0, chunk: int = 512):
        from lucidax.models.starter import data as sd

        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if split not in sd.SPLITS:
            raise ValueError(suggest(split, sd.SPLITS, what="split"))
        self.n, self.split, self.seed, self.chunk = int(n), split, int(seed), int(chunk)
        self.concepts, self.categories = starter_concepts()
        self.mask_size = (sd.SIDE, sd.SIDE)
        self.description = f"builtin:starter:{split} (n={n}, seed={seed})"

    def _chunks(self) -> Iterator[Any]:
        from lucidax.models.starter import data as sd

        for i, start in enumerate(range(0, self.n, self.chunk)):
            yield sd.dataset(min(self.chunk, self.n - start), split=self.split,
                             seed=(self.seed, i))

    def batches(self, batch_size: int, *, masks: bool = True) -> Iterator[ConceptBatch]:
        for d in self._chunks():
            m = starter_concept_masks(d) if masks else None
            lab = np.ones((len(d), len(self.concepts)), bool) if masks else None
            for i in range(0, len(d), batch_size):
                s = slice(i, i + batch_size)
                yield ConceptBatch(d.images[s], None if m is None else m[s],
                                   None if lab is None else lab[s])


# -- user folders ------------------------------------------------------------------------------
class FolderConcepts:
    """``root/images/<name>.<ext>`` + ``root/masks/<concept>/<name>.<ext>`` (see module docs)."""

    def __init__(self, root: str | os.PathLike, *, size: int, channels: int = 3):
        from .extract import IMAGE_EXTENSIONS

        root = os.fspath(root)
        img_dir, mask_dir = os.path.join(root, "images"), os.path.join(root, "masks")
        for d in (img_dir, mask_dir):
            if not os.path.isdir(d):
                raise FileNotFoundError(
                    f"concept folder {root!r} needs images/ and masks/<concept>/ sub-folders "
                    f"(missing {d!r})")

        def listing(folder: str) -> dict[str, str]:
            out = {}
            for f in sorted(os.listdir(folder)):
                stem, ext = os.path.splitext(f)
                if ext.lower() in IMAGE_EXTENSIONS and not f.startswith("."):
                    out.setdefault(stem, os.path.join(folder, f))
            return out

        self.image_paths = listing(img_dir)
        if not self.image_paths:
            raise FileNotFoundError(f"no images in {img_dir!r} ({', '.join(IMAGE_EXTENSIONS)})")
        concepts = sorted(d for d in os.listdir(mask_dir)
                          if os.path.isdir(os.path.join(mask_dir, d)) and not d.startswith("."))
        self.concepts, self.categories = _check_concepts(concepts, None)
        self.mask_paths = {c: listing(os.path.join(mask_dir, c)) for c in self.concepts}
        stems = list(self.image_paths)
        orphans = sorted({s for c in self.concepts for s in self.mask_paths[c]} - set(stems))
        if orphans:
            raise ValueError(f"masks without an image in {img_dir!r}: {orphans[:10]}")
        stems = self._readable(stems, img_dir, mask_dir)
        self.stems = tuple(stems)
        has = np.asarray([[s in self.mask_paths[c] for c in self.concepts] for s in stems], bool)
        self.labeled = _labeled_from_presence(has, self.categories)
        self.n, self.size, self.channels = len(stems), int(size), int(channels)
        self.mask_size = (self.size, self.size)
        self.description = f"{root} ({self.n} images, {len(self.concepts)} concepts)"

    def _readable(self, stems: list[str], img_dir: str, mask_dir: str) -> list[str]:
        """The stems whose image and masks pass a cheap header check, before any work; the
        others are skipped with a warning naming the files (one line each for images and
        masks). ValueError when none is left."""
        from lucidax._files import check_image, readable_images, warn_skipped

        good = set(readable_images([self.image_paths[s] for s in stems],
                                   f"images folder {img_dir!r}"))
        bad_masks = []
        for c in self.concepts:
            for s, p in self.mask_paths[c].items():
                why = None if self.image_paths[s] not in good else check_image(p)
                if why is not None:
                    bad_masks.append((p, why))
                    good.discard(self.image_paths[s])
        keep = [s for s in stems if self.image_paths[s] in good]
        if not keep:
            raise ValueError(f"no image of {img_dir!r} has readable masks in {mask_dir!r}: "
                             f"{len(bad_masks)} mask file(s) cannot be read, e.g. "
                             f"{os.path.relpath(bad_masks[0][0], mask_dir)} "
                             f"({bad_masks[0][1]})")
        warn_skipped(bad_masks, f"masks folder {mask_dir!r} (their images are left out)",
                     root=mask_dir)
        dropped = set(stems) - set(keep)
        if dropped:
            self.image_paths = {s: p for s, p in self.image_paths.items() if s not in dropped}
            self.mask_paths = {c: {s: p for s, p in m.items() if s not in dropped}
                               for c, m in self.mask_paths.items()}
        return keep

    def _mask(self, path: str) -> np.ndarray:
        import imageio.v3 as iio

        from lucidax._files import UnreadableImageError, _reason, _resize_np

        try:
            arr = np.asarray(iio.imread(path, plugin="pillow"))
        except Exception as e:  # noqa: BLE001 - any decoder failure: one line naming the file
            raise UnreadableImageError(path, _reason(e)) from None
        if arr.ndim == 4:
            arr = arr[0]
        if arr.ndim == 3:
            arr = arr.any(axis=-1) if arr.shape[-1] not in (2, 4) else arr[..., :-1].any(-1)
        m = _resize_np((arr > 0).astype(np.float32)[..., None], self.size)[..., 0]
        return m >= 0.5

    def batches(self, batch_size: int, *, masks: bool = True) -> Iterator[ConceptBatch]:
        from lucidax._files import load_image

        for i in range(0, self.n, batch_size):
            stems = self.stems[i : i + batch_size]
            imgs = np.stack([load_image(self.image_paths[s], size=self.size,
                                        channels=self.channels) for s in stems])
            if not masks:
                yield ConceptBatch(imgs, None, None)
                continue
            m = np.zeros((len(stems), self.size, self.size, len(self.concepts)), bool)
            for b, s in enumerate(stems):
                for c, concept in enumerate(self.concepts):
                    p = self.mask_paths[concept].get(s)
                    if p is not None:
                        m[b, :, :, c] = self._mask(p)
            yield ConceptBatch(imgs, m, self.labeled[i : i + batch_size])


# ----------------------------------------------------------------------------------------------
# jitted kernels
# ----------------------------------------------------------------------------------------------
def _ordered_key(x: jax.Array) -> jax.Array:
    """float32 -> uint32 with the same order (-0.0 is folded into +0.0)."""
    x = x.astype(jnp.float32)
    x = jnp.where(x == 0, jnp.float32(0.0), x)
    b = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.where((b >> 31) == 1, ~b, b | jnp.uint32(_SIGN))


def _key_to_float(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, np.uint32)
    bits = np.where(key >> 31 == 1, key & np.uint32(0x7FFFFFFF), ~key).astype(np.uint32)
    return bits.view(np.float32)


def _pad_batch(arr: np.ndarray, size: int) -> np.ndarray:
    if arr.shape[0] == size:
        return arr
    pad = np.zeros((size - arr.shape[0], *arr.shape[1:]), arr.dtype)
    return np.concatenate([arr, pad])


@functools.lru_cache(maxsize=32)
def _hist_fn(model: Model, layers: tuple[str, ...], shift: int, bits: int):
    """jit(params, images, valid [B], prefix {layer: [K] uint32}) -> {layer: (int32 counts
    [K, 2^bits], float32 minimum [K])}."""
    nbins = 1 << bits

    def fn(params, images, valid, prefix):
        acts = fast_apply(model, params, images, layers)
        out = {}
        for name in layers:
            a = acts[name]
            k = a.shape[-1]
            key = _ordered_key(a).reshape(a.shape[0], -1, k)  # [B, P, K]
            ok = jnp.broadcast_to(valid[:, None, None], key.shape)
            if shift + bits < 32:
                ok = ok & ((key >> (shift + bits)) == prefix[name][None, None, :])
            bucket = ((key >> shift) & jnp.uint32(nbins - 1)).astype(jnp.int32)
            idx = jnp.where(ok, bucket + jnp.arange(k, dtype=jnp.int32) * nbins, k * nbins)
            counts = jnp.bincount(idx.ravel(), length=k * nbins + 1)[:-1]
            low = jnp.where(valid[:, None, None, None], a.astype(jnp.float32), jnp.inf)
            out[name] = (counts.reshape(k, nbins).astype(jnp.int32), low.min(axis=(0, 1, 2)))
        return out

    return jax.jit(fn)


@functools.lru_cache(maxsize=32)
def _iou_fn(model: Model, layers: tuple[str, ...], mask_hw: tuple[int, int]):
    """jit(params, images, valid [B], masks [B,H,W,C], labeled [B,C], thresholds, strict) ->
    per layer (inter [K, C], union [K, C], fired [K]) int32 sums over the batch."""

    def fn(params, images, valid, masks, labeled, thresholds, strict):
        acts = fast_apply(model, params, images, layers)
        lab = labeled.astype(jnp.int32)  # [B, C]
        lmask = masks.reshape(masks.shape[0], -1, masks.shape[-1]).astype(jnp.float32)
        lcount = lmask.sum(axis=1).astype(jnp.int32)  # [B, C]
        out = {}
        for name in layers:
            a = acts[name]
            b, _, _, k = a.shape
            up = jax.image.resize(a.astype(jnp.float32), (b, *mask_hw, k), "linear")
            t = thresholds[name]
            tol = _REL_TOL * jnp.abs(t)  # interpolation rounding: a plateau at T stays >= T
            m = jnp.where(strict[name], up > t + tol, up >= t - tol)
            m = m.reshape(b, -1, k).astype(jnp.float32)  # [B, P, K]
            inter = jnp.einsum("bpk,bpc->bkc", m, lmask,
                               precision=jax.lax.Precision.HIGHEST).astype(jnp.int32)
            mcount = m.sum(axis=1).astype(jnp.int32)  # [B, K]
            inter_t = jnp.einsum("bkc,bc->kc", inter, lab)
            union_t = (jnp.einsum("bk,bc->kc", mcount, lab)
                       + jnp.einsum("bc,bc->c", lcount, lab)[None, :] - inter_t)
            out[name] = (inter_t, union_t, jnp.where(valid[:, None], mcount, 0).sum(0))
        return out

    return jax.jit(fn)


def _valid_mask(n: int, size: int) -> np.ndarray:
    v = np.zeros(size, bool)
    v[:n] = True
    return v


# ----------------------------------------------------------------------------------------------
# pass 1: thresholds; pass 2: IoU counts
# ----------------------------------------------------------------------------------------------
def _bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not progress, leave=False)


def unit_thresholds(
    model: Model,
    source: Any,
    layers: Sequence[str],
    *,
    params: Any = None,
    quantile: float = DEFAULT_QUANTILE,
    passes: int = 3,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-unit top-``quantile`` levels ``{layer: float32 [K]}`` over every (image, position)
    of ``source`` (streamed radix select; exact with ``passes=3``, see module docs)."""
    return _thresholds(model, source, tuple(layers), params, quantile, passes, batch_size,
                       progress)[0]


def _thresholds(model, source, layers, params, quantile, passes, batch_size, progress):
    """(thresholds {layer: [K]}, minimum {layer: [K]})."""
    _check_quantile(quantile)
    if passes not in (1, 2, 3):
        raise ValueError(f"quantile_passes must be 1, 2 or 3 (3 is exact); got {passes!r}")
    params = model.params if params is None else params
    minimum = {name: np.full(model.channels(name), np.inf, np.float32) for name in layers}
    prefix = {name: np.zeros(model.channels(name), np.uint32) for name in layers}
    rank: dict[str, np.ndarray] = {}
    for p, (shift, bits) in enumerate(_RADIX[:passes]):
        fn = _hist_fn(model, layers, shift, bits)
        counts = {name: np.zeros((model.channels(name), 1 << bits), np.int64) for name in layers}
        n_img, positions = 0, {}
        bar = _bar(progress, source.n, f"thresholds {p + 1}/{passes}")
        for batch in source.batches(batch_size, masks=False):
            nb = batch.images.shape[0]
            res = fn(params, _pad_batch(batch.images, batch_size), _valid_mask(nb, batch_size),
                     {k: jnp.asarray(v) for k, v in prefix.items()})
            for name in layers:
                counts[name] += np.asarray(res[name][0], np.int64)
                minimum[name] = np.minimum(minimum[name], np.asarray(res[name][1]))
            n_img += nb
            bar.update(nb)
        bar.close()
        if n_img == 0:
            raise ValueError("the concept source yielded no images")
        for name in layers:
            c = counts[name]
            if p == 0:
                total = int(c[0].sum())
                positions[name] = total
                r = max(1, min(total, math.ceil(total * (1.0 - quantile))))
                rank[name] = np.full(c.shape[0], r, np.int64)
            cs = np.cumsum(c, axis=1)
            b = np.argmax(cs >= rank[name][:, None], axis=1)
            rank[name] = rank[name] - (cs[np.arange(len(b)), b] - c[np.arange(len(b)), b])
            prefix[name] = ((prefix[name].astype(np.uint64) << np.uint64(bits))
                            | b.astype(np.uint64)).astype(np.uint32)
    rest = 32 - sum(bits for _, bits in _RADIX[:passes])
    out = {}
    for name in layers:
        key = (prefix[name].astype(np.uint64) << np.uint64(rest)).astype(np.uint32)
        out[name] = _key_to_float(key)
    return out, minimum


def _same_bin(threshold: np.ndarray, minimum: np.ndarray, passes: int) -> np.ndarray:
    """Whether ``minimum`` lies in the radix bin whose lower edge is ``threshold``."""
    rest = 32 - sum(bits for _, bits in _RADIX[:passes])
    key = np.asarray(_ordered_key(jnp.asarray(minimum)))
    edge = np.asarray(_ordered_key(jnp.asarray(threshold)))
    return (key >> rest) == (edge >> rest)


def _check_quantile(quantile: float) -> None:
    if not (isinstance(quantile, int | float) and 0.0 < float(quantile) < 1.0):
        raise ValueError(f"quantile must be in (0, 1) (0.005 = top 0.5%); got {quantile!r}")


def _count_pass(model, source, layers, thresholds, strict, params, batch_size, progress):
    c = len(source.concepts)
    fn = _iou_fn(model, tuple(layers), tuple(source.mask_size))
    inter = {n: np.zeros((model.channels(n), c), np.int64) for n in layers}
    union = {n: np.zeros((model.channels(n), c), np.int64) for n in layers}
    fired = {n: np.zeros(model.channels(n), np.int64) for n in layers}
    th = {n: jnp.asarray(thresholds[n], jnp.float32) for n in layers}
    st = {n: jnp.asarray(strict[n], bool) for n in layers}
    bar = _bar(progress, source.n, "IoU")
    pixels = 0
    for batch in source.batches(batch_size, masks=True):
        nb = batch.images.shape[0]
        if tuple(batch.masks.shape[1:3]) != tuple(source.mask_size):
            raise ValueError(f"mask size {batch.masks.shape[1:3]} != {source.mask_size}")
        # padded rows are unlabeled and not valid: they never count
        res = fn(params, _pad_batch(batch.images, batch_size), _valid_mask(nb, batch_size),
                 _pad_batch(batch.masks, batch_size), _pad_batch(batch.labeled, batch_size), th, st)
        for n in layers:
            i, u, f = res[n]
            inter[n] += np.asarray(i, np.int64)
            union[n] += np.asarray(u, np.int64)
            fired[n] += np.asarray(f, np.int64)
        pixels += nb * int(np.prod(source.mask_size))
        bar.update(nb)
    bar.close()
    return inter, union, fired, pixels


def iou_counts(unit_masks: Any, concept_masks: Any, labeled: Any = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dataset-level ``(intersection [K, C], union [K, C], IoU [K, C])`` of binary masks.

    Args:
      unit_masks: bool ``[N, H, W, K]`` (``M_k(x)``).
      concept_masks: bool ``[N, H, W, C]`` (``L_c(x)``).
      labeled: bool ``[N, C]``: images counted for each concept (default: all).

    The same arithmetic as the dissection's last pass: sums over the counted images of
    ``|M & L|`` and ``|M | L|``; IoU is 0 where the union is empty.
    """
    m = np.asarray(unit_masks).astype(bool)
    lm = np.asarray(concept_masks).astype(bool)
    if m.ndim != 4 or lm.ndim != 4 or m.shape[:3] != lm.shape[:3]:
        raise ValueError(f"unit_masks [N,H,W,K] and concept_masks [N,H,W,C] must share N, H, W;"
                         f" got {m.shape} and {lm.shape}")
    lab = np.ones((m.shape[0], lm.shape[-1]), bool) if labeled is None else \
        np.asarray(labeled).astype(bool)
    inter_b = np.einsum("bpk,bpc->bkc", m.reshape(m.shape[0], -1, m.shape[-1]).astype(np.int64),
                        lm.reshape(lm.shape[0], -1, lm.shape[-1]).astype(np.int64))
    mc = m.sum(axis=(1, 2)).astype(np.int64)
    lc = lm.sum(axis=(1, 2)).astype(np.int64)
    inter = np.einsum("bkc,bc->kc", inter_b, lab.astype(np.int64))
    union = (np.einsum("bk,bc->kc", mc, lab.astype(np.int64))
             + (lc * lab).sum(0)[None, :] - inter)
    return inter, union, _safe_iou(inter, union)


def _safe_iou(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class UnitDissection:
    """One unit: its best concept and IoU, its threshold, whether it is a detector.

    ``coverage`` is the share of (counted) mask pixels where the unit's upsampled map
    exceeds its threshold (about ``quantile`` unless upsampling spreads or thins it).
    """

    layer: str
    unit: int
    concept: str
    category: str
    iou: float
    threshold: float
    detector: bool
    coverage: float


@dataclasses.dataclass(frozen=True, eq=False)
class Dissection:
    """The dissection of some layers of a model.

    Attributes:
      model: model name.
      layers: dissected layers (forward order).
      concepts / categories: the concepts (and their categories) units were compared with.
      units: one :class:`UnitDissection` per (layer, unit).
      iou: ``{layer: float64 [K, n_concepts]}`` every IoU.
      thresholds: ``{layer: float32 [K]}``.
      quantile, iou_threshold, quantile_passes: the settings.
      n_images: images used; data: description of the concept source.
      skipped_layers: ``{layer: why}`` for layers of ``"all"`` that cannot be dissected.
    """

    model: str
    layers: tuple[str, ...]
    concepts: tuple[str, ...]
    categories: tuple[str, ...]
    units: tuple[UnitDissection, ...]
    iou: Mapping[str, np.ndarray]
    thresholds: Mapping[str, np.ndarray]
    quantile: float
    iou_threshold: float
    quantile_passes: int
    n_images: int
    data: str
    skipped_layers: Mapping[str, str]

    def unit(self, layer: str, unit: int) -> UnitDissection:
        if layer not in self.layers:
            raise KeyError(suggest(layer, self.layers, what="layer"))
        for u in self.units:
            if u.layer == layer and u.unit == unit:
                return u
        raise IndexError(f"layer {layer!r} has units 0..{len(self.thresholds[layer]) - 1}; "
                         f"got {unit!r}")

    def detectors(self, layer: str | None = None) -> tuple[UnitDissection, ...]:
        """Detector units (of ``layer``, or of every layer), best IoU first."""
        if layer is not None and layer not in self.layers:
            raise KeyError(suggest(layer, self.layers, what="layer"))
        out = [u for u in self.units if u.detector and (layer is None or u.layer == layer)]
        return tuple(sorted(out, key=lambda u: -u.iou))

    def summary(self) -> dict[str, dict[str, int]]:
        """``{layer: {concept: number of detector units}}`` (concepts with >= 1 detector)."""
        out: dict[str, dict[str, int]] = {name: {} for name in self.layers}
        for u in self.units:
            if u.detector:
                out[u.layer][u.concept] = out[u.layer].get(u.concept, 0) + 1
        return {k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0])))
                for k, v in out.items()}

    def category_summary(self) -> dict[str, dict[str, int]]:
        """``{layer: {category: number of detector units}}``."""
        cat = dict(zip(self.concepts, self.categories, strict=True))
        out: dict[str, dict[str, int]] = {}
        for layer, d in self.summary().items():
            acc: dict[str, int] = {}
            for concept, n in d.items():
                acc[cat[concept]] = acc.get(cat[concept], 0) + n
            out[layer] = acc
        return out

    def to_dict(self, *, all_ious: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "data": self.data, "n_images": self.n_images,
            "quantile": self.quantile, "iou_threshold": self.iou_threshold,
            "quantile_passes": self.quantile_passes, "layers": list(self.layers),
            "units_per_layer": {n: int(len(self.thresholds[n])) for n in self.layers},
            "skipped_layers": dict(self.skipped_layers),
            "concepts": list(self.concepts), "categories": list(self.categories),
            "detectors_per_layer": {n: len(self.detectors(n)) for n in self.layers},
            "summary": self.summary(), "category_summary": self.category_summary(),
            "units": [dataclasses.asdict(u) for u in self.units],
        }
        if all_ious:
            d["iou"] = {n: np.round(self.iou[n], 6).tolist() for n in self.layers}
        return d


def _default_layers(model: Model) -> tuple[tuple[str, ...], dict[str, str]]:
    keep, skipped = [], {}
    for n in model.layer_names:
        info = model.layers[n]
        if info.pre_relu or n.endswith("_pre_relu"):
            continue
        if info.kind != "conv":
            skipped[n] = f"{info.kind} layer: no spatial map to segment"
            continue
        keep.append(n)
    return tuple(keep), skipped


def _resolve_layers(model: Model, layers: Any) -> tuple[tuple[str, ...], dict[str, str]]:
    conv = [n for n in model.layer_names if model.layers[n].kind == "conv"]
    if layers is None or (isinstance(layers, str) and layers == "all"):
        keep, skipped = _default_layers(model)
        if not keep:
            raise ValueError(f"model {model.name!r} has no convolutional layer to dissect")
        return keep, skipped
    names = normalize_layers(layers, model.layer_names)
    bad = [n for n in names if model.layers[n].kind != "conv"]
    if bad:
        raise ValueError(
            f"cannot dissect {bad}: {model.layers[bad[0]].kind} layers have no spatial map. "
            f"Layers with spatial maps: {', '.join(conv)}")
    return tuple(sorted(names, key=model.layer_names.index)), {}


def _check_memory(model: Model, source: Any, names: tuple[str, ...], batch_size: int) -> None:
    """Refuse a dissection whose batches cannot fit in memory (:mod:`lucidax._memory`): a
    batch through the model (as a feature extraction), its units' maps upsampled to the mask
    size (float and mask, 8 bytes a value) and the batch's concept masks (4 bytes a value)."""
    from lucidax._memory import check_memory, estimate_extraction

    mh, mw = (int(v) for v in source.mask_size)
    need = estimate_extraction(model, names, batch=batch_size, side=max(mh, mw))
    if need is None:
        return
    units = sum(model.layers[n].channels for n in names)
    need += batch_size * mh * mw * (8 * units + 4 * len(source.concepts))
    check_memory(need, f"dissecting {len(names)} layer{'s' * (len(names) != 1)} with masks "
                       f"of {mh}x{mw} px ({batch_size} images at once)",
                 hint="lower --batch-size or --size, or dissect fewer layers")


def dissect(
    model: Model,
    source: Any,
    *,
    layers: str | Sequence[str] = "all",
    params: Any = None,
    quantile: float = DEFAULT_QUANTILE,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    quantile_passes: int = 3,
    batch_size: int = 32,
    progress: bool = False,
    memory_check: bool = True,
) -> Dissection:
    """Dissect ``layers`` of ``model`` against the concepts of ``source`` (see module docs).

    Args:
      model: any :class:`~lucidax.models.Model` (zoo, starter, ``wrap``-ped).
      source: :class:`StarterConcepts`, :class:`FolderConcepts`, :class:`ArrayConcepts` (or
        anything with ``n``, ``concepts``, ``categories``, ``mask_size``, ``description``
        and ``batches(batch_size, masks=bool)``).
      layers: ``"all"`` (every conv layer except ``*_pre_relu``; dense layers are skipped and
        listed in ``skipped_layers``) or names; naming a dense layer is an error.
      params: parameters (default ``model.params``).
      quantile: top quantile of activations that forms a unit's mask (0.005 = 0.5%).
      iou_threshold: a unit is a detector of its best concept when IoU >= this.
      quantile_passes: 3 (exact thresholds), 2 (relative error < 2^-15) or 1 (< 2^-3).
      batch_size: images per jitted step (the last batch is zero-padded, never counted).
      memory_check: raise :class:`lucidax._memory.InsufficientMemoryError` (a ValueError)
        before any pass over the data when a batch's estimated memory need exceeds the
        available memory; False: try anyway.
    """
    _check_quantile(quantile)
    if not (isinstance(iou_threshold, int | float) and 0.0 <= iou_threshold <= 1.0):
        raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    names, skipped = _resolve_layers(model, layers)
    params = model.params if params is None else params
    if memory_check:
        _check_memory(model, source, names, batch_size)
    thresholds, minimum = _thresholds(model, source, names, params, quantile, quantile_passes,
                                      batch_size, progress)
    # the exact threshold equals the minimum only at the unit's resting level; with fewer
    # passes the lower bin edge can sit just below it
    strict = {n: thresholds[n] <= minimum[n] if quantile_passes == 3 else
              _same_bin(thresholds[n], minimum[n], quantile_passes) for n in names}
    inter, union, fired, pixels = _count_pass(model, source, names, thresholds, strict, params,
                                              batch_size, progress)
    units, ious = [], {}
    for n in names:
        iou = _safe_iou(inter[n], union[n])
        ious[n] = iou
        best = np.argmax(iou, axis=1)
        for k, c in enumerate(best):
            v = float(iou[k, c])
            units.append(UnitDissection(
                layer=n, unit=k, concept=source.concepts[c], category=source.categories[c],
                iou=v, threshold=float(thresholds[n][k]), detector=bool(v >= iou_threshold),
                coverage=float(fired[n][k]) / max(pixels, 1)))
    return Dissection(
        model=model.name, layers=names, concepts=tuple(source.concepts),
        categories=tuple(source.categories), units=tuple(units), iou=ious,
        thresholds=thresholds, quantile=float(quantile), iou_threshold=float(iou_threshold),
        quantile_passes=int(quantile_passes), n_images=int(source.n),
        data=str(source.description), skipped_layers=skipped)


# ----------------------------------------------------------------------------------------------
# files, plot, table
# ----------------------------------------------------------------------------------------------
_CSV_COLUMNS = ("layer", "unit", "concept", "category", "iou", "threshold", "detector",
                "coverage")


def plot_dissection(result: Dissection, path: str | os.PathLike, *,
                    title: str | None = None) -> str:
    """Stacked bars: detector units per layer, one segment per concept, coloured by category
    (:func:`concept_colors`: a colour family per category, a shade of it per concept), segments
    tall enough labelled with their concept's value; the legend lists the categories, each
    with its concepts.

    The format follows the extension (.png, .svg, .pdf); Agg canvas, atomic write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    summary = result.summary()
    order = [c for c in result.concepts if any(c in summary[n] for n in result.layers)]
    cat = dict(zip(result.concepts, result.categories, strict=True))
    order.sort(key=lambda c: result.categories.index(cat[c]))  # grouped by category
    fig = Figure(figsize=(max(5.5, 0.9 * len(result.layers) + 4.0), 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(result.layers))
    bottom = np.zeros(len(x))
    cmap, family = concept_colors(result.concepts, result.categories)
    top = max(1.0, max((sum(d.values()) for d in summary.values()), default=0))
    for c in order:
        h = np.asarray([summary[n].get(c, 0) for n in result.layers], float)
        ax.bar(x, h, bottom=bottom, color=cmap[c], edgecolor="0.2", linewidth=0.4)
        for xi in np.flatnonzero(h >= 0.045 * top):  # tall enough: name the value
            ink = "white" if _luminance(cmap[c]) < 0.5 else "black"
            ax.text(xi, bottom[xi] + h[xi] / 2, _concept_value(c), ha="center", va="center",
                    fontsize=6, color=ink, clip_on=True)
        bottom += h
    totals = [len(result.thresholds[n]) for n in result.layers]
    for xi, (b, t) in enumerate(zip(bottom, totals, strict=True)):
        ax.text(xi, b, f"{int(b)}/{t}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(result.layers, rotation=30, ha="right")
    ax.set_xlabel("layer (input \u2192 output)")
    ax.set_ylabel("detector units")
    ax.set_ylim(0, max(1.0, float(bottom.max()) * 1.15))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or (f"{result.model}: detectors (IoU \u2265 {result.iou_threshold:g}, "
                           f"top {100 * result.quantile:g}%) on {result.n_images} images"),
                 fontsize=9)
    if order:
        from matplotlib.patches import Patch

        handles, labels, heads = [], [], []
        for category in dict.fromkeys(cat[c] for c in order):
            heads.append(len(labels))
            handles.append(Patch(color=family[category], ec="0.2", lw=0.4))
            labels.append(category)
            for c in (c for c in order if cat[c] == category):
                handles.append(Patch(color=cmap[c], ec="0.2", lw=0.4))
                labels.append("   " + (_concept_value(c) if c != category else c))
        leg = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        fontsize=7, frameon=False, handlelength=1.4,
                        ncol=1 + (len(labels) > 24))
        for i in heads:  # the categories in bold, their concepts indented under them
            leg.get_texts()[i].set_fontweight("bold")
    else:
        ax.text(0.5, 0.5, "no detectors", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    save_plot(path, fig)
    return path


#: One colour family (a sequential matplotlib colormap) per category, in category order.
_CATEGORY_FAMILIES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "YlOrBr", "PuRd",
                      "BuGn", "RdPu", "YlGn")
#: Colour concepts are greys: no hue of theirs suggests a colour (a green "red").
_NEUTRAL_CATEGORIES = ("color", "colour")


def _concept_value(concept: str) -> str:
    """``"color=red"`` -> ``"red"``; a name without ``=`` stays as it is."""
    return concept.split("=", 1)[1] if "=" in concept else concept


def _luminance(rgba: Any) -> float:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def concept_colors(concepts: Sequence[str], categories: Sequence[str]
                   ) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """``({concept: rgba}, {category: rgba})``: colours by category, so concepts of different
    categories never look alike (``digit=3`` is an orange, ``color=red`` a grey): each
    category gets its own colour family (:data:`_CATEGORY_FAMILIES`, in the order the
    categories first appear; cycled past ten; greys for a ``color``/``colour`` category, whose
    values name colours) and its concepts shades of it, light and dark alternating so
    neighbours in a stack differ; the category's own colour is its family's middle shade.
    Depends only on the concept list, so a concept keeps its colour whichever units detect
    it."""
    from matplotlib import colormaps

    concepts, categories = list(concepts), list(categories)
    if len(concepts) != len(categories):
        raise ValueError(f"{len(concepts)} concepts but {len(categories)} categories")
    members: dict[str, list[str]] = {}
    for c, k in zip(concepts, categories, strict=True):
        members.setdefault(k, []).append(c)
    colors: dict[str, tuple] = {}
    family: dict[str, tuple] = {}
    i = 0
    for k, cs in members.items():
        if k.lower() in _NEUTRAL_CATEGORIES:
            cm = colormaps["Greys"]
        else:
            cm = colormaps[_CATEGORY_FAMILIES[i % len(_CATEGORY_FAMILIES)]]
            i += 1
        family[k] = tuple(float(v) for v in cm(0.65))
        n = len(cs)
        shades = np.linspace(0.35, 0.9, n) if n > 1 else np.array([0.65])
        half = (n + 1) // 2  # interleave the lighter and the darker half
        order = [j // 2 if j % 2 == 0 else half + j // 2 for j in range(n)]
        for c, j in zip(cs, order, strict=True):
            colors[c] = tuple(float(v) for v in cm(float(shades[j])))
    return colors, family


def write_dissection(result: Dissection, out: str | os.PathLike) -> dict[str, str]:
    """results.json (settings, summary, every unit), units.csv, iou.npz (every IoU and
    threshold), summary.png/.svg. Returns ``{kind: path}``."""
    out = os.fspath(out)
    paths = {k: os.path.join(out, f) for k, f in (
        ("json", "results.json"), ("csv", "units.csv"), ("npz", "iou.npz"),
        ("png", "summary.png"), ("svg", "summary.svg"))}
    save_json(paths["json"], result.to_dict())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_CSV_COLUMNS)
    for u in result.units:
        w.writerow([u.layer, u.unit, u.concept, u.category, f"{u.iou:.6f}",
                    f"{u.threshold:.9g}", int(u.detector), f"{u.coverage:.6f}"])
    atomic_write(paths["csv"], buf.getvalue().encode())
    arrays = {f"iou/{n}": result.iou[n] for n in result.layers}
    arrays.update({f"threshold/{n}": result.thresholds[n] for n in result.layers})
    arrays["concepts"] = np.asarray(result.concepts)
    nbuf = io.BytesIO()
    np.savez(nbuf, **arrays)
    atomic_write(paths["npz"], nbuf.getvalue())
    plot_dissection(result, paths["png"])
    plot_dissection(result, paths["svg"])
    return paths


def format_dissection(result: Dissection, *, top: int = 10) -> str:
    """Plain-text summary: detectors per layer by concept, then the best units."""
    lines = [f"{'layer':<16} {'detectors':>9}  concepts (units)"]
    lines.append("-" * 60)
    summary = result.summary()
    for n in result.layers:
        k = len(result.thresholds[n])
        d = summary[n]
        text = ", ".join(f"{c} ({v})" for c, v in d.items()) or "-"
        lines.append(f"{n[:16]:<16} {sum(d.values()):>4}/{k:<4}  {text}")
    best = result.detectors()[:top]
    if best:
        lines.append("")
        lines.append(f"top {len(best)} units:")
        for u in best:
            lines.append(f"  {u.layer}:{u.unit:<4} {u.concept:<20} IoU {u.iou:.3f}")
    for n, why in result.skipped_layers.items():
        lines.append(f"skipped {n}: {why}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the CLI runner
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class DissectRun:
    """What :func:`run_dissect_cli` produced: the dissection, its files, a printable table."""

    result: Dissection
    out: str
    files: dict[str, str]
    table: str


def _source(data: str | os.PathLike, model: Model, n: int, seed: int, size: int | None):
    spec = os.fspath(data)
    split = starter_data.builtin_split(spec)
    if split is not None:
        return StarterConcepts(n, split=split, seed=seed)
    if not os.path.isdir(spec):
        raise FileNotFoundError(
            f"data not found: {spec!r} (a folder with images/ and masks/<concept>/, or one of "
            f"{', '.join(BUILTIN_DISSECT_DATA)})")
    side = size or model.input_spec.side or 224
    return FolderConcepts(spec, size=side, channels=model.input_spec.channels)


def run_dissect_cli(
    model: str | Model = "starter",
    *,
    weights: str | os.PathLike | None = None,
    layers: str | Sequence[str] = "all",
    data: str | os.PathLike = "auto",
    n: int = 2000,
    seed: int = 0,
    quantile: float = DEFAULT_QUANTILE,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    quantile_passes: int = 3,
    size: int | None = None,
    out: str | os.PathLike = "dissect-out",
    batch_size: int = 32,
    progress: bool = True,
    memory_check: bool = True,
) -> DissectRun:
    """``lucidax dissect --model M --layers L --data D --out O``.

    Args:
      model: registered model name or a Model.
      weights: checkpoint path (None: the model's default weights).
      layers: ``"all"`` (every conv layer except ``*_pre_relu``) or comma-separated names.
      data: ``"auto"`` (``builtin:starter`` for the starter model; any other model needs a
        folder: ValueError, see :func:`lucidax.models.photos.resolve_auto`),
        ``builtin:starter[:train|:test]`` (default split test) or a folder ``images/`` +
        ``masks/<concept>/`` (see module docs).
      n, seed: number of images and seed of the builtin data.
      quantile, iou_threshold, quantile_passes: see :func:`dissect`.
      size: image side for folder data (default: the model's input side).
      out: output folder (results.json, units.csv, iou.npz, summary.png/.svg).
      memory_check: see :func:`dissect` (False: ``--no-memory-check``).
    """
    from lucidax._files import check_int, prepare_out_dir
    from lucidax.models import photos

    # Bad input fails here, in one line, before the model is loaded.
    check_int(n, "--n")
    check_int(batch_size, "--batch-size")
    check_int(size, "--size", optional=True)
    if not (isinstance(quantile, int | float) and 0.0 < float(quantile) < 1.0):
        raise ValueError(f"--quantile must be in (0, 1) (0.005 = top 0.5%); got {quantile!r}")
    if not (isinstance(iou_threshold, int | float) and 0.0 <= iou_threshold <= 1.0):
        raise ValueError(f"--iou-threshold must be in [0, 1]; got {iou_threshold!r}")
    prepare_out_dir(out)
    data = photos.resolve_auto(data, model, "dissect")  # before loading: a non-starter fails
    if isinstance(model, str):
        import lucidax.models as lm

        model = lm.load(model, weights)
    elif weights is not None:
        raise ValueError("weights= is only used with a model name")
    source = _source(data, model, n, seed, size)
    result = dissect(model, source, layers=layers, quantile=quantile,
                     iou_threshold=iou_threshold, quantile_passes=quantile_passes,
                     batch_size=batch_size, progress=progress, memory_check=memory_check)
    files = write_dissection(result, out)
    return DissectRun(result, os.fspath(out), files, format_dissection(result))
