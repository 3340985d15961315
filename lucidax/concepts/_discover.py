"""From a factorization to what a reader sees of each concept: its top image crops, where it
appears in an image (a heat-map), a feature visualization of its direction, and how strongly
that render drives the direction compared with natural images.

Rows of the factored matrix are the spatial positions of the images (``[N, h, w, C]`` ->
``[N * h * w, C]``), so each position of each image has a code per concept. A concept's top
crops are the image regions around the positions where its code is largest (one position per
image, the images with the largest such code first); a crop covers ``context`` activation
cells around the position, which for EfficientNet-Lite0's ``head`` (7 x 7 at 224 px) is about
a 96 px square: roughly the region that drives that position most.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from lucidax._files import resize_np
from lucidax.models import Model
from lucidax.probes import extract
from lucidax.visualize import PARAMS, direction, render

__all__ = [
    "ConceptExamples",
    "ConceptRenders",
    "crop_at",
    "direction_activations",
    "heatmaps",
    "image_means",
    "layer_activations",
    "render_concepts",
    "top_examples",
]


def _grid_side(model: Model, layer: str, side: int) -> tuple[int, int, int] | None:
    """``(h, w, C)`` of a conv layer at input ``side``; None for a dense layer."""
    shape = model.layer_shape(layer, side)
    if len(shape) == 1:
        return None
    if len(shape) != 3:
        raise ValueError(f"layer {layer!r} has activations of shape {shape}: concepts need a "
                         "conv layer [h, w, C] or a dense layer [C]")
    return int(shape[0]), int(shape[1]), int(shape[2])


def layer_activations(
    model: Model, params: Any, images: Any, layer: str, *, batch_size: int = 32,
    cache_dir: str | None = None, data_key: str | None = None, progress: bool = True,
    memory_check: bool = True,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Every spatial position of ``layer`` for every image, as rows ``[N * h * w, C]``, and the
    grid ``(h, w)`` (``(1, 1)`` for a dense layer).

    Streamed through :func:`lucidax.probes.extract` (one jitted forward, bounded memory, the
    on-disk cache of ``cache_dir``: a second call reads the file instead of running the model;
    the rows are then a read-only memory map). ``images``: ``[N, H, W, C]`` in [0, 1] (or
    uint8), at the side the model should see.
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C]; got shape {arr.shape}")
    side = int(arr.shape[1])
    grid = _grid_side(model, layer, side)
    if grid is not None and grid[0] != grid[1]:
        raise ValueError(f"layer {layer!r} is {grid[0]} x {grid[1]} at {side} px: concepts "
                         "need square activation maps (give square images)")
    reduce = ("grid", grid[0]) if grid is not None else "mean"
    feats = extract(model, params, arr, layer, reduce=reduce, batch_size=batch_size,
                    cache_dir=cache_dir, data_key=data_key, progress=progress,
                    memory_check=memory_check)
    rows = feats[layer]
    if grid is None:
        return rows, (1, 1)
    h, w, c = grid
    return rows.reshape(len(rows) * h * w, c), (h, w)


# ----------------------------------------------------------------------------------------------
# top examples, crops and heat-maps
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConceptExamples:
    """Each concept's top natural examples: ``image [K, top]`` (image index), ``position
    [K, top, 2]`` (``(y, x)`` in the activation grid), ``value [K, top]`` (the code there);
    images ordered by decreasing value, one position per image."""

    image: np.ndarray
    position: np.ndarray
    value: np.ndarray


def top_examples(codes: Any, top: int = 8) -> ConceptExamples:
    """The ``top`` images where each concept's code is largest (``codes``: ``[N, h, w, K]``)
    and the position of that maximum in each."""
    c = np.asarray(codes, np.float32)
    if c.ndim != 4:
        raise ValueError(f"codes must be [N, h, w, K]; got shape {c.shape}")
    n, h, w, k = c.shape
    flat = c.reshape(n, h * w, k)
    where = flat.argmax(axis=1)  # [N, K]
    best = np.take_along_axis(flat, where[:, None, :], axis=1)[:, 0, :]  # [N, K]
    top = max(1, min(int(top), n))
    order = np.argsort(-best, axis=0, kind="stable")[:top].T  # [K, top]
    pos = np.take_along_axis(where.T, order, axis=1)  # [K, top]
    value = np.take_along_axis(best.T, order, axis=1)
    return ConceptExamples(order.astype(np.int64),
                           np.stack([pos // w, pos % w], axis=-1).astype(np.int64),
                           value.astype(np.float32))


def crop_at(image: Any, position: Sequence[int], grid: tuple[int, int], *,
            context: float = 3.0, side: int = 96) -> np.ndarray:
    """The square region of ``image`` ``[H, W, C]`` centred on activation cell ``position``
    (``(y, x)`` of a ``grid`` ``(h, w)``), ``context`` cells wide (clipped to the image),
    resized to ``side`` px."""
    img = np.asarray(image)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    big_h, big_w = img.shape[:2]
    cell = max(big_h / grid[0], big_w / grid[1])
    size = int(round(min(max(big_h, big_w), context * cell)))
    size = max(1, min(size, big_h, big_w))
    cy = (position[0] + 0.5) * big_h / grid[0]
    cx = (position[1] + 0.5) * big_w / grid[1]
    top = int(np.clip(round(cy - size / 2), 0, big_h - size))
    left = int(np.clip(round(cx - size / 2), 0, big_w - size))
    return resize_np(img[top : top + size, left : left + size], side)


def heatmaps(codes: Any, side: int) -> np.ndarray:
    """Code maps ``[n, h, w]`` upsampled (bilinear) to ``[n, side, side]`` images of the
    concept's presence, each scaled to [0, 1] by the largest value of the batch (so maps of
    one concept compare)."""
    c = np.asarray(codes, np.float32)
    if c.ndim != 3:
        raise ValueError(f"code maps must be [n, h, w]; got shape {c.shape}")
    up = np.asarray(jax.image.resize(c, (len(c), side, side), "linear"))
    peak = float(np.max(np.abs(up))) if up.size else 0.0
    return np.clip(up / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(up)


def image_means(rows: Any, n_images: int, *, chunk: int = 256) -> np.ndarray:
    """``float32 [N, C]``: each image's activation averaged over its positions, from the rows
    ``[N * h * w, C]`` of :func:`layer_activations` (read ``chunk`` images at a time, so a
    memory-mapped cache is never loaded whole)."""
    r = np.asarray(rows)
    per = r.reshape(n_images, -1, r.shape[-1])
    return np.concatenate([per[i : i + chunk].mean(axis=1, dtype=np.float64)
                           for i in range(0, n_images, chunk)]).astype(np.float32)


def direction_activations(model: Model, params: Any, images: Any, layer: str, W: Any, *,
                          batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """``[N, K]``: for each image, the mean over positions of ``layer``'s activation vectors
    dotted with each concept direction ``W [K, C]`` -- what :func:`lucidax.visualize.direction`
    maximizes (the mean is linear, so it is the mean activation dotted with ``W``)."""
    feats = extract(model, params, np.asarray(images), layer, reduce="mean",
                    batch_size=batch_size, progress=progress)
    return np.asarray(feats[layer], np.float32) @ np.asarray(W, np.float32).T


# ----------------------------------------------------------------------------------------------
# renders
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConceptRenders:
    """Feature visualizations of the concept directions: ``images [K, S, S, C]``,
    ``objective [K]`` (the direction objective at the last step), ``finite [K]``,
    ``seconds`` (the whole batched render, compilation included), ``steps``, ``size``."""

    images: np.ndarray
    objective: np.ndarray
    finite: np.ndarray
    seconds: float
    steps: int
    size: int


def render_concepts(
    model: Model, params: Any, layer: str, W: Any, *, steps: int = 128, size: int = 128,
    model_side: int | None = None, param: str = "image", init_sd: float = 0.01,
    seed: int = 0, batch_size: int | None = None, progress: bool = True,
    memory_check: bool = True,
) -> ConceptRenders:
    """Render every concept direction ``W [K, C]`` of ``layer`` with
    :func:`lucidax.visualize.render` and the ``direction`` objective, image ``k`` maximizing
    concept ``k``: one batched program for all ``K`` (or ``batch_size`` at a time)."""
    if param not in PARAMS:
        raise ValueError(f"unknown param {param!r}; valid: {', '.join(PARAMS)}")
    vecs = np.asarray(W, np.float32)
    if vecs.ndim != 2 or vecs.shape[1] != model.channels(layer):
        raise ValueError(f"W must be [K, {model.channels(layer)}] for layer {layer!r}; got "
                         f"shape {vecs.shape}")
    k = len(vecs)
    step = k if batch_size is None else max(1, int(batch_size))
    images, objective, finite, seconds = [], [], [], 0.0
    for start in range(0, k, step):
        part = vecs[start : start + step]
        res = render(model, params, direction(layer, part), param=PARAMS[param](init_sd),
                     steps=steps, size=size, model_side=model_side, key=jax.random.key(seed),
                     unit_ids=list(range(start, start + len(part))), progress=progress,
                     memory_check=memory_check)
        images.append(res.images)
        objective.append(res.objective_values)
        finite.append(res.finite)
        seconds += res.seconds
    return ConceptRenders(np.concatenate(images), np.concatenate(objective),
                          np.concatenate(finite), seconds, int(res.loss.shape[0]), int(size))
