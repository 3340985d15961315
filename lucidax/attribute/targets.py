"""What an attribution explains: a class logit, or any render-engine objective.

Every method of :mod:`lucidax.attribute` takes a ``target`` and turns it, with
:func:`resolve_target`, into the model layers it reads and a function of their activations
returning one score per image (``[N]``)::

    resolve_target(model, 3, n)                      # logit of class 3 for every image
    resolve_target(model, "cat", n)                  # by label, when the model has labels
    resolve_target(model, [3, 1, 4], 3)              # one class per image
    resolve_target(model, "predicted", n, params=p, images=x)   # each image's top class
    resolve_target(model, viz.channel("conv3", 5), n)            # a unit / channel / direction
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models.base import Model
from lucidax.visualize.objectives import INPUT, Objective, class_logit

__all__ = ["PREDICTED", "resolve_target"]

#: Target meaning "each image's highest-scoring class".
PREDICTED = "predicted"

ScoreFn = Callable[[dict[str, jax.Array]], jax.Array]  # in practice an Objective


def _predicted(model: Model, params: Any, images: Any) -> np.ndarray:
    if params is None or images is None:
        raise ValueError(f"target={PREDICTED!r} needs params= and images= to find each image's "
                         f"top class")
    logits = model.apply(params, jnp.asarray(images), (model.logits_layer,))[model.logits_layer]
    if logits.ndim == 4:
        logits = logits.mean(axis=(1, 2))
    return np.asarray(jnp.argmax(logits, axis=-1))


def resolve_target(
    model: Model,
    target: Any,
    n: int,
    *,
    params: Any = None,
    images: Any = None,
) -> tuple[tuple[str, ...], ScoreFn]:
    """``(layers, fn)``: the model layers the target reads and ``fn(acts) -> [n]`` scores.

    ``fn`` is an :class:`~lucidax.visualize.Objective`: callable, and a JAX pytree whose class
    indices are array leaves -- pass it *as an argument* of a jitted function (not as a static
    one) and every target of the same kind shares one compiled program.

    Args:
      model: the model.
      target: a class (int index, or a label when the model has ``labels``); a sequence of
        ``n`` classes (one per image); ``"predicted"`` / None (each image's top class, needs
        ``params`` and ``images``); or a :class:`lucidax.visualize.Objective` (``channel``,
        ``neuron``, ``direction``, ``class_logit``...), per image or batched over ``n``.
      n: number of images.

    Raises ``ValueError`` for a model without a logit layer (class targets), an unknown class or
    layer (with the valid choices), or a per-image target of the wrong length.
    """
    if isinstance(target, Objective):
        objective = target
    else:
        if model.logits_layer is None:
            raise ValueError(f"{model.name} has no logits layer: pass an Objective target "
                             f"(e.g. lucidax.visualize.channel(layer, unit))")
        if target is None or (isinstance(target, str) and target == PREDICTED):
            target = _predicted(model, params, images).tolist()
        elif isinstance(target, (np.ndarray, jax.Array)):
            target = np.asarray(target).tolist()
        objective = class_logit(model, target)
    objective.validate(model)
    if INPUT in objective.layers:
        raise ValueError(f"target {objective.name!r} reads the input image ({INPUT!r}): "
                         f"attribution targets must read model layers only")
    if objective.couples_batch:
        raise ValueError(f"target {objective.name!r} couples the images of a batch (e.g. "
                         f"diversity): attribution needs one score per image")
    if objective.batch is not None and objective.batch != n:
        raise ValueError(f"target {objective.name!r} has {objective.batch} per-image units but "
                         f"there are {n} images")
    layers = tuple(objective.model_layers)
    return layers, objective

