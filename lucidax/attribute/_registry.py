"""The registry of attribution methods: :data:`METHODS` maps a short name (``"ig"``,
``"occlusion"``, ...) to the function, ``method(model, params, images, target, **opts) ->
maps [N, H, W]``."""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lucidax.models import suggest

from ._gradcam import gradcam
from ._gradient import gradient_x_input, vanilla_gradient
from ._guided_backprop import guided_backprop
from ._integrated_gradients import integrated_gradients
from ._lrp import lrp
from ._occlusion import occlusion
from ._random import random_map
from ._smoothgrad import smoothgrad
from ._surrogate import kernel_shap, lime

#: every attribution method by its name (``lucidax attribute --methods``; :func:`get_method`)
METHODS: Mapping[str, Callable[..., Any]] = types.MappingProxyType({
    "gradient": vanilla_gradient,
    "grad_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "ig": integrated_gradients,
    "gradcam": gradcam,
    "guided_backprop": guided_backprop,
    "lrp": lrp,
    "occlusion": occlusion,
    "lime": lime,
    "kernelshap": kernel_shap,
    "random": random_map,
})
"""``{name: method}`` (read-only) of every attribution method: gradient (vanilla gradient),
grad_x_input, smoothgrad, ig (integrated gradients), gradcam, guided_backprop, lrp, occlusion
(sliding patch), lime and kernelshap (over superpixels), random (uniform random map, the
baseline)."""


def method_names() -> tuple[str, ...]:
    """The registered method names, in the order of :data:`METHODS`.

    Example:
      >>> from lucidax.attribute import method_names
      >>> "gradcam" in method_names() and "lime" in method_names()
      True
    """
    return tuple(METHODS)


def get_method(name: str) -> Callable[..., Any]:
    """The attribution function registered as ``name`` (see :data:`METHODS`); ValueError with
    the valid names (and close matches) for anything else.

    Args:
      name: a method name (:func:`method_names`).

    Example:
      >>> from lucidax.attribute import get_method, integrated_gradients
      >>> get_method("ig") is integrated_gradients
      True
    """
    if name not in METHODS:
        raise ValueError(suggest(name, tuple(METHODS), what="attribution method"))
    return METHODS[name]


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
