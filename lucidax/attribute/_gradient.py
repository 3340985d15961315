"""Vanilla gradient (saliency) and gradient x input."""

from __future__ import annotations

from typing import Any

import jax

from lucidax.models import Model

from ._common import (
    REDUCTIONS,
    TRACE_COUNT,
    Attribution,
    check_reduce,
    finish,
    grad_fn,
    model_fn,
    prepare,
    program,
)


def _gradient_program(model: Model, spec, reduce: str, times_input: bool):
    name = "gradient_x_input" if times_input else "gradient"

    def build(shell):
        def run(params, x, tdata):
            TRACE_COUNT[name] += 1
            s, g = grad_fn(model_fn(shell, spec, params, tdata))(x)
            raw = g * x if times_input else g
            return REDUCTIONS[reduce](raw), raw, s

        return run

    return program(model, (name, spec, reduce), build)


def vanilla_gradient(
    model: Model, params: Any, images: Any, target: Any, *, reduce: str = "max_abs",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """Saliency (Simonyan et al. 2013): ``d target / d image``, reduced over channels (default:
    max of the absolute value). ``raw`` is the signed gradient ``[N, H, W, C]``.

    Args:
      model: a :class:`lucidax.models.Model`.
      params: its parameters (``model.params``).
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, a sequence of ``N`` of them, ``"predicted"`` (each
        image's top class) or an objective (see :func:`target_classes`).
      reduce: how the channel axis becomes a map (:data:`REDUCTIONS`).
      return_raw: return an :class:`Attribution` (maps, raw attribution, target scores)
        instead of the maps.

    Returns:
      ``[N, H, W]`` maps, or an :class:`Attribution` with ``return_raw``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import vanilla_gradient
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> vanilla_gradient(model, model.params, images, target=3).shape
      (2, 64, 64)
    """
    x, spec, tdata = prepare(model, params, images, target)
    maps, raw, s = _gradient_program(model, spec, check_reduce(reduce), False)(params, x, tdata)
    return finish(maps, raw, s, return_raw=return_raw, method="gradient")


def gradient_x_input(
    model: Model, params: Any, images: Any, target: Any, *, reduce: str = "sum",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """Gradient x input (Shrikumar et al. 2016): ``image * d target / d image``, summed over
    channels by default (signed). For a piecewise-linear network without biases the total
    equals the target value (then it is LRP-0).

    Args:
      model: a :class:`lucidax.models.Model`.
      params: its parameters (``model.params``).
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, a sequence of ``N`` of them, ``"predicted"`` (each
        image's top class) or an objective (see :func:`target_classes`).
      reduce: how the channel axis becomes a map (:data:`REDUCTIONS`).
      return_raw: return an :class:`Attribution` (maps, raw attribution, target scores)
        instead of the maps.

    Returns:
      ``[N, H, W]`` maps, or an :class:`Attribution` with ``return_raw``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import gradient_x_input
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> gradient_x_input(model, model.params, images, target=3).shape
      (2, 64, 64)
    """
    x, spec, tdata = prepare(model, params, images, target)
    maps, raw, s = _gradient_program(model, spec, check_reduce(reduce), True)(params, x, tdata)
    return finish(maps, raw, s, return_raw=return_raw, method="grad_x_input")
