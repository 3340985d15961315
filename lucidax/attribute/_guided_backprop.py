"""Guided Backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lucidax.models import Model
from lucidax.models.hooks import apply_with_relu

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


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose gradient passes only positive gradients where the input was positive
    (Springenberg et al. 2015).

    Args:
      x: the pre-activation.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from lucidax.attribute import guided_relu
      >>> x = jnp.array([-1.0, 0.5, 2.0])
      >>> jax.grad(lambda v: (guided_relu(v) * jnp.array([1.0, -1.0, 1.0])).sum())(x).tolist()
      [0.0, 0.0, 1.0]
    """
    return jnp.maximum(x, jnp.zeros((), x.dtype))


def _guided_fwd(x):
    return guided_relu(x), x


def _guided_bwd(x, g):
    zero = jnp.zeros((), g.dtype)
    return (jnp.where((x > 0) & (g > 0), g, zero),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


def _guided_program(model: Model, spec, reduce: str):
    def build(shell):
        def apply(p, im, layers):
            return apply_with_relu(shell, p, im, layers, guided_relu)

        def run(params, x, tdata):
            TRACE_COUNT["guided_backprop"] += 1
            s, g = grad_fn(model_fn(shell, spec, params, tdata, apply=apply))(x)
            return REDUCTIONS[reduce](g), g, s

        return run

    return program(model, ("guided_backprop", spec, reduce), build)


def guided_backprop(
    model: Model, params: Any, images: Any, target: Any, *, reduce: str = "max_abs",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """Guided Backpropagation (Springenberg et al. 2015): the input gradient with every ReLU's
    backward pass replaced by ``g * (x > 0) * (g > 0)`` (only positive gradients through
    active units). ReLU6 (``jax.nn.relu6``, ``jnp.clip(x, 0, 6)``, ``min(max(x, 0), 6)``;
    any cap) passes ``g * (0 < x < 6) * (g > 0)``: it is evaluated as ``min(guided_relu(x),
    6)`` (see :func:`lucidax.models.apply_with_relu`). Identical to
    :func:`vanilla_gradient` on a network without ReLUs.

    Args:
      model: a :class:`lucidax.models.Model`.
      params: its parameters (``model.params``).
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, a sequence of ``N`` of them, ``"predicted"`` (each
        image's top class) or an objective (see :func:`target_classes`).
      reduce: how the channel axis becomes a map (:data:`REDUCTIONS`).
      return_raw: return an :class:`Attribution` (maps, raw attribution, target scores)
        instead of the maps.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import guided_backprop
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> guided_backprop(model, model.params, images, target="predicted").shape
      (2, 64, 64)
    """
    x, spec, tdata = prepare(model, params, images, target)
    maps, raw, s = _guided_program(model, spec, check_reduce(reduce))(params, x, tdata)
    return finish(maps, raw, s, return_raw=return_raw, method="guided_backprop")
