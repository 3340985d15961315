"""Dataset examples for units: one streaming top-k pass, receptive fields, crops.

A unit's activation on an image is the maximum over space of its channel (dense layers: the
value itself); the same statistic is used for the renders, so "render / dataset max" compares
like with like.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax._batching import pad_batch, valid_mask
from lucidax.models.fastgrad import apply as fast_apply

__all__ = [
    "ReceptiveField",
    "TopK",
    "example_tile",
    "receptive_field",
    "receptive_fields",
    "top_k_examples",
    "unit_activation",
]


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Where a layer position looks in the input, measured numerically.

    Attributes:
      input_side: input side in px the field was measured at.
      shape: the layer's spatial shape ``(H, W)`` (``(1, 1)`` for dense layers).
      center: the probed position ``(i, j)``.
      box: ``(y0, y1, x0, x1)`` (end exclusive) of input pixels with non-zero gradient for the
        probed position.
      stride: input pixels per layer position ``(sy, sx)``.
      size: ``(height, width)`` of ``box``.
      full: True when one position sees (nearly) the whole input.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.gallery import receptive_field
      >>> rf = receptive_field(lm.load("starter"), "conv3")
      >>> rf.shape, rf.stride, rf.size, rf.full
      ((16, 16), (4.0, 4.0), (18, 18), False)
      >>> rf.box_at(0, 0)  # the field of the top-left position (past the border)
      (-7, 11, -7, 11)
    """

    input_side: int
    shape: tuple[int, int]
    center: tuple[int, int]
    box: tuple[int, int, int, int]
    stride: tuple[float, float]

    @property
    def size(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.box
        return (y1 - y0, x1 - x0)

    @property
    def full(self) -> bool:
        """True when one position sees nearly the whole input (90%+ of each side); crops
        are then pointless and the whole image is shown."""
        h, w = self.size
        return min(h, w) >= 0.9 * self.input_side

    def box_at(self, i: int, j: int) -> tuple[int, int, int, int]:
        """The field of position ``(i, j)`` (may extend past the image border)."""
        dy = int(round((i - self.center[0]) * self.stride[0]))
        dx = int(round((j - self.center[1]) * self.stride[1]))
        y0, y1, x0, x1 = self.box
        return (y0 + dy, y1 + dy, x0 + dx, x1 + dx)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_side": self.input_side,
            "shape": list(self.shape),
            "center": list(self.center),
            "box": list(self.box),
            "stride": list(self.stride),
            "size": list(self.size),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReceptiveField:
        return cls(
            int(d["input_side"]),
            tuple(d["shape"]),
            tuple(d["center"]),
            tuple(d["box"]),
            tuple(float(s) for s in d["stride"]),
        )


def _input_side(model) -> int:
    return int(model.input_spec.side or 64)


def receptive_fields(
    model, layers: Sequence[str], *, seed: int = 0, n: int = 4
) -> dict[str, ReceptiveField]:
    """Receptive field of the centre position of each of ``layers``: the bounding box of input
    pixels whose gradient is non-zero, over ``n`` random inputs (so dead ReLUs on one input
    do not shrink it). One jitted program for all layers.

    Args:
      model: a :class:`lucidax.models.Model`; measured at its input side (64 without one).
      layers: the layer names. Dense layers (activations ``[N, C]``) see the whole input.
      seed: seed of the random inputs.
      n: number of random inputs.

    Returns:
      ``{layer: ReceptiveField}`` in the order of ``layers``.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.gallery import receptive_fields
      >>> rfs = receptive_fields(lm.load("starter"), ["conv1", "conv3", "logits"])
      >>> {layer: rf.size for layer, rf in rfs.items()}
      {'conv1': (3, 3), 'conv3': (18, 18), 'logits': (64, 64)}
    """
    side = _input_side(model)
    c = model.input_spec.channels
    lo, hi = model.input_spec.value_range
    shapes = {layer: model.layer_shape(layer, side) for layer in layers}
    convs = [layer for layer in layers if len(shapes[layer]) == 3]
    out = {
        layer: ReceptiveField(side, (1, 1), (0, 0), (0, side, 0, side), (float(side),) * 2)
        for layer in layers
        if layer not in convs
    }
    if convs:
        # one forward/backward for every layer: image group g only feeds layer g's term, and
        # images of a batch do not interact, so group g's input gradient is layer g's alone
        g = len(convs)
        rng = np.random.default_rng(seed)  # (jax.random.uniform would cost a compile)
        x = rng.uniform(lo, hi, (g * n, side, side, c)).astype(np.float32)
        centres = {layer: (shapes[layer][0] // 2, shapes[layer][1] // 2) for layer in convs}

        def total(x, params):
            acts = fast_apply(model, params, x, tuple(convs))
            out = 0.0
            for k, layer in enumerate(convs):
                ci, cj = centres[layer]
                out = out + jnp.sum(acts[layer][k * n : (k + 1) * n, ci, cj, :])
            return out

        def masks_fn(params, x):
            grad = jax.grad(total)(x, params)
            return jnp.any(grad.reshape(g, n, side, side, c) != 0, axis=(1, 4))

        masks = dict(zip(convs, np.asarray(jax.jit(masks_fn)(model.params, x)), strict=True))
        for layer in convs:
            h, w = int(shapes[layer][0]), int(shapes[layer][1])
            ys, xs = np.nonzero(np.asarray(masks[layer]))
            if len(ys) == 0:
                box = (0, side, 0, side)
            else:
                box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
            out[layer] = ReceptiveField(side, (h, w), centres[layer], box, (side / h, side / w))
    return {layer: out[layer] for layer in layers}


def receptive_field(model, layer: str, *, seed: int = 0, n: int = 4) -> ReceptiveField:
    """:func:`receptive_fields` of one layer.

    Args:
      model: a :class:`lucidax.models.Model`.
      layer: the layer name.
      seed: seed of the random inputs.
      n: number of random inputs.

    Returns:
      The :class:`ReceptiveField` of the layer's centre position.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.gallery import receptive_field
      >>> rf = receptive_field(lm.load("starter"), "conv3")
      >>> rf.center, rf.box
      ((8, 8), (25, 43, 25, 43))
    """
    return receptive_fields(model, [layer], seed=seed, n=n)[layer]


@dataclasses.dataclass(frozen=True)
class TopK:
    """Best dataset images per unit of one layer (rows sorted, best first).

    Attributes:
      values: float32 ``[C, k]`` activations (max over space); -inf where fewer than k images.
      index: int ``[C, k]`` dataset image indices (-1 where fewer than k images).
      pos: int ``[C, k]`` flat spatial position of the maximum (``i * W + j``).
      shape: spatial shape ``(H, W)`` of the layer (``(1, 1)`` for dense).
      max: each unit's maximum activation over the images, ``[C]``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.gallery import top_k_examples
      >>> images = np.random.default_rng(0).uniform(0, 1, (16, 64, 64, 3))
      >>> top = top_k_examples(lm.load("starter"), images, ["conv3"], k=4)["conv3"]
      >>> top.values.shape, top.index.shape, top.pos.shape, top.shape, top.max.shape
      ((64, 4), (64, 4), (64, 4), (16, 16), (64,))
    """

    values: np.ndarray
    index: np.ndarray
    pos: np.ndarray
    shape: tuple[int, int]

    @property
    def max(self) -> np.ndarray:
        """Each unit's maximum activation over the images, ``[C]``."""
        return self.values[:, 0]


def _unit_max(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[n, H, W, C] -> max over space [n, C] and flat argmax [n, C]; [n, C] -> itself, 0."""
    if a.ndim == 4:
        n, hh, ww, c = a.shape
        flat = a.reshape(n, hh * ww, c)
        return flat.max(axis=1), flat.argmax(axis=1).astype(jnp.int32)
    a = a.reshape(a.shape[0], -1)
    return a, jnp.zeros(a.shape, jnp.int32)


def _fit_side(model, x: jax.Array) -> jax.Array:
    side = model.input_spec.side
    if side is not None and (x.shape[1] != side or x.shape[2] != side):
        x = jax.image.resize(x, (x.shape[0], side, side, x.shape[3]), "bilinear")
    return x


def top_k_examples(
    model,
    images: np.ndarray,
    layers: Sequence[str],
    k: int,
    *,
    chunk: int = 128,
    progress: bool = False,
) -> dict[str, TopK]:
    """The ``k`` images with the highest activation for every unit of ``layers``.

    One streaming pass: a single jitted step per fixed-size chunk of images computes all
    ``layers`` at once and merges each unit's running top-k with ``lax.top_k`` (memory
    ``O(units * k)``, independent of the number of images). The step is compiled once per
    architecture, layers and ``k`` (:meth:`lucidax.models.Model.program`), shared by
    ``with_params`` copies.

    Args:
      model: a :class:`lucidax.models.Model`.
      images: float ``[N, H, W, C]`` in the model's value range (resized to the model's
        input side when it has one).
      layers: the layers whose units are ranked.
      k: images kept per unit (at most ``N``).
      chunk: images per compiled step (the last chunk is padded).
      progress: show a tqdm bar over the chunks.

    Returns:
      ``{layer: TopK}`` (``{}`` when there are no images, no layers or ``k <= 0``).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.gallery import top_k_examples
      >>> images = np.random.default_rng(0).uniform(0, 1, (16, 64, 64, 3))
      >>> top = top_k_examples(lm.load("starter"), images, ["conv3", "logits"], k=4, chunk=8)
      >>> top["conv3"].index.shape, top["logits"].shape
      ((64, 4), (1, 1))
      >>> bool((np.diff(top["conv3"].values, axis=1) <= 0).all())  # best first
      True
    """
    return _top_k_pass(model, images, layers, k, chunk=chunk, progress=progress)[0]


def _top_k_pass(model, images: np.ndarray, layers: Sequence[str], k: int, *, chunk: int = 128,
                progress: bool = False, keep_all: bool = False,
                ) -> tuple[dict[str, TopK], dict[str, np.ndarray]]:
    """:func:`top_k_examples`, and with ``keep_all`` every unit's activation on every image
    (``{layer: float32 [N, C]}``, the same statistic) from the same pass."""
    layers = tuple(layers)
    images = np.asarray(images, np.float32)
    n_img = len(images)
    if n_img == 0 or k <= 0 or not layers:
        return {}, {}
    k = min(k, n_img)
    chunk = min(chunk, n_img)

    def build(shell):
        def step(params, state, x, valid, offset):
            acts = fast_apply(shell, params, _fit_side(shell, x), layers)
            new, every = {}, {}
            for name in layers:
                v, p = _unit_max(acts[name])  # [n, C]
                v = jnp.where(valid[:, None], v.astype(jnp.float32), -jnp.inf)
                idx = jnp.broadcast_to((offset + jnp.arange(v.shape[0]))[:, None], v.shape)
                sv, si, sp = state[name]  # [C, k]
                cat_v = jnp.concatenate([sv, v.T], axis=1)
                cat_i = jnp.concatenate([si, idx.T.astype(jnp.int32)], axis=1)
                cat_p = jnp.concatenate([sp, p.T], axis=1)
                top_v, where = jax.lax.top_k(cat_v, k)
                new[name] = (
                    top_v,
                    jnp.take_along_axis(cat_i, where, axis=1),
                    jnp.take_along_axis(cat_p, where, axis=1),
                )
                every[name] = v
            return new, every

        return step

    step = model.program(("gallery.top_k_examples", layers, k, "all"), build)
    state, shapes = {}, {}
    side = model.input_spec.side or images.shape[1]
    for name in layers:
        shp = model.layer_shape(name, side)
        shapes[name] = (int(shp[0]), int(shp[1])) if len(shp) == 3 else (1, 1)
        c = int(shp[-1])
        state[name] = (
            jnp.full((c, k), -jnp.inf, jnp.float32),
            jnp.full((c, k), -1, jnp.int32),
            jnp.zeros((c, k), jnp.int32),
        )
    kept: dict[str, list[np.ndarray]] = {}
    starts = range(0, n_img, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="dataset examples", unit="chunk", leave=False)
    for s in starts:
        x = images[s : s + chunk]
        valid = valid_mask(len(x), chunk)
        x = pad_batch(x, chunk)  # one shape, one compile
        state, every = step(model.params, state, x, valid, np.int32(s))
        if keep_all:
            for name in layers:
                kept.setdefault(name, []).append(np.asarray(every[name])[: min(chunk, n_img - s)])
    out = {}
    for name in layers:
        v, i, p = (np.asarray(a) for a in state[name])
        out[name] = TopK(v, i.astype(np.int64), p.astype(np.int64), shapes[name])
    return out, {name: np.concatenate(parts) for name, parts in kept.items()}


def unit_activation(model, images: Any, layer: str, units: Sequence[int]) -> np.ndarray:
    """Activation (max over space) of unit ``units[i]`` on image ``i``; float32 ``[B]``.

    One compiled program per architecture and layer (:meth:`lucidax.models.Model.program`):
    every call, and every ``with_params`` copy of the model, reuses it.

    Args:
      model: a :class:`lucidax.models.Model`.
      images: float ``[B, H, W, C]`` in the model's value range (resized to the model's
        input side when it has one).
      layer: the layer name.
      units: ``B`` unit indices, one per image.

    Returns:
      float32 ``[B]``: the spatial maximum of channel ``units[i]`` on image ``i`` (dense
      layers: the value itself).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.gallery import unit_activation
      >>> images = np.random.default_rng(0).uniform(0, 1, (3, 64, 64, 3))
      >>> act = unit_activation(lm.load("starter"), images, "conv3", [0, 5, 7])
      >>> act.shape, act.dtype
      ((3,), dtype('float32'))
    """

    def build(shell):
        def fn(params, x, u):
            a = fast_apply(shell, params, _fit_side(shell, x), (layer,))[layer]
            v, _ = _unit_max(a)
            return jnp.take_along_axis(v, u[:, None], axis=1)[:, 0].astype(jnp.float32)

        return fn

    fn = model.program(("gallery.unit_activation", layer), build)
    x = jnp.asarray(images, jnp.float32)
    return np.asarray(fn(model.params, x, jnp.asarray(units, jnp.int32)))


def _resize_nearest(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    rows = np.minimum((np.arange(side) * h) // side, h - 1)
    cols = np.minimum((np.arange(side) * w) // side, w - 1)
    return img[rows][:, cols]


def example_tile(
    image: np.ndarray, rf: ReceptiveField | None, pos: int, tile: int, *, crop: bool = True
) -> np.ndarray:
    """Tile ``[tile, tile, C]`` showing the receptive field of flat position ``pos`` in
    ``image`` (areas past the border are grey), or the whole image when the field covers it,
    ``crop`` is False or ``rf`` is None."""
    image = np.asarray(image, np.float32)
    if crop and rf is not None and not rf.full:
        i, j = divmod(int(pos), rf.shape[1])
        y0, y1, x0, x1 = rf.box_at(i, j)
        pad = max(rf.size) + 1
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=0.5)
        image = padded[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    return _resize_nearest(image, tile)
