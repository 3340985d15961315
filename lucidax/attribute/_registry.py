"""The registry of attribution methods: :data:`METHODS` maps a short name (``"ig"``,
``"occlusion"``, ...) to the function, ``method(model, params, images, target, **opts) ->
maps [N, H, W]``. Each method's module is imported when the method is first looked up, so
this module imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lucidax.models.base import suggest

# name -> (private module of lucidax.attribute, function, short description)
_SPECS: dict[str, tuple[str, str, str]] = {
    "gradient": ("_gradient", "vanilla_gradient", "vanilla gradient"),
    "grad_x_input": ("_gradient", "gradient_x_input", "gradient x input"),
    "smoothgrad": ("_smoothgrad", "smoothgrad", "SmoothGrad"),
    "ig": ("_integrated_gradients", "integrated_gradients", "integrated gradients"),
    "gradcam": ("_gradcam", "gradcam", "Grad-CAM"),
    "guided_backprop": ("_guided_backprop", "guided_backprop", "guided backprop"),
    "lrp": ("_lrp", "lrp", "LRP"),
    "occlusion": ("_occlusion", "occlusion", "occlusion (sliding patch)"),
    "lime": ("_surrogate", "lime", "LIME over superpixels"),
    "kernelshap": ("_surrogate", "kernel_shap", "KernelSHAP over superpixels"),
    "random": ("_random", "random_map", "uniform random map (baseline)"),
}


def _resolve(name: str) -> Callable[..., Any] | None:
    module, attr, _ = _SPECS[name]
    try:
        mod = importlib.import_module(f"lucidax.attribute.{module}")
    except ImportError:
        return None
    fn = getattr(mod, attr, None)
    return fn if callable(fn) else None


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
