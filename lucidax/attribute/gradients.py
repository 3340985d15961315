"""Gradient-based attribution maps: which pixels a target (a class logit, a unit) depends on.

Every method has the signature ``method(model, params, images, target, **opts) -> maps``:

* ``images``: float ``[N, H, W, C]`` in ``model.input_spec.value_range`` (``[0, 1]`` for the
  starter and zoo models);
* ``target``: anything :func:`lucidax.attribute.targets.resolve_target` accepts: an int
  class (that logit for every image), a sequence of ``N`` ints (one class per image), a class
  label, ``"predicted"`` (each image's top class), or a :mod:`lucidax.visualize` Objective
  (``channel``, ``neuron``, ``direction``...);
* ``maps``: float ``[N, H, W]``. Each method reduces the channel axis of its per-pixel
  attribution ``raw [N, H, W, C]`` with ``reduce=`` (keyword-only):

  ==========================  ===========  ===============================================
  method                      reduce       why
  ==========================  ===========  ===============================================
  ``vanilla_gradient``        ``max_abs``  Simonyan et al. 2013: max over channels of abs(g)
  ``smoothgrad``              ``max_abs``  a denoised gradient, shown like the gradient
  ``guided_backprop``         ``max_abs``  a modified gradient, shown like the gradient
  ``gradient_x_input``        ``sum``      signed; the first-order Taylor terms
  ``integrated_gradients``    ``sum``      signed; sums to f(x) - f(baseline)
  ``lrp`` (:mod:`.lrp`)       ``sum``      signed relevance; sums to f(x) minus bias shares
  ==========================  ===========  ===============================================

  Reductions: ``"sum"``, ``"abs_sum"``, ``"max_abs"``, ``"l2"``, ``"mean"``.
  :func:`gradcam` has no channel axis: its maps are the ReLU'd class activation map of a conv
  layer, upsampled (bilinear) to the input size.

``return_raw=True`` (keyword-only) returns an :class:`Attribution` instead of the maps: the
maps, the raw ``[N, H, W, C]`` attribution (Grad-CAM: the ``[N, h, w]`` map at the layer's
resolution), the target's values at the images and, for integrated gradients, at the
baseline -- what a completeness check needs.

**Compilation.** Each method runs as one jitted program per (model, method, static options,
target structure, image shape): a second call with new images, new params or other classes
reuses it. Class indices and Objective arrays are traced arguments, so ``target=3`` and
``target=[1, 2, 4, 5]`` (same N) share a program. SmoothGrad and IG evaluate their noisy
copies / path points ``batch_size`` at a time (vmapped), looping (``lax.map``) over the
chunks with XLA:CPU-friendly convolution gradients.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model
from lucidax.models.base import normalize_layers, suggest

from .methods import check_images
from .targets import resolve_target

__all__ = [
    "IG_RULES",
    "REDUCTIONS",
    "Attribution",
    "gradcam",
    "gradient_x_input",
    "guided_backprop",
    "guided_relu",
    "integrated_gradients",
    "reduce_channels",
    "smoothgrad",
    "vanilla_gradient",
]

#: Python-side trace counter per method (a trace = a compilation), for tests.
_TRACE_COUNT: collections.Counter[str] = collections.Counter()



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


# ---------------------------------------------------------------------------------------------
# channel reductions
# ---------------------------------------------------------------------------------------------
REDUCTIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sum": lambda a: jnp.sum(a, axis=-1),
    "abs_sum": lambda a: jnp.sum(jnp.abs(a), axis=-1),
    "max_abs": lambda a: jnp.max(jnp.abs(a), axis=-1),
    "l2": lambda a: jnp.sqrt(jnp.sum(a * a, axis=-1)),
    "mean": lambda a: jnp.mean(a, axis=-1),
}


def _check_reduce(reduce: str) -> str:
    if reduce not in REDUCTIONS:
        raise ValueError(suggest(reduce, tuple(REDUCTIONS), what="reduction"))
    return reduce


def reduce_channels(raw: Any, reduce: str = "sum") -> jax.Array:
    """``[N, H, W, C] -> [N, H, W]`` with one of :data:`REDUCTIONS`."""
    return REDUCTIONS[_check_reduce(reduce)](jnp.asarray(raw))


# ---------------------------------------------------------------------------------------------
# static handles (hashable, part of the jit cache key)
# ---------------------------------------------------------------------------------------------
class _ModelRef:
    """A hashable handle on a model: equal for models sharing the pure apply function (so
    ``model.with_params(p)`` reuses the compiled programs)."""

    __slots__ = ("model", "_key")

    def __init__(self, model: Model):
        self.model = model
        self._key = (getattr(model, "_apply_fn", None) or id(model), model.layer_names)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ModelRef) and self._key == other._key


@dataclasses.dataclass(frozen=True)
class _TargetSpec:
    """The static part of a target: the model layers it reads. Its callable part, an
    :class:`~lucidax.visualize.Objective` (a pytree: class indices / units are array leaves),
    travels as the traced argument ``tdata`` of the jitted programs."""

    layers: tuple[str, ...]


def _target(model: Model, target: Any, n: int, params: Any, x: jax.Array
            ) -> tuple[_TargetSpec, Any]:
    """``(static spec, objective)`` for ``target`` on ``n`` images (via ``resolve_target``,
    which gives class targets one class per image, so a class target and a per-image class
    target of the same ``n`` share one compiled program)."""
    layers, objective = resolve_target(model, target, n, params=params, images=x)
    return _TargetSpec(tuple(layers)), objective


def _score(spec: _TargetSpec, tdata: Any, acts: Mapping[str, jax.Array], x: jax.Array):
    """``[N]`` target values from the activations."""
    return jnp.asarray(tdata(acts)).reshape(x.shape[0])


def _prepare(model: Model, params: Any, images: Any, target: Any
             ) -> tuple[_ModelRef, jax.Array, _TargetSpec, Any]:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax Model (lucidax.models.load / wrap); got "
                        f"{type(model).__name__}")
    x = check_images(model, images)
    spec, tdata = _target(model, target, x.shape[0], params, x)
    return _ModelRef(model), x, spec, tdata


def _model_fn(ref: _ModelRef, spec: _TargetSpec, params, tdata, *, apply=None):
    """``x -> [N]`` target values (``apply(params, x, layers)`` defaults to model.apply)."""
    apply = apply or ref.model.apply

    def f(x):
        acts = apply(params, x, spec.layers) if spec.layers else {}
        return _score(spec, tdata, acts, x)

    return f


def _loop_apply(ref: _ModelRef) -> Callable:
    """``model.apply`` for use inside ``lax.map`` loops (SmoothGrad, IG): the same values, with
    convolution / max-pool gradients that XLA:CPU runs ~4x faster inside a while loop (see
    :mod:`lucidax.models.fastgrad`)."""
    from lucidax.models import fastgrad as _fastgrad

    model = ref.model

    def apply(p, im, layers):
        return _fastgrad.call(lambda pp, xx: model.apply(pp, xx, layers), p, im)

    return apply


def _map(fn: Callable, xs: Any, chunk: int) -> jax.Array:
    """``lax.map(fn, xs, batch_size=chunk)``; a single chunk is one plain ``vmap`` (no loop)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk >= n:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=chunk)


def _grad_fn(f: Callable[[jax.Array], jax.Array]):
    """``x -> (f(x) [N], d f_i / d x_i [N, H, W, C])`` (images are independent)."""

    def g(x):
        s, vjp = jax.vjp(f, x)
        (dx,) = vjp(jnp.ones_like(s))
        return s, dx

    return g


def _chunking(m: int, batch_size: int) -> tuple[int, int]:
    """``(chunk, total)``: ``m`` items in equal vmapped chunks of at most ``batch_size``,
    padded to ``total`` (a multiple of ``chunk``, less than one extra per chunk) so that
    ``lax.map`` compiles one body and no remainder."""
    chunks = -(-m // max(1, batch_size))
    chunk = -(-m // chunks)
    return chunk, chunk * chunks


def _finish(maps, raw, scores, *, return_raw: bool, method: str, baseline_scores=None):
    if return_raw:
        return Attribution(maps, raw, scores, baseline_scores, method)
    return maps


# ---------------------------------------------------------------------------------------------
# vanilla gradient, gradient x input
# ---------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _gradient_jit(ref, spec, reduce, times_input, params, x, tdata):
    _TRACE_COUNT["gradient_x_input" if times_input else "gradient"] += 1
    s, g = _grad_fn(_model_fn(ref, spec, params, tdata))(x)
    raw = g * x if times_input else g
    return REDUCTIONS[reduce](raw), raw, s


def vanilla_gradient(
    model: Model, params: Any, images: Any, target: Any, *, reduce: str = "max_abs",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """Saliency (Simonyan et al. 2013): ``d target / d image``, reduced over channels (default:
    max of the absolute value). ``raw`` is the signed gradient ``[N, H, W, C]``."""
    ref, x, spec, tdata = _prepare(model, params, images, target)
    maps, raw, s = _gradient_jit(ref, spec, _check_reduce(reduce), False, params, x, tdata)
    return _finish(maps, raw, s, return_raw=return_raw, method="gradient")


def gradient_x_input(
    model: Model, params: Any, images: Any, target: Any, *, reduce: str = "sum",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """Gradient x input (Shrikumar et al. 2016): ``image * d target / d image``, summed over
    channels by default (signed). For a piecewise-linear network without biases the total
    equals the target value (then it is LRP-0)."""
    ref, x, spec, tdata = _prepare(model, params, images, target)
    maps, raw, s = _gradient_jit(ref, spec, _check_reduce(reduce), True, params, x, tdata)
    return _finish(maps, raw, s, return_raw=return_raw, method="grad_x_input")


# ---------------------------------------------------------------------------------------------
# SmoothGrad
# ---------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=(1, 2))
def _noise_jit(key, shape, total):
    """``[total, *shape]`` standard normal draws (its own program: random-number generation
    is slow to compile on XLA:CPU, so every SmoothGrad variant shares this one)."""
    return jax.random.normal(key, (total, *shape), jnp.float32)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6))
def _smoothgrad_jit(ref, spec, reduce, n_samples, squared, times_input, chunk,
                    params, x, tdata, noise, sigma):
    _TRACE_COUNT["smoothgrad"] += 1
    grad = _grad_fn(_model_fn(ref, spec, params, tdata, apply=_loop_apply(ref)))
    weights = (jnp.arange(noise.shape[0]) < n_samples).astype(x.dtype) / n_samples

    def one(nw):
        z, w = nw
        g = grad(x + sigma * z)[1]
        return w * (g * g if squared else g)

    g = jnp.sum(_map(one, (noise, weights), chunk), axis=0)
    s = _model_fn(ref, spec, params, tdata)(x)
    raw = g * x if times_input else g
    return REDUCTIONS[reduce](raw), raw, s


def smoothgrad(
    model: Model, params: Any, images: Any, target: Any, *, key: Any = None,
    n_samples: int = 16, noise: float = 0.15, squared: bool = False,
    multiply_by_input: bool = False, batch_size: int = 16, reduce: str = "max_abs",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over ``n_samples`` noisy copies
    ``x + N(0, sigma^2)``, ``sigma = noise * (hi - lo)`` of the model's value range.

    Args:
      key: a ``jax.random`` key (or an int seed); None means ``jax.random.key(0)``. The same
        key gives the same maps.
      squared: average the squared gradient (SmoothGrad-Squared, Hooker et al. 2019).
      multiply_by_input: return ``x * mean gradient`` (a smoothed gradient x input).
      batch_size: noisy copies evaluated at once (vmapped); the rest runs sequentially.
    """
    ref, x, spec, tdata = _prepare(model, params, images, target)
    if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int; got {n_samples!r}")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be >= 0 (a fraction of the value range); got {noise!r}")
    key = _as_key(key)
    lo, hi = model.input_spec.value_range
    sigma = jnp.float32(noise * (hi - lo))
    chunk, total = _chunking(int(n_samples), int(batch_size))
    noise = _noise_jit(key, tuple(x.shape), total)  # the padding draws get weight 0
    maps, raw, s = _smoothgrad_jit(ref, spec, _check_reduce(reduce), int(n_samples),
                                   bool(squared), bool(multiply_by_input), chunk,
                                   params, x, tdata, noise, sigma)
    return _finish(maps, raw, s, return_raw=return_raw, method="smoothgrad")


def _as_key(key: Any) -> jax.Array:
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
# Integrated Gradients
# ---------------------------------------------------------------------------------------------
IG_RULES = ("trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def _ig_points(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``alpha`` in [0, 1] and weights (summing to 1) for ``rule``."""
    k = np.arange(steps, dtype=np.float64)
    if rule == "trapezoid":
        alphas = np.arange(steps + 1, dtype=np.float64) / steps
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
    elif rule == "riemann_left":
        alphas, weights = k / steps, np.full(steps, 1.0 / steps)
    elif rule == "riemann_right":
        alphas, weights = (k + 1) / steps, np.full(steps, 1.0 / steps)
    else:  # riemann_middle
        alphas, weights = (k + 0.5) / steps, np.full(steps, 1.0 / steps)
    return alphas.astype(np.float32), weights.astype(np.float32)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _ig_jit(ref, spec, reduce, batch_size, params, x, base, tdata, alphas, weights):
    _TRACE_COUNT["integrated_gradients"] += 1
    f = _model_fn(ref, spec, params, tdata)
    grad = _grad_fn(_model_fn(ref, spec, params, tdata, apply=_loop_apply(ref)))
    diff = x - base

    def one(aw):
        a, w = aw
        return w * grad(base + a * diff)[1]

    m = alphas.shape[0]
    chunk, total = _chunking(m, batch_size)
    alphas = jnp.concatenate([alphas, jnp.zeros(total - m, alphas.dtype)])
    weights = jnp.concatenate([weights, jnp.zeros(total - m, weights.dtype)])
    gs = _map(one, (alphas, weights), chunk)
    raw = diff * jnp.sum(gs, axis=0)
    s = f(x)
    s0 = f(base)
    return REDUCTIONS[reduce](raw), raw, s, s0


def integrated_gradients(
    model: Model, params: Any, images: Any, target: Any, *, baseline: Any = None,
    steps: int = 32, rule: str = "trapezoid", batch_size: int = 16, reduce: str = "sum",
    completeness_rtol: float | None = None, return_raw: bool = False,
) -> jax.Array | Attribution:
    """Integrated Gradients (Sundararajan et al. 2017) along the straight path from
    ``baseline`` to the image: ``(x - x0) * integral_0^1 grad f(x0 + a (x - x0)) da``.

    By the fundamental theorem of calculus the attributions of an image sum to
    ``f(x) - f(x0)`` (completeness) up to the quadrature error of ``steps`` intervals.

    Args:
      baseline: the reference image(s): None = the low end of the value range (black), a
        number, or an array broadcastable to the images.
      steps: number of intervals of the path.
      rule: ``"trapezoid"`` (``steps + 1`` gradients) or ``"riemann_left"`` /
        ``"riemann_right"`` / ``"riemann_middle"`` (``steps`` gradients).
      batch_size: path points evaluated at once (vmapped); the rest runs sequentially.
      completeness_rtol: if given, raise ``ValueError`` when for some image
        ``|sum(attr) - (f(x) - f(x0))| > completeness_rtol * max(|f(x) - f(x0)|, 1e-6)``
        (then increase ``steps``). :attr:`Attribution.completeness_gap` gives the gaps.
    """
    ref, x, spec, tdata = _prepare(model, params, images, target)
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    if rule not in IG_RULES:
        raise ValueError(suggest(rule, IG_RULES, what="integration rule"))
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if baseline is None:
        baseline = model.input_spec.value_range[0]
    base = jnp.asarray(baseline, jnp.float32)
    try:
        base = jnp.broadcast_to(base, x.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {base.shape} does not broadcast to the images "
                         f"{x.shape}") from None
    alphas, weights = _ig_points(int(steps), rule)
    maps, raw, s, s0 = _ig_jit(ref, spec, _check_reduce(reduce), int(batch_size), params, x,
                               base, tdata, alphas, weights)
    result = Attribution(maps, raw, s, s0, "ig")
    if completeness_rtol is not None:
        gap = np.abs(np.asarray(result.completeness_gap))
        scale = np.maximum(np.abs(np.asarray(s - s0)), 1e-6)
        bad = np.flatnonzero(gap > completeness_rtol * scale)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"integrated gradients: completeness violated for image {i}: attributions sum "
                f"to {float(result.total[i]):.6g} but f(x) - f(baseline) = "
                f"{float(s[i] - s0[i]):.6g} (relative gap {gap[i] / scale[i]:.3g} > "
                f"{completeness_rtol}); use more steps (now {steps})")
    return result if return_raw else maps


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------
def _default_cam_layer(model: Model, spec: _TargetSpec) -> str:
    names = model.layer_names
    last = max((names.index(n) for n in spec.layers), default=len(names) - 1)
    convs = [n for n in names[: last + 1] if model.layers[n].kind == "conv"
             and not model.layers[n].pre_relu]
    convs = convs or [n for n in names[: last + 1] if model.layers[n].kind == "conv"]
    if not convs:
        raise ValueError(f"{model.name} has no convolutional layer for Grad-CAM before the "
                         f"target's layers {spec.layers}")
    return convs[-1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _gradcam_jit(ref, spec, layer, relu, params, x, tdata):
    _TRACE_COUNT["gradcam"] += 1
    from lucidax.models.hooks import apply_perturbed

    model = ref.model
    names = tuple(dict.fromkeys((*spec.layers, layer)))
    shape = jax.eval_shape(lambda p, im: model.apply(p, im, (layer,)), params, x)[layer]

    def f(delta):
        acts = apply_perturbed(model, params, x, names, {layer: delta})
        s = _score(spec, tdata, acts, x)
        return jnp.sum(s), (s, acts[layer])

    (_, (s, act)), g = jax.value_and_grad(f, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
    weights = jnp.mean(g, axis=(1, 2))  # [N, C]: global-average-pooled gradients
    cam = jnp.einsum("nhwc,nc->nhw", act, weights)
    pos = jax.nn.relu(cam) if relu else cam
    n, h, w = x.shape[:3]
    maps = jax.image.resize(pos, (n, h, w), method="bilinear")
    return maps, cam, s


def gradcam(
    model: Model, params: Any, images: Any, target: Any, *, layer: str | None = None,
    relu: bool = True, return_raw: bool = False,
) -> jax.Array | Attribution:
    """Grad-CAM (Selvaraju et al. 2017) at a convolutional ``layer``.

    ``cam = sum_k alpha_k A_k`` with ``alpha_k`` the spatial mean of ``d target / d A_k``;
    the maps are ``relu(cam)`` upsampled bilinearly to the image size. ``layer`` defaults to
    the last (post-ReLU) conv layer the target depends on. ``relu=False`` keeps negative
    evidence. ``raw`` (with ``return_raw``) is the CAM at the layer's resolution before the
    ReLU.
    """
    ref, x, spec, tdata = _prepare(model, params, images, target)
    if layer is None:
        layer = _default_cam_layer(model, spec)
    (layer,) = normalize_layers([layer], model.layer_names)
    if model.layers[layer].kind != "conv":
        convs = [n for n in model.layer_names if model.layers[n].kind == "conv"]
        raise ValueError(f"Grad-CAM needs a convolutional layer; {layer!r} is "
                         f"{model.layers[layer].kind}. Conv layers: {', '.join(convs)}")
    maps, cam, s = _gradcam_jit(ref, spec, layer, bool(relu), params, x, tdata)
    return _finish(maps, cam, s, return_raw=return_raw, method="gradcam")


# ---------------------------------------------------------------------------------------------
# Guided Backprop
# ---------------------------------------------------------------------------------------------
@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose gradient passes only positive gradients where the input was positive
    (Springenberg et al. 2015)."""
    return jnp.maximum(x, jnp.zeros((), x.dtype))


def _guided_fwd(x):
    return guided_relu(x), x


def _guided_bwd(x, g):
    zero = jnp.zeros((), g.dtype)
    return (jnp.where((x > 0) & (g > 0), g, zero),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _guided_jit(ref, spec, reduce, params, x, tdata):
    _TRACE_COUNT["guided_backprop"] += 1
    from lucidax.models.hooks import apply_with_relu

    def apply(p, im, layers):
        return apply_with_relu(ref.model, p, im, layers, guided_relu)

    s, g = _grad_fn(_model_fn(ref, spec, params, tdata, apply=apply))(x)
    return REDUCTIONS[reduce](g), g, s


def guided_backprop(
    model: Model, params: Any, images: Any, target: Any, *, reduce: str = "max_abs",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """Guided Backpropagation (Springenberg et al. 2015): the input gradient with every ReLU's
    backward pass replaced by ``g * (x > 0) * (g > 0)`` (only positive gradients through
    active units). ReLU6 (``jax.nn.relu6``, ``jnp.clip(x, 0, 6)``, ``min(max(x, 0), 6)``;
    any cap) passes ``g * (0 < x < 6) * (g > 0)``: it is evaluated as ``min(guided_relu(x),
    6)`` (see :func:`lucidax.models.hooks.apply_with_relu`). Identical to
    :func:`vanilla_gradient` on a network without ReLUs."""
    ref, x, spec, tdata = _prepare(model, params, images, target)
    maps, raw, s = _guided_jit(ref, spec, _check_reduce(reduce), params, x, tdata)
    return _finish(maps, raw, s, return_raw=return_raw, method="guided_backprop")
