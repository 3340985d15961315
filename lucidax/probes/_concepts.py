"""Concept sources of network dissection: images with per-pixel concept masks (the builtin
starter composites, a folder of images and masks, or arrays); see
:mod:`lucidax.probes._dissect` for the layout of a folder and how images count."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lucidax._files import IMAGE_EXTENSIONS
from lucidax.models import suggest


# ----------------------------------------------------------------------------------------------
# concept sources
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ConceptBatch:
    """One batch of a concept source.

    Attributes:
      images: float32 ``[B, H, W, C]`` in the model's value range.
      masks: bool ``[B, Hm, Wm, n_concepts]`` (None when masks were not asked for).
      labeled: bool ``[B, n_concepts]``: image b counts for concept c (see :func:`dissect`).

    Example:
      >>> from lucidax.probes import StarterConcepts
      >>> batch = next(iter(StarterConcepts(n=4).batches(4)))
      >>> batch.images.shape, batch.masks.shape, batch.labeled.shape
      ((4, 64, 64, 3), (4, 64, 64, 27), (4, 27))
    """

    images: np.ndarray
    masks: np.ndarray | None
    labeled: np.ndarray | None


def concept_category(concept: str) -> str:
    """``"color=red"`` -> ``"color"``; a name without ``=`` is its own category.

    Args:
      concept: a concept name.

    Example:
      >>> from lucidax.probes import concept_category
      >>> concept_category("color=red"), concept_category("sky")
      ('color', 'sky')
    """
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

      description: a readable name of the source (for reports).

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import ArrayConcepts
      >>> images = np.zeros((4, 32, 32, 3), np.float32)
      >>> masks = np.zeros((4, 32, 32, 2), bool); masks[:, :16, :, 0] = True
      >>> source = ArrayConcepts(images, masks, ["sky", "grass"])
      >>> source.concepts, source.n
      (('sky', 'grass'), 4)
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

    Example:
      >>> from lucidax.probes import starter_concepts
      >>> concepts, categories = starter_concepts()
      >>> len(concepts), sorted(set(categories))
      (27, ['background', 'color', 'digit', 'stroke'])
    """
    from lucidax.models.starter import data as sd

    concepts = ["stroke"]
    concepts += [f"digit={d}" for d in sd.LABEL_NAMES["digit"]]
    concepts += [f"color={c}" for c in sd.COLORS]
    concepts += [f"background={b}" for b in sd.BACKGROUNDS]
    return tuple(concepts), tuple(concept_category(c) for c in concepts)


def starter_concept_masks(data: Any) -> np.ndarray:
    """bool ``[N, 64, 64, 27]`` masks of :func:`starter_concepts` for a ``StarterData``.

    Args:
      data: a starter dataset (``lucidax.models.starter.dataset(n)``).

    Example:
      >>> from lucidax.models import starter
      >>> from lucidax.probes import starter_concept_masks
      >>> starter_concept_masks(starter.dataset(3)).shape
      (3, 64, 64, 27)
    """
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

    Args:
      n: number of images.
      split: ``"train"`` or ``"test"``.
      seed: the draw.
      chunk: images generated at once.

    Example:
      >>> from lucidax.probes import StarterConcepts
      >>> source = StarterConcepts(n=8)
      >>> source.n, len(source.concepts), source.concepts[:2]
      (8, 27, ('stroke', 'digit=0'))
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
    """``root/images/<name>.<ext>`` + ``root/masks/<concept>/<name>.<ext>`` (see
    :func:`dissect`).

    Args:
      root: the folder (layout above; masks are images, non-zero where the concept is).
      size: side the images and masks are resized to.
      channels: image channels.

    Example:
      >>> import numpy as np
      >>> import imageio.v3 as iio
      >>> from pathlib import Path
      >>> from lucidax.probes import FolderConcepts
      >>> Path("concepts/images").mkdir(parents=True)
      >>> Path("concepts/masks/sky").mkdir(parents=True)
      >>> iio.imwrite("concepts/images/a.png", np.zeros((16, 16, 3), np.uint8))
      >>> iio.imwrite("concepts/masks/sky/a.png", np.full((16, 16), 255, np.uint8))
      >>> source = FolderConcepts("concepts", size=16)
      >>> source.concepts, source.n
      (('sky',), 1)
    """

    def __init__(self, root: str | os.PathLike, *, size: int, channels: int = 3):
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

        from lucidax._files import UnreadableImageError, error_reason, resize_np

        try:
            arr = np.asarray(iio.imread(path, plugin="pillow"))
        except Exception as e:  # noqa: BLE001 - any decoder failure: one line naming the file
            raise UnreadableImageError(path, error_reason(e)) from None
        if arr.ndim == 4:
            arr = arr[0]
        if arr.ndim == 3:
            arr = arr.any(axis=-1) if arr.shape[-1] not in (2, 4) else arr[..., :-1].any(-1)
        m = resize_np((arr > 0).astype(np.float32)[..., None], self.size)[..., 0]
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
