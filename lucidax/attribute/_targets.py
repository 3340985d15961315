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

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model, suggest
from lucidax.visualize import INPUT, Objective, class_logit

__all__ = ["PREDICTED", "resolve_target", "target_classes"]

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


def target_classes(
    model: Model,
    target: Any,
    n: int,
    *,
    params: Any = None,
    images: Any = None,
) -> np.ndarray | None:
    """Per-image class indices ``int64 [n]`` of a class target; None for an Objective.

    ``target``: a class index or label (the same class for every image), a sequence of ``n``
    indices or labels, or ``"predicted"`` / None (each image's top class: needs ``params`` and
    ``images``). Raises ``ValueError`` for a model without a logit layer, an unknown label,
    a class out of range or a sequence of the wrong length; ``TypeError`` for anything else.

    Args:
      model: the :class:`lucidax.models.Model`.
      target: see above.
      n: number of images.
      params, images: for ``"predicted"``.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import target_classes
      >>> model = lm.load("efficientnet_lite0")
      >>> target_classes(model, "Egyptian cat", 2).tolist()
      [285, 285]
      >>> target_classes(model, [1, 2], 2).tolist()
      [1, 2]
    """
    if isinstance(target, Objective):
        return None
    if model.logits_layer is None:
        raise ValueError(f"{model.name} has no logits layer: pass an Objective target "
                         f"(e.g. lucidax.visualize.channel(layer, unit))")
    if target is None or (isinstance(target, str) and target == PREDICTED):
        target = _predicted(model, params, images)
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target must be a class index, a sequence of them, a class label, "
                        f"{PREDICTED!r} or an Objective; got {target!r}")
    labels = tuple(model.labels or ())
    if isinstance(target, (numbers.Integral, np.integer)):
        arr = np.full(n, int(target), np.int64)
    elif isinstance(target, str):
        if target not in labels:
            raise ValueError(suggest(target, (*labels, PREDICTED), what="class label"))
        arr = np.full(n, labels.index(target), np.int64)
    elif isinstance(target, (np.ndarray, jax.Array, list, tuple, range)):
        arr = np.asarray(target)
        if arr.dtype.kind in "US" and labels:
            bad = [str(t) for t in arr.ravel() if str(t) not in labels]
            if bad:
                raise ValueError(suggest(bad[0], labels, what="class label"))
            arr = np.array([labels.index(str(t)) for t in arr.ravel()])
        elif arr.dtype.kind not in "iu":
            raise TypeError(f"class targets must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64).reshape(-1)
        if arr.shape != (n,):
            raise ValueError(f"a per-image target needs one class per image: got {arr.shape[0]} "
                             f"classes for {n} images")
    else:
        raise TypeError(f"target must be a class index, a sequence of them, a class label, "
                        f"{PREDICTED!r} or an Objective; got {target!r}")
    k = model.channels(model.logits_layer)
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        bad = int(arr[(arr < 0) | (arr >= k)][0])
        raise ValueError(f"class {bad} out of range: {model.name} has classes 0..{k - 1}")
    return arr


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

    Class targets are resolved by :func:`target_classes` and always come back as one class
    per image. Raises ``ValueError`` for a model without a logit layer (class targets), an
    unknown class or layer (with the valid choices), or a per-image target of the wrong
    length.

    Args:
      model: the :class:`lucidax.models.Model`.
      target: a class index or label, ``n`` of them, ``"predicted"`` or an objective.
      n: number of images.
      params, images: for ``"predicted"``.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import resolve_target
      >>> layers, score = resolve_target(lm.load("starter"), 3, 2)
      >>> layers
      ('logits',)
    """
    classes = target_classes(model, target, n, params=params, images=images)
    # a class target is always given one class per image: a class for every image and one
    # class per image then share one compiled program
    objective = target if classes is None else class_logit(model, classes.tolist())
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

