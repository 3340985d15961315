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
    """Every spatial position of ``layer`` for every image, as the rows to factor.

    Streamed through :func:`lucidax.probes.extract` (one jitted forward, bounded memory, the
    on-disk cache of ``cache_dir``: a second call reads the file instead of running the model;
    the rows are then a read-only memory map).

    Args:
      model: the network (:func:`lucidax.models.load`).
      params: its parameters (``model.params``).
      images: ``[N, H, W, C]`` in [0, 1] (or uint8), square, at the side the model should
        see.
      layer: a conv layer (``[h, w, C]`` activations) or a dense one (``[C]``).
      batch_size: images per forward pass.
      cache_dir: folder of the activation cache (None: no cache).
      data_key: the cache's name for ``images`` (None: a hash of the images).
      progress: show a tqdm progress bar.
      memory_check: refuse an extraction that cannot fit in memory.

    Returns:
      ``(rows, grid)``: float32 ``rows [N * h * w, C]`` (image-major: the ``h * w``
      positions of image 0 first) and the grid ``(h, w)`` (``(1, 1)`` for a dense layer).

    Raises:
      ValueError: ``images`` are not ``[N, H, W, C]``, or the layer's activation map is not
        square or not ``[h, w, C]`` / ``[C]``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import layer_activations
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
      >>> rows, grid = layer_activations(model, model.params, images, "conv5", progress=False)
      >>> rows.shape, grid
      ((64, 128), (4, 4))
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
    """Each concept's top natural examples (what :func:`top_examples` returns); for each
    concept the images are ordered by decreasing value, one position per image.

    Attributes:
      image: int64 ``[K, top]``: the image indices.
      position: int64 ``[K, top, 2]``: ``(y, x)`` of the largest code in the activation grid.
      value: float32 ``[K, top]``: the code there.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import top_examples
      >>> maps = np.zeros((5, 4, 4, 2), np.float32)  # codes [N, h, w, K]
      >>> maps[3, 1, 2, 0] = 7.0
      >>> ex = top_examples(maps, top=2)
      >>> ex.image.shape, ex.position.shape, ex.value.shape
      ((2, 2), (2, 2, 2), (2, 2))
      >>> int(ex.image[0, 0]), ex.position[0, 0].tolist(), float(ex.value[0, 0])
      (3, [1, 2], 7.0)
    """

    image: np.ndarray
    position: np.ndarray
    value: np.ndarray


def top_examples(codes: Any, top: int = 8) -> ConceptExamples:
    """The ``top`` images where each concept's code is largest, and the position of that
    maximum in each.

    Args:
      codes: code maps ``[N, h, w, K]`` (:func:`codes` reshaped to the activation grid).
      top: images per concept (clipped to ``1..N``).

    Returns:
      a :class:`ConceptExamples` (``image [K, top]``, ``position [K, top, 2]``, ``value [K,
      top]``).

    Raises:
      ValueError: ``codes`` is not 4-D.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import codes, layer_activations, nmf, top_examples
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
      >>> rows, grid = layer_activations(model, model.params, images, "conv5", progress=False)
      >>> fact = nmf(rows, 3, iterations=20, progress=False)
      >>> ex = top_examples(codes(fact, rows).reshape(4, *grid, 3), top=2)
      >>> ex.image.shape, ex.position.shape
      ((3, 2), (3, 2, 2))
    """
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
    """The square region of ``image`` around an activation cell, resized.

    Args:
      image: ``[H, W, C]`` in [0, 1] (or uint8, scaled to [0, 1]).
      position: ``(y, x)`` of the cell in the activation grid (e.g.
        ``ConceptExamples.position[k, i]``).
      grid: the activation grid ``(h, w)`` of :func:`layer_activations`.
      context: width of the crop in activation cells (clipped to the image).
      side: side of the returned crop in pixels.

    Returns:
      float32 ``[side, side, C]``: the crop centred on the cell.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import crop_at
      >>> image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
      >>> crop_at(image, (1, 2), (4, 4), context=2.0, side=32).shape
      (32, 32, 3)
    """
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
    """Code maps of one concept upsampled (bilinear) to images of where it is present.

    Args:
      codes: code maps ``[n, h, w]`` of one concept (e.g. ``maps[..., k]`` of code maps
        ``[N, h, w, K]``).
      side: side of the heat-maps in pixels (that of the images, to overlay them).

    Returns:
      float32 ``[n, side, side]`` in [0, 1], all scaled by the largest value of the batch
      (so maps of one concept compare); all zeros when the codes are.

    Raises:
      ValueError: ``codes`` is not 3-D.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import heatmaps
      >>> maps = np.random.default_rng(0).random((2, 4, 4), dtype=np.float32)
      >>> hm = heatmaps(maps, 64)
      >>> hm.shape, float(hm.max()), bool(hm.min() >= 0)
      ((2, 64, 64), 1.0, True)
    """
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
    """How strongly each image drives each concept direction.

    For each image, the mean over positions of ``layer``'s activation vectors dotted with
    each direction -- what :func:`lucidax.visualize.direction` maximizes (the mean is linear,
    so it is the mean activation dotted with ``W``). Compare a render's value with natural
    images' ones.

    Args:
      model: the network.
      params: its parameters.
      images: ``[N, H, W, C]`` in [0, 1] (or uint8).
      layer: the layer of the directions.
      W: concept directions ``[K, C]`` (``C`` = channels of ``layer``).
      batch_size: images per forward pass.
      progress: show a tqdm progress bar.

    Returns:
      float32 ``[N, K]``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import direction_activations
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
      >>> W = np.eye(3, 128, dtype=np.float32)  # channels 0, 1, 2 of conv5
      >>> direction_activations(model, model.params, images, "conv5", W).shape
      (4, 3)
    """
    feats = extract(model, params, np.asarray(images), layer, reduce="mean",
                    batch_size=batch_size, progress=progress)
    return np.asarray(feats[layer], np.float32) @ np.asarray(W, np.float32).T


# ----------------------------------------------------------------------------------------------
# renders
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConceptRenders:
    """Feature visualizations of the concept directions (what :func:`render_concepts`
    returns).

    Attributes:
      images: float32 ``[K, S, S, C]``: image ``k`` maximizes concept ``k``.
      objective: ``[K]``: the direction objective at the last step.
      finite: bool ``[K]``: whether each render stayed finite.
      seconds: wall time of the whole batched render, compilation included.
      steps: optimization steps run.
      size: the side ``S`` of the renders in pixels.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import render_concepts
      >>> model = lm.load("starter")
      >>> W = np.eye(3, 128, dtype=np.float32)  # 3 directions of conv5
      >>> r = render_concepts(model, model.params, "conv5", W, steps=64, size=32, progress=False)
      >>> r.images.shape, r.objective.shape, bool(r.finite.all()), r.size
      ((3, 32, 32, 3), (3,), True, 32)
    """

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
    """Render every concept direction of ``layer``, image ``k`` maximizing concept ``k``.

    One batched :func:`lucidax.visualize.render` with the
    :func:`lucidax.visualize.direction` objective for all ``K`` directions (or
    ``batch_size`` at a time).

    Args:
      model: the network.
      params: its parameters.
      layer: the layer of the directions.
      W: concept directions ``[K, C]`` (``C`` = channels of ``layer``), e.g.
        ``Factorization.W``.
      steps: optimization steps.
      size: side of the renders in pixels.
      model_side: side the model sees (None: ``size``); see :func:`lucidax.visualize.render`.
      param: parameterization, a key of ``lucidax.visualize.PARAMS`` (``"image"``,
        ``"fft"``, ``"pixel"``, ...).
      init_sd: std of the random start.
      seed: seed of the random start.
      batch_size: directions rendered per program (None: all ``K`` at once).
      progress: show a tqdm progress bar.
      memory_check: refuse a render that cannot fit in memory.

    Returns:
      a :class:`ConceptRenders` (``images [K, size, size, C]``).

    Raises:
      ValueError: an unknown ``param``, or ``W`` not ``[K, C]`` for ``layer``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import render_concepts
      >>> model = lm.load("starter")
      >>> W = np.eye(2, 128, dtype=np.float32)  # 2 directions of conv5
      >>> render_concepts(model, model.params, "conv5", W, size=32, progress=False).images.shape
      (2, 32, 32, 3)
    """
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
