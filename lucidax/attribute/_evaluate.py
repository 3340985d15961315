"""How good is an attribution map? Deletion/insertion curves and the randomization check.

* :func:`deletion_curve` / :func:`insertion_curve` (Petsiuk et al. 2018, RISE): remove (or
  insert) pixels from most to least important, in ``steps`` equal chunks, and record the
  target score (class probability by default). A faithful map makes the deletion curve drop
  fast (low AUC) and the insertion curve rise fast (high AUC). Compare with
  :func:`lucidax.attribute.random_map`.
* :func:`randomization_check` (Adebayo et al. 2018, "Sanity checks for saliency maps"):
  re-initialize the layers from the top down (cascading) and measure how similar each
  method's maps stay to the maps of the trained model (Spearman rank correlation of the maps
  and of their absolute values, and SSIM). A method whose maps do not change when the
  weights are destroyed does not explain the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from lucidax.models import Model, suggest
from lucidax.visualize import ssim as _image_ssim

from ._common import (
    baseline_images,
    check_images,
    chunked_scores,
    make_scorer,
    program,
)
from ._registry import get_method

__all__ = [
    "CurveResult",
    "RandomizationResult",
    "deletion_curve",
    "insertion_curve",
    "randomization_check",
    "randomize_params",
    "spearman",
    "ssim",
]


@dataclasses.dataclass(frozen=True, eq=False)
class CurveResult:
    """A deletion or insertion curve per image.

    Attributes:
      mode: ``"deletion"`` or ``"insertion"``.
      fractions: ``[T]`` share of the pixels removed / inserted, 0 .. 1.
      scores: ``[N, T]`` the target score at each fraction.
      auc: ``[N]`` area under each curve (trapezoid over ``fractions``).

    Example:
      >>> from lucidax.attribute import deletion_curve, vanilla_gradient
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> maps = vanilla_gradient(model, model.params, images, target=3)
      >>> curve = deletion_curve(model, model.params, images, maps, target=3, steps=8)
      >>> curve.mode, curve.fractions.shape, curve.scores.shape, curve.auc.shape
      ('deletion', (9,), (2, 9), (2,))
    """

    mode: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray

    @property
    def mean_auc(self) -> float:
        return float(np.mean(self.auc))


def _curve(mode, model, params, images, maps, target, *, steps, baseline, score, batch_size):
    images = check_images(model, images)
    n, h, w, _ = images.shape
    maps = jnp.asarray(maps, jnp.float32)
    if maps.shape != (n, h, w):
        raise ValueError(f"maps must be [N, H, W] = {(n, h, w)} like the images; got "
                         f"{maps.shape}")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if score not in ("probability", "logit"):
        raise ValueError(suggest(score, ("probability", "logit"), what="score"))
    t = int(steps) + 1
    batch = max(1, min(int(batch_size), n * t))
    scorer = make_scorer(model, target, n, batch=batch, probability=score == "probability",
                         params=params, images=images)
    base = baseline_images(images, baseline)
    counts = np.round(np.linspace(0, h * w, t)).astype(np.int32)
    key = ("curve", mode, scorer.key, n, h, w, t, batch)

    def build(shell):
        k = jnp.asarray(counts)

        def run(params, images, base, maps, classes):
            flat = maps.reshape(n, -1)
            order = jnp.argsort(-flat, axis=1, stable=True)
            ranks = jnp.argsort(order, axis=1).reshape(n, h, w)

            def compose(ix):
                img, j = ix // t, ix % t
                m = (ranks[img] < k[j][:, None, None])[..., None]  # the top-k pixels
                if mode == "deletion":
                    return jnp.where(m, base[img], images[img]), img
                return jnp.where(m, images[img], base[img]), img

            return chunked_scores(shell, params, scorer, compose, n * t, batch,
                                  classes).reshape(n, t)

        return run

    scores = np.asarray(program(model, key, build)(params, images, base, maps,
                                               jnp.asarray(scorer.classes)))
    fr = counts / float(h * w)
    auc = np.trapezoid(scores, fr, axis=1) if hasattr(np, "trapezoid") else np.trapz(
        scores, fr, axis=1)
    return CurveResult(mode, fr, scores, auc)


def deletion_curve(
    model: Model, params: Any, images: Any, maps: Any, target: Any, *, steps: int = 32,
    baseline: Any = "mean", score: str = "probability", batch_size: int = 128,
) -> CurveResult:
    """Replace the most important pixels first (by ``maps``) with ``baseline`` and record the
    target score after each of ``steps`` equal chunks (lower AUC = more faithful map).

    Args:
      maps: ``[N, H, W]`` attribution maps (higher = more important; ties keep pixel order).
      target: class (int), one class per image, or an Objective.
      baseline: what removed pixels become: a number, ``"mean"`` (each image's mean colour),
        ``"blur"`` or an array like the images.
      score: ``"probability"`` (softmax of the logits, class targets) or ``"logit"`` (the
        raw score; Objectives always use their raw value).
      model, params: the model and its parameters.
      batch_size: perturbed copies per forward pass.

    Example:
      >>> from lucidax.attribute import deletion_curve, vanilla_gradient
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> maps = vanilla_gradient(model, model.params, images, target=3)
      >>> curve = deletion_curve(model, model.params, images, maps, target=3, steps=8)
      >>> bool(np.all((curve.auc >= 0) & (curve.auc <= 1)))
      True
    """
    return _curve("deletion", model, params, images, maps, target, steps=steps,
                  baseline=baseline, score=score, batch_size=batch_size)


def insertion_curve(
    model: Model, params: Any, images: Any, maps: Any, target: Any, *, steps: int = 32,
    baseline: Any = "blur", score: str = "probability", batch_size: int = 128,
) -> CurveResult:
    """Start from ``baseline`` (default: a blurred copy, as in RISE) and insert the most
    important pixels first; higher AUC = more faithful map. Options as :func:`deletion_curve`.

    Args:
      model, params: the model and its parameters.
      images: ``[N, H, W, C]`` images.
      maps: ``[N, H, W]`` attribution maps (higher = more important).
      target: a class index or label, one per image, ``"predicted"`` or an objective.
      steps: number of equal chunks of pixels inserted.
      baseline: the start image (``"blur"``, ``"mean"``, a number or an array).
      score: ``"probability"`` or ``"logit"``.
      batch_size: perturbed copies per forward pass.

    Example:
      >>> from lucidax.attribute import insertion_curve, random_map
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> maps = random_map(model, model.params, images)
      >>> insertion_curve(model, model.params, images, maps, target=3, steps=8).scores.shape
      (2, 9)
    """
    return _curve("insertion", model, params, images, maps, target, steps=steps,
                  baseline=baseline, score=score, batch_size=batch_size)


# -- similarity --------------------------------------------------------------------------------
def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks ``0 .. n-1`` along the last axis (ties share their mean rank)."""
    return scipy.stats.rankdata(np.asarray(x, np.float64), axis=-1) - 1.0


def spearman(a: Any, b: Any) -> np.ndarray:
    """Spearman rank correlation of each pair of maps ``[N, ...]`` -> ``[N]`` (NaN when a map
    is constant).

    Args:
      a, b: ``[N, ...]`` maps, compared pairwise.

    Example:
      >>> import numpy as np
      >>> from lucidax.attribute import spearman
      >>> a = np.arange(16.0).reshape(1, 4, 4)
      >>> spearman(a, a ** 2).tolist(), spearman(a, -a).tolist()
      ([1.0], [-1.0])
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {a.shape} and {b.shape}")
    n = a.shape[0]
    ra, rb = _rank(a.reshape(n, -1)), _rank(b.reshape(n, -1))
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1), np.nan)


def ssim(a: Any, b: Any, *, window: int = 7) -> np.ndarray:
    """Structural similarity of each pair of maps ``[N, H, W]`` after scaling each map to
    [0, 1] (min-max) -> ``[N]`` (:func:`lucidax.visualize.ssim`: Wang et al. 2004, uniform
    ``window x window`` window, scikit-image's conventions).

    Args:
      a, b: ``[N, H, W]`` maps, compared pairwise.
      window: the side of the uniform window.

    Example:
      >>> import numpy as np
      >>> from lucidax.attribute import ssim
      >>> a = np.random.default_rng(0).random((2, 16, 16))
      >>> ssim(a, a).round(3).tolist()
      [1.0, 1.0]
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim needs two [N, H, W] stacks of the same shape; got {a.shape}, "
                         f"{b.shape}")

    def scale(x):
        lo = x.min(axis=(1, 2), keepdims=True)
        hi = x.max(axis=(1, 2), keepdims=True)
        return (x - lo) / np.where(hi > lo, hi - lo, 1.0)

    return _image_ssim(scale(a)[..., None], scale(b)[..., None], data_range=1.0, win=window)


# -- model parameter randomization -------------------------------------------------------------
def _param_layers(model: Model, params: Mapping[str, Any]) -> list[str]:
    """Top-level parameter groups in forward order (those named like a layer by its index)."""
    names = list(params)
    index = {n: i for i, n in enumerate(model.layer_names)}
    known = sorted((n for n in names if n in index), key=index.__getitem__)
    it = iter(known)
    return [next(it) if n in index else n for n in names]


def randomize_params(params: Mapping[str, Any], groups: Sequence[str], key: Any = 0) -> dict:
    """A copy of ``params`` whose top-level ``groups`` are redrawn: every array becomes
    Normal(0, std of the original array) (zero stays zero), others are shared unchanged.

    ``key``: an int seed or a ``jax.random`` key; group ``groups[i]`` gets the same draw for
    the same key and position, so cascading stages extend each other. (Drawn with NumPy:
    compiling JAX's generator for every parameter shape costs seconds on CPU.)

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import randomize_params
      >>> params = lm.load("starter").params
      >>> new = randomize_params(params, ["logits"], key=1)
      >>> bool(np.array_equal(new["conv1"]["kernel"], params["conv1"]["kernel"]))
      True
      >>> bool(np.array_equal(new["logits"]["kernel"], params["logits"]["kernel"]))
      False
    """
    if isinstance(key, (int, np.integer)):
        seed = [int(key)]
    else:
        seed = np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel().tolist()
    missing = [g for g in groups if g not in params]
    if missing:
        raise ValueError(suggest(missing[0], list(params), what="parameter group"))
    out = dict(params)
    for gi, g in enumerate(groups):
        leaves, tree = jax.tree_util.tree_flatten(params[g])
        new = []
        for li, leaf in enumerate(leaves):
            leaf = np.asarray(leaf)
            rng = np.random.default_rng([*seed, gi, li])
            draw = rng.standard_normal(leaf.shape) * float(leaf.std())
            new.append(jnp.asarray(draw.astype(leaf.dtype)))
        out[g] = jax.tree_util.tree_unflatten(tree, new)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class RandomizationResult:
    """Similarity of each method's maps to its trained-model maps as layers are randomized.

    Attributes:
      stages: randomized groups, cumulative from the top: stage ``i`` has ``stages[:i+1]``
        randomized (``("logits", "conv5", ...)``).
      spearman, spearman_abs, ssim: ``{method: [S, N]}`` per stage and image (rank
        correlation of the maps, of their absolute values, SSIM of the min-max scaled maps).

    Example:
      >>> from lucidax.attribute import randomization_check
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> result = randomization_check(model, model.params, images, 3, ["gradient"],
      ...                              groups=["logits", "conv5"])
      >>> result.stages, result.spearman["gradient"].shape
      (('logits', 'conv5'), (2, 2))
    """

    stages: tuple[str, ...]
    spearman: dict[str, np.ndarray]
    spearman_abs: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]

    def table(self) -> dict[str, dict[str, list[float]]]:
        """``{method: {"spearman": [per stage mean], "spearman_abs": [...], "ssim": [...]}}``."""
        return {
            m: {
                "spearman": np.nanmean(self.spearman[m], axis=1).tolist(),
                "spearman_abs": np.nanmean(self.spearman_abs[m], axis=1).tolist(),
                "ssim": np.nanmean(self.ssim[m], axis=1).tolist(),
            }
            for m in self.spearman
        }


def randomization_check(
    model: Model,
    params: Any,
    images: Any,
    target: Any,
    methods: Sequence[str] | Mapping[str, Callable[..., Any]],
    *,
    groups: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    key: Any = 0,
) -> RandomizationResult:
    """Cascading model-parameter randomization (Adebayo et al. 2018).

    Args:
      methods: method names (see ``METHODS``) or ``{name: function}``.
      groups: parameter groups to randomize, top first (default: every top-level group of
        ``params``, from the output back to the input).
      options: ``{method: {option: value}}`` passed to each method.
      key: ``jax.random`` key or int seed of the new weights.
      model, params: the model and its trained parameters.
      images: ``[N, H, W, C]`` images.
      target: a class index or label, one per image, ``"predicted"`` or an objective.

    Example:
      >>> from lucidax.attribute import randomization_check
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> result = randomization_check(model, model.params, images, 3, ["gradient"],
      ...                              groups=["logits", "conv5"])
      >>> sorted(result.ssim), result.ssim["gradient"].shape
      (['gradient'], (2, 2))
    """
    fns = ({m: get_method(m) for m in methods} if not isinstance(methods, Mapping)
           else dict(methods))
    options = dict(options or {})
    if groups is None:
        groups = list(reversed(_param_layers(model, params)))
    groups = tuple(groups)
    if not groups:
        raise ValueError("no parameter groups to randomize")
    images = check_images(model, images)
    ref = {m: np.asarray(f(model, params, images, target, **options.get(m, {})))
           for m, f in fns.items()}
    sp = {m: [] for m in fns}
    spa = {m: [] for m in fns}
    ss = {m: [] for m in fns}
    for i in range(len(groups)):
        p = randomize_params(params, groups[: i + 1], key)
        for m, f in fns.items():
            maps = np.asarray(f(model, p, images, target, **options.get(m, {})))
            sp[m].append(spearman(ref[m], maps))
            spa[m].append(spearman(np.abs(ref[m]), np.abs(maps)))
            ss[m].append(ssim(ref[m], maps))
    stack = (lambda d: {m: np.stack(v) for m, v in d.items()})  # noqa: E731
    return RandomizationResult(groups, stack(sp), stack(spa), stack(ss))
