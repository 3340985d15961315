"""Integrated Gradients (Sundararajan et al. 2017), with a completeness check."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model, suggest

from ._common import (
    REDUCTIONS,
    TRACE_COUNT,
    Attribution,
    batched_map,
    check_reduce,
    chunking,
    grad_fn,
    loop_apply,
    model_fn,
    prepare,
    program,
)

#: quadrature rules of :func:`integrated_gradients` (``rule=``)
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


def _ig_program(model: Model, spec, reduce: str, batch_size: int):
    def build(shell):
        def run(params, x, base, tdata, alphas, weights):
            TRACE_COUNT["integrated_gradients"] += 1
            f = model_fn(shell, spec, params, tdata)
            grad = grad_fn(model_fn(shell, spec, params, tdata, apply=loop_apply(shell)))
            diff = x - base

            def one(aw):
                a, w = aw
                return w * grad(base + a * diff)[1]

            m = alphas.shape[0]
            chunk, total = chunking(m, batch_size)
            alphas = jnp.concatenate([alphas, jnp.zeros(total - m, alphas.dtype)])
            weights = jnp.concatenate([weights, jnp.zeros(total - m, weights.dtype)])
            gs = batched_map(one, (alphas, weights), chunk)
            raw = diff * jnp.sum(gs, axis=0)
            return REDUCTIONS[reduce](raw), raw, f(x), f(base)

        return run

    return program(model, ("integrated_gradients", spec, reduce, batch_size), build)


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
      model: a :class:`lucidax.models.Model`.
      params: its parameters (``model.params``).
      target: a class index or label, a sequence of ``N`` of them, ``"predicted"`` (each
        image's top class) or an objective (see :func:`target_classes`).
      reduce: how the channel axis becomes a map (:data:`REDUCTIONS`).
      return_raw: return an :class:`Attribution` (maps, raw attribution, target scores)
        instead of the maps.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import integrated_gradients
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> integrated_gradients(model, model.params, images, target=3, steps=8).shape
      (2, 64, 64)
    """
    x, spec, tdata = prepare(model, params, images, target)
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
    fn = _ig_program(model, spec, check_reduce(reduce), int(batch_size))
    maps, raw, s, s0 = fn(params, x, base, tdata, alphas, weights)
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
