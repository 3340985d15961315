"""The registry of attribution methods and the machinery the perturbation methods share.

Every method has the signature ``method(model, params, images, target, **opts) -> maps``
with ``images`` float ``[N, H, W, C]`` and ``maps`` float ``[N, H, W]``. :data:`METHODS`
maps a short name (``"ig"``, ``"occlusion"``, ...) to the function; the gradient methods live
in :mod:`lucidax.attribute.gradients` / :mod:`lucidax.attribute.lrp` and are looked up by name
when first called, so this module imports nothing heavy.

Targets (what is attributed): an int class (that logit for every image), a sequence of ``N``
ints (one class per image), or anything :func:`lucidax.attribute.targets.resolve_target`
accepts (a :mod:`lucidax.visualize` Objective: a channel, a neuron, ...).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models.base import Model, suggest
from lucidax.models.fastgrad import apply as fast_apply

from .targets import resolve_target, target_classes

__all__ = ["METHODS", "Scorer", "get_method", "make_scorer", "method_names", "random_map"]


# -- targets -----------------------------------------------------------------------------------
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


# -- shared machinery --------------------------------------------------------------------------
def check_images(model: Model, images: Any) -> jax.Array:
    """float32 ``[N, H, W, C]`` with the model's channel count (the model's own checks)."""
    arr = jnp.asarray(images)
    if arr.ndim == 3 and model.input_spec.channels == arr.shape[-1]:
        raise ValueError(f"images must be a batch [N, H, W, C]; got shape {arr.shape} "
                         "(add a batch axis: images[None])")
    arr = model._check_images(arr)
    return arr.astype(jnp.float32)


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


def random_map(model: Model, params: Any, images: Any, target: Any = None, *,
               key: jax.Array | int = 0) -> jax.Array:
    """A uniform random map per image: the baseline every method should beat."""
    images = jnp.asarray(images)
    if isinstance(key, int):
        key = jax.random.key(key)
    return jax.random.uniform(key, images.shape[:3], jnp.float32)


# -- the registry ------------------------------------------------------------------------------
# name -> (module, candidate function names, short description)
_SPECS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "gradient": ("gradients", ("vanilla_gradient", "gradient", "saliency"), "vanilla gradient"),
    "grad_x_input": ("gradients", ("gradient_x_input", "grad_x_input", "input_x_gradient"),
                     "gradient x input"),
    "smoothgrad": ("gradients", ("smoothgrad", "smooth_grad"), "SmoothGrad"),
    "ig": ("gradients", ("integrated_gradients", "ig"), "integrated gradients"),
    "gradcam": ("gradients", ("gradcam", "grad_cam"), "Grad-CAM"),
    "guided_backprop": ("gradients", ("guided_backprop", "guided_backpropagation"),
                        "guided backprop"),
    "lrp": ("lrp", ("lrp", "lrp_epsilon", "lrp_map"), "LRP"),
    "occlusion": ("occlusion", ("occlusion",), "occlusion (sliding patch)"),
    "lime": ("surrogate", ("lime",), "LIME over superpixels"),
    "kernelshap": ("surrogate", ("kernel_shap",), "KernelSHAP over superpixels"),
    "random": ("methods", ("random_map",), "uniform random map (baseline)"),
}


def _resolve(name: str) -> Callable[..., Any] | None:
    module, candidates, _ = _SPECS[name]
    try:
        mod = importlib.import_module(f"lucidax.attribute.{module}")
    except ImportError:
        return None
    for attr in candidates:
        fn = getattr(mod, attr, None)
        if callable(fn):
            return fn
    return None


def method_names(*, available_only: bool = True) -> tuple[str, ...]:
    """Registered method names (by default only those whose module is importable)."""
    return tuple(n for n in _SPECS if not available_only or _resolve(n) is not None)


def get_method(name: str) -> Callable[..., Any]:
    """The attribution function registered as ``name`` (see :data:`METHODS`)."""
    if name not in _SPECS:
        raise ValueError(suggest(name, tuple(_SPECS), what="attribution method"))
    fn = _resolve(name)
    if fn is None:
        raise ValueError(f"attribution method {name!r} is not available in this install "
                         f"(lucidax.attribute.{_SPECS[name][0]} missing); available: "
                         f"{', '.join(method_names())}")
    return fn


class _Registry(Mapping):
    """Read-only ``{name: function}``; functions are imported on first access."""

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return get_method(name)

    def __iter__(self):
        return iter(method_names())

    def __len__(self) -> int:
        return len(method_names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in _SPECS and _resolve(name) is not None

    def describe(self, name: str) -> str:
        return _SPECS[name][2] if name in _SPECS else name

    def __repr__(self) -> str:
        return f"METHODS({', '.join(self)})"


METHODS: Mapping[str, Callable[..., Any]] = _Registry()
"""``{name: method}`` of every attribution method available: gradient, grad_x_input,
smoothgrad, ig, gradcam, guided_backprop, lrp (when installed), occlusion, lime, kernelshap,
random."""


def as_names(methods: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"ig,gradcam"`` / ``["ig", "gradcam"]`` / ``None`` (all available) -> validated names."""
    if methods is None or methods == "all":
        return method_names()
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    out = []
    for m in methods:
        get_method(m)  # raises with the valid names
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError(f"no methods given; available: {', '.join(method_names())}")
    return tuple(out)


_JIT_CACHE: dict[Any, Callable[..., Any]] = {}
_JIT_CACHE_SIZE = 64


def cached_jit(key: Any, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """``jax.jit(build())`` memoized on ``key`` (model identity + static config), so repeated
    calls with new images / params / classes reuse one compiled program."""
    fn = _JIT_CACHE.get(key)
    if fn is None:
        fn = jax.jit(build())
        if len(_JIT_CACHE) >= _JIT_CACHE_SIZE:
            _JIT_CACHE.pop(next(iter(_JIT_CACHE)))
        _JIT_CACHE[key] = fn
    return fn
