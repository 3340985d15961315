"""What the attribution methods share (a private module, shared inside the package).

Every method has the signature ``method(model, params, images, target, **opts) -> maps``:

* ``images``: float ``[N, H, W, C]`` in ``model.input_spec.value_range`` (``[0, 1]`` for the
  starter and zoo models), checked by :func:`check_images`;
* ``target``: anything :func:`lucidax.attribute.resolve_target` accepts (a class, one class
  per image, a label, ``"predicted"``, a :mod:`lucidax.visualize` Objective); the gradient
  methods turn it into a :class:`TargetSpec` and a traced objective with :func:`prepare` and
  score activations with :func:`score`; the perturbation methods use a :class:`Scorer`
  (:func:`make_scorer`) and :func:`chunked_scores`;
* ``maps``: float ``[N, H, W]``: the channel axis of the per-pixel attribution
  ``raw [N, H, W, C]`` is reduced with one of :data:`REDUCTIONS` (``reduce=``), and
  ``return_raw=True`` gives an :class:`Attribution` (:func:`finish`).

**Compilation.** Each method runs as one program of the model (``Model.program``: shared by
every ``with_params`` copy) per (method, static options, target structure), retraced only
for new image shapes: a second call with new images of the same shape, new params or other
classes reuses it. Class indices and Objective arrays are traced arguments, so ``target=3``
and ``target=[1, 2, 4, 5]`` (same N) share a program. :data:`TRACE_COUNT` counts the traces
(for tests). SmoothGrad and IG evaluate their noisy copies / path points ``batch_size`` at a
time (vmapped), looping (``lax.map``, :func:`batched_map`) over the chunks with
XLA:CPU-friendly convolution gradients (:func:`loop_apply`).
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model, suggest
from lucidax.models.fastgrad import apply as fast_apply

from ._targets import resolve_target, target_classes

#: Python-side trace counter per method (a trace = a compilation), for tests.
TRACE_COUNT: collections.Counter[str] = collections.Counter()


def program(model: Model, key: tuple, build: Callable[[Model], Callable[..., Any]]) -> Callable:
    """``model.program(("attribute", *key), build)``: the attribution programs of a model."""
    return model.program(("attribute", *key), build)


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Attribution:
    """An attribution with what is needed to check it.

    Attributes:
      maps: ``[N, H, W]`` maps (the channel axis reduced with the method's ``reduce``).
      raw: the unreduced attribution, ``[N, H, W, C]`` (Grad-CAM: ``[N, h, w]`` at the
        layer's resolution, before the ReLU and the upsampling).
      scores: ``[N]`` the target's value at each image.
      baseline_scores: ``[N]`` the target's value at each baseline image (integrated
        gradients), else None.
      method: the method's name.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import vanilla_gradient
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> result = vanilla_gradient(model, model.params, images, target=3, return_raw=True)
      >>> result.maps.shape, result.raw.shape, result.scores.shape
      ((2, 64, 64), (2, 64, 64, 3), (2,))
    """

    maps: jax.Array
    raw: jax.Array
    scores: jax.Array
    baseline_scores: jax.Array | None = None
    method: str = ""

    @property
    def total(self) -> jax.Array:
        """``[N]`` sum of the raw attribution of each image."""
        return jnp.sum(self.raw.reshape(self.raw.shape[0], -1), axis=1)

    @property
    def completeness_gap(self) -> jax.Array:
        """``[N]`` ``sum(raw) - (f(x) - f(baseline))`` (integrated gradients; for LRP and
        gradient x input the baseline term is 0: ``sum(raw) - f(x)``)."""
        base = 0.0 if self.baseline_scores is None else self.baseline_scores
        return self.total - (self.scores - base)


def finish(maps, raw, scores, *, return_raw: bool, method: str, baseline_scores=None):
    """The maps, or with ``return_raw`` the :class:`Attribution`."""
    if return_raw:
        return Attribution(maps, raw, scores, baseline_scores, method)
    return maps


# ---------------------------------------------------------------------------------------------
# channel reductions
# ---------------------------------------------------------------------------------------------
#: how a method turns its ``[N, H, W, C]`` attribution into ``[N, H, W]`` maps (``reduce=``)
REDUCTIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sum": lambda a: jnp.sum(a, axis=-1),
    "abs_sum": lambda a: jnp.sum(jnp.abs(a), axis=-1),
    "max_abs": lambda a: jnp.max(jnp.abs(a), axis=-1),
    "l2": lambda a: jnp.sqrt(jnp.sum(a * a, axis=-1)),
    "mean": lambda a: jnp.mean(a, axis=-1),
}


def check_reduce(reduce: str) -> str:
    """``reduce`` if it names one of :data:`REDUCTIONS`, else ValueError with the valid ones."""
    if reduce not in REDUCTIONS:
        raise ValueError(suggest(reduce, tuple(REDUCTIONS), what="reduction"))
    return reduce


def reduce_channels(raw: Any, reduce: str = "sum") -> jax.Array:
    """``[N, H, W, C] -> [N, H, W]`` with one of :data:`REDUCTIONS`.

    Args:
      raw: ``[N, H, W, C]`` attribution.
      reduce: ``"sum"``, ``"max_abs"``, ... (:data:`REDUCTIONS`).

    Example:
      >>> import numpy as np
      >>> from lucidax.attribute import reduce_channels
      >>> raw = np.stack([np.ones((1, 2, 2)), -3 * np.ones((1, 2, 2))], axis=-1)
      >>> total, peak = reduce_channels(raw, "sum"), reduce_channels(raw, "max_abs")
      >>> float(total[0, 0, 0]), float(peak[0, 0, 0])
      (-2.0, 3.0)
    """
    return REDUCTIONS[check_reduce(reduce)](jnp.asarray(raw))


# ---------------------------------------------------------------------------------------------
# images and targets of the gradient methods
# ---------------------------------------------------------------------------------------------
def check_images(model: Model, images: Any) -> jax.Array:
    """float32 ``[N, H, W, C]`` with the model's channel count (the model's own checks)."""
    arr = jnp.asarray(images)
    if arr.ndim == 3 and model.input_spec.channels == arr.shape[-1]:
        raise ValueError(f"images must be a batch [N, H, W, C]; got shape {arr.shape} "
                         "(add a batch axis: images[None])")
    arr = model._check_images(arr)
    return arr.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """The static part of a target: the model layers it reads. Its callable part, an
    :class:`~lucidax.visualize.Objective` (a pytree: class indices / units are array leaves),
    travels as the traced argument ``tdata`` of the compiled programs."""

    layers: tuple[str, ...]


def prepare(model: Model, params: Any, images: Any, target: Any
            ) -> tuple[jax.Array, TargetSpec, Any]:
    """``(images, static spec, objective)`` of a gradient method's arguments (via
    ``resolve_target``, which gives class targets one class per image, so a class target and a
    per-image class target of the same ``n`` share one compiled program)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax Model (lucidax.models.load / wrap); got "
                        f"{type(model).__name__}")
    x = check_images(model, images)
    layers, objective = resolve_target(model, target, x.shape[0], params=params, images=x)
    return x, TargetSpec(tuple(layers)), objective


def score(spec: TargetSpec, tdata: Any, acts: Mapping[str, jax.Array], x: jax.Array):
    """``[N]`` target values from the activations."""
    return jnp.asarray(tdata(acts)).reshape(x.shape[0])


def model_fn(model: Model, spec: TargetSpec, params, tdata, *, apply=None):
    """``x -> [N]`` target values (``apply(params, x, layers)`` defaults to model.apply)."""
    apply = apply or model.apply

    def f(x):
        acts = apply(params, x, spec.layers) if spec.layers else {}
        return score(spec, tdata, acts, x)

    return f


def loop_apply(model: Model) -> Callable:
    """``model.apply`` for use inside ``lax.map`` loops (SmoothGrad, IG): the same values, with
    convolution / max-pool gradients that XLA:CPU runs ~4x faster inside a while loop (see
    :mod:`lucidax.models.fastgrad`)."""
    from lucidax.models import fastgrad as _fastgrad

    def apply(p, im, layers):
        return _fastgrad.call(lambda pp, xx: model.apply(pp, xx, layers), p, im)

    return apply


def grad_fn(f: Callable[[jax.Array], jax.Array]):
    """``x -> (f(x) [N], d f_i / d x_i [N, H, W, C])`` (images are independent)."""

    def g(x):
        s, vjp = jax.vjp(f, x)
        (dx,) = vjp(jnp.ones_like(s))
        return s, dx

    return g


# ---------------------------------------------------------------------------------------------
# batching
# ---------------------------------------------------------------------------------------------
def batched_map(fn: Callable, xs: Any, chunk: int) -> jax.Array:
    """``lax.map(fn, xs, batch_size=chunk)``; a single chunk is one plain ``vmap`` (no loop)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk >= n:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=chunk)


def chunking(m: int, batch_size: int) -> tuple[int, int]:
    """``(chunk, total)``: ``m`` items in equal vmapped chunks of at most ``batch_size``,
    padded to ``total`` (a multiple of ``chunk``, less than one extra per chunk) so that
    ``lax.map`` compiles one body and no remainder."""
    chunks = -(-m // max(1, batch_size))
    chunk = -(-m // chunks)
    return chunk, chunk * chunks


def as_key(key: Any) -> jax.Array:
    """A ``jax.random`` key from a key, key data or an int seed (None: ``key(0)``)."""
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (numbers.Integral, np.integer)):
        return jax.random.key(int(key))
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.shape == (2,) and key.dtype == jnp.uint32:
        return jax.random.wrap_key_data(key)
    raise TypeError(f"key must be a jax.random key or an int seed; got {key!r}")


# ---------------------------------------------------------------------------------------------
# what the perturbation methods share (occlusion, LIME, KernelSHAP, curves, PGD)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Scorer:
    """What a perturbation method needs to score a batch of (perturbed) images.

    Attributes:
      layers: layers ``fn`` reads (static for ``model.apply``).
      fn: ``fn(acts, classes) -> [B]`` where ``classes`` ``[B]`` is the class of the image
        each row was made from (ignored by non-class targets).
      classes: ``int32 [N]`` per-image class for class targets, zeros otherwise.
      is_class: whether the target is a class logit (so softmax probabilities make sense).
      key: hashable description of ``fn``'s structure (for caching compiled programs).
    """

    layers: tuple[str, ...]
    fn: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]
    classes: np.ndarray
    is_class: bool
    key: Any


def make_scorer(model: Model, target: Any, n: int, *, batch: int, probability: bool = False,
                params: Any = None, images: Any = None) -> Scorer:
    """A :class:`Scorer` for ``n`` images scored ``batch`` perturbed copies at a time.

    Class targets score the logit, or with ``probability=True`` the softmax probability;
    ``target="predicted"`` needs ``params`` and ``images``.
    """
    classes = target_classes(model, target, n, params=params, images=images)
    if classes is not None:
        layer = model.logits_layer

        def fn(acts, cls):
            z = acts[layer]
            if probability:
                z = jax.nn.softmax(z, axis=-1)
            return jnp.take_along_axis(z, cls[:, None].astype(jnp.int32), axis=1)[:, 0]

        return Scorer((layer,), fn, classes.astype(np.int32), True,
                      ("class", layer, bool(probability)))
    if getattr(target, "batch", None) is not None:
        raise ValueError(f"target {getattr(target, 'name', target)!r} has one unit per image; "
                         "perturbation methods score mixed batches of copies, so they take "
                         "class targets (one class per image is fine) or a single-unit "
                         "Objective")
    layers, f = resolve_target(model, target, batch)
    try:
        key = ("objective", hash(target), tuple(layers), batch)
    except TypeError:
        key = ("objective-id", id(target), tuple(layers), batch)
    return Scorer(tuple(layers), lambda acts, cls: f(acts), np.zeros(n, np.int32), False, key)


def baseline_images(images: jax.Array, baseline: Any) -> jax.Array:
    """The reference images perturbations paint in: a number, ``"mean"`` (each image's
    mean colour), ``"blur"`` (Gaussian blur, sigma = side/16) or an array broadcastable to
    ``images``."""
    images = jnp.asarray(images, jnp.float32)
    if isinstance(baseline, str):
        if baseline == "mean":
            return jnp.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
        if baseline == "blur":
            return gaussian_blur(images, sigma=max(images.shape[1:3]) / 16)
        raise ValueError(suggest(baseline, ("mean", "blur"), what="baseline") +
                         " (or a number, or an array like the images)")
    base = jnp.asarray(baseline, jnp.float32)
    try:
        return jnp.broadcast_to(base, images.shape)
    except ValueError as e:
        raise ValueError(f"baseline of shape {base.shape} does not broadcast to the images "
                         f"{images.shape}") from e


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of ``[N, H, W, C]`` images (reflect padding)."""
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = jnp.asarray(k / k.sum(), jnp.float32)
    out = jnp.asarray(images, jnp.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = jnp.pad(out, pad, mode="reflect" if out.shape[axis] > r else "edge")
        n = out.shape[axis]
        out = sum(k[i] * jax.lax.slice_in_dim(p, i, i + n, axis=axis) for i in range(2 * r + 1))
    return out


def chunked_scores(
    model: Model,
    params: Any,
    scorer: Scorer,
    compose: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    n_items: int,
    batch: int,
    classes: jax.Array,
) -> jax.Array:
    """Scores of ``n_items`` perturbed images, ``batch`` at a time (call inside ``jit``).

    ``compose(idx [B]) -> (images [B, H, W, C], image_index [B])`` builds the perturbed copies
    with flat indices ``idx``; every chunk goes through one ``model.apply``.
    """
    batch = max(1, int(batch))
    if scorer.is_class:  # class scores work at any batch size; objectives were built for one
        batch = min(batch, n_items)
    chunks = -(-n_items // batch)
    idx = jnp.minimum(jnp.arange(chunks * batch), n_items - 1).reshape(chunks, batch)

    def one(ix):
        x, img = compose(ix)
        acts = fast_apply(model, params, x, scorer.layers)
        return scorer.fn(acts, classes[img]).astype(jnp.float32)

    return jax.lax.map(one, idx).reshape(-1)[:n_items]
